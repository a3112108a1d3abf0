"""A small, forgiving MIME reader for bounce messages: headers, parts, decoded text.

Private helper of :mod:`smtpkit.bounces`. The standard library's ``email`` parser builds a full
object model of every part (including the returned original, which bounce parsing never reads
in full) and costs several times what the rest of bounce parsing does; this reader splits the
bytes lazily and decodes only the parts that are looked at. It never raises on bad input: a
missing boundary, a truncated part, bad base64 or an unknown charset give the best text there is.

Example:
    >>> part = Part(b"Content-Type: multipart/report; boundary=b\\n\\n--b\\n"
    ...             b"Content-Type: text/plain\\n\\nhello\\n--b--\\n")
    >>> [(p.content_type, p.text()) for p in part.children]
    [('text/plain', 'hello')]
"""

from __future__ import annotations

import binascii
import email.header
import re

__all__ = ["Part", "decode_header_value"]

_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:[ \t]*(.*?)\r?$")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_PARAM = re.compile(
    r';\s*([A-Za-z0-9_.*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"?|([^;\s]*))', re.DOTALL
)
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_CHARSET_ALIASES = {"unicode-1-1-utf-7": "utf-7", "uft-8": "utf-8", "utf8": "utf-8"}
_MAX_PARTS = 200
_MAX_DEPTH = 20


def decode_header_value(value: str, /) -> str:
    """A header value with RFC 2047 encoded words decoded (left as is when they are broken)."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:  # a badly encoded header is kept as it came
        return value


def decode_bytes(payload: bytes, charset: str | None) -> str:
    """Bytes to text in ``charset``; unknown charsets and bad bytes never raise."""
    name = (charset or "us-ascii").lower().strip()
    name = _CHARSET_ALIASES.get(name, name)
    if name in ("us-ascii", "ascii"):
        name = "utf-8"  # undeclared 8-bit text is far more often UTF-8 than anything else
    try:
        return payload.decode(name, "replace")
    except (LookupError, ValueError):
        return payload.decode("latin-1")


class Part:
    """One MIME entity: its header fields and, on demand, its parts or decoded text."""

    __slots__ = ("_children", "_content_type", "_depth", "_fields", "_message", "body")

    def __init__(self, raw: bytes, /, *, depth: int = 0) -> None:
        self._depth = depth
        self._children: list[Part] | None = None
        self._message: Part | bool | None = False
        self._content_type: tuple[str, str] | None = None
        self._fields: list[tuple[str, str]] = []
        self.body = self._split(raw)

    def _split(self, raw: bytes) -> bytes:
        if raw.startswith(b"From "):  # an mbox separator line
            raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
        blank = _BLANK_LINE.search(raw)
        head, body = (raw[: blank.start()], raw[blank.end() :]) if blank else (raw, b"")
        if raw.startswith((b"\n", b"\r\n")):  # no header section at all
            return raw.lstrip(b"\r\n")
        fields = self._fields
        # a field's continuation lines are collected and joined once: appending each to the
        # growing value would cost quadratic time on a field folded over many lines
        pieces: list[str] = []

        def finish() -> None:
            if pieces:
                name, value = fields[-1]
                fields[-1] = (name, " ".join([value, *pieces]))
                pieces.clear()

        lines = head.split(b"\n")
        for index, line in enumerate(lines):
            if line[:1] in (b" ", b"\t") and fields:
                pieces.append(line.strip().decode("utf-8", "replace"))
                continue
            finish()
            match = _HEADER_NAME.match(line)
            if match is None:
                # not a header line: the body starts here (as the standard parser does)
                rest = b"\n".join(lines[index:])
                return rest + (b"\n\n" + body if blank else b"")
            fields.append((match.group(1).decode("ascii").lower(),
                           match.group(2).decode("utf-8", "replace")))
        finish()
        return body

    # -- header fields ----------------------------------------------------------------------------

    def get(self, name: str, /) -> str:
        """The first value of a header field ("" when absent), encoded words not decoded."""
        name = name.lower()
        for field, value in self._fields:
            if field == name:
                return value
        return ""

    def get_all(self, name: str, /) -> list[str]:
        name = name.lower()
        return [value for field, value in self._fields if field == name]

    def has(self, name: str, /) -> bool:
        name = name.lower()
        return any(field == name for field, _ in self._fields)

    def header_text(self) -> str:
        """The header section as text, one unfolded field a line."""
        return "".join(f"{name}: {value}\n" for name, value in self._fields)

    @property
    def content_type(self) -> str:
        return self._parsed_content_type()[0]

    def _parsed_content_type(self) -> tuple[str, str]:
        if self._content_type is None:
            value = self.get("content-type")
            ctype = value.split(";", 1)[0].strip().lower()
            if "/" not in ctype:
                ctype = "text/plain"
            self._content_type = (ctype, value)
        return self._content_type

    def param(self, name: str, /) -> str | None:
        """A parameter of the Content-Type field (``boundary``, ``charset``, ``report-type``)."""
        value = self._parsed_content_type()[1]
        for match in _PARAM.finditer(value):
            if match.group(1).lower() == name:
                found = match.group(2) if match.group(2) is not None else match.group(3)
                return found.strip() if found is not None else None
        return None

    @property
    def maintype(self) -> str:
        return self.content_type.partition("/")[0]

    # -- structure -------------------------------------------------------------------------

    @property
    def children(self) -> list[Part]:
        """The parts of a multipart entity ([] for anything else or a missing boundary)."""
        if self._children is None:
            self._children = self._split_parts()
        return self._children

    def is_multipart(self) -> bool:
        return self.maintype == "multipart" and bool(self.param("boundary"))

    def _split_parts(self) -> list[Part]:
        if not self.is_multipart() or self._depth >= _MAX_DEPTH:
            return []
        marker = b"--" + (self.param("boundary") or "").encode("utf-8", "replace")
        body = self.body
        parts: list[Part] = []
        previous = None
        position = 0
        while len(parts) < _MAX_PARTS:
            found = body.find(marker, position)
            if found < 0:
                break
            position = found + len(marker)
            if found and body[found - 1 : found] != b"\n":
                continue  # the marker inside a line is no delimiter
            closing = body[position : position + 2] == b"--"
            line_end = body.find(b"\n", position)
            line_end = len(body) if line_end < 0 else line_end + 1
            if body[position + (2 if closing else 0) : line_end].strip():
                continue  # "--boundary-and-more": a longer boundary, not ours
            if previous is not None:
                end = found - 1
                if end > previous and body[end - 1 : end] == b"\r":
                    end -= 1
                parts.append(Part(body[previous:max(end, previous)], depth=self._depth + 1))
            if closing:
                previous = None
                break
            previous = position = line_end
        if previous is not None and len(parts) < _MAX_PARTS:  # truncated: no closing line
            parts.append(Part(body[previous:], depth=self._depth + 1))
        return parts

    @property
    def attached(self) -> Part | None:
        """The message inside a ``message/rfc822`` (or ``message/global``) part."""
        if self._message is False:
            self._message = None
            inside = self.content_type in ("message/rfc822", "message/global")
            if inside and self._depth < _MAX_DEPTH:
                payload = self.payload()
                if payload.strip():
                    self._message = Part(payload.lstrip(b"\r\n"), depth=self._depth + 1)
        return self._message if isinstance(self._message, Part) else None

    # -- content ---------------------------------------------------------------------------

    def payload(self) -> bytes:
        """The body with its Content-Transfer-Encoding undone (raw when that fails)."""
        encoding = self.get("content-transfer-encoding").strip().lower()
        body = self.body
        if encoding == "base64":
            data = _NOT_BASE64.sub(b"", body.split(b"=", 1)[0])
            data = data[: len(data) - len(data) % 4]
            try:
                return binascii.a2b_base64(data)
            except (binascii.Error, ValueError):
                return body
        if encoding == "quoted-printable":
            try:
                return binascii.a2b_qp(body)
            except (binascii.Error, ValueError):
                return body
        return body

    def text(self) -> str:
        """The decoded text of the part, with CRLF made LF (HTML is not converted here)."""
        text = decode_bytes(self.payload(), self.param("charset"))
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text.rstrip("\n") if text.endswith("\n") else text
