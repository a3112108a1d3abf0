"""Message bodies for compose: per-row value keys, pre-encoded body text, the MIME skeleton.

A compiled body is a tuple of *items*: ``bytes`` already in their final form (MIME headers,
boundaries, the quoted-printable encoding of every constant stretch of text, base64
attachments) and, for a text part with fields, a :class:`Part`: its encoded constant text with a
``%b`` where each value goes. Per row, each value is quoted-printable encoded on its own and
spliced in with one ``bytes % tuple`` operation.

That works because a quoted-printable soft line break (``=`` CRLF) may stand anywhere and decodes
to nothing: every constant stretch is encoded starting on a fresh line and, unless it ends with a
real line break, closed with a soft break; so is every value. No line passes 76 characters, and
the per-row cost is the size of the values, not of the body, even for one-line (minified) HTML.

Example:
    >>> part = compile_body(("Hello ", Field("name"), "!\\nBye\\n"), "text", Slots())
    >>> part.template
    b'Hello=20=\\r\\n%b!\\r\\nBye\\r\\n'
    >>> fill_part(part, {"v0_text": "Zoë"})
    b'Hello=20=\\r\\nZo=C3=AB=\\r\\n!\\r\\nBye\\r\\n'
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import secrets
from collections.abc import Iterable, Sequence

from ._compose_headers import disposition
from ._compose_text import Field, Piece

__all__ = [
    "CONTEXTS",
    "BodyItem",
    "Part",
    "SlotPlan",
    "Slots",
    "compile_body",
    "fill_body",
    "fill_part",
    "normalize_newlines",
    "qp",
    "skeleton",
]

#: How a value is prepared for where it goes: as is into a header (after a safety check),
#: newline-normalized into text, HTML-escaped, percent-encoded into a URL, or as a whole URL.
CONTEXTS = ("header", "text", "html", "url", "rawurl")

#: (column, format spec, key per context in CONTEXTS order or None)
SlotPlan = tuple[str, str, str | None, str | None, str | None, str | None, str | None]

_TEXT_HEAD = (
    b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
)
_HTML_HEAD = (
    b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
)


class Slots:
    """Gives each (column, format spec, context) a key of the per-row values dict."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], dict[str, str]] = {}

    def key(self, field: Field, context: str, /) -> str:
        """The values-dict key of ``field`` prepared for ``context``."""
        keys = self._keys.setdefault((field.name, field.spec), {})
        index = list(self._keys).index((field.name, field.spec))
        return keys.setdefault(context, f"v{index}_{context}")

    def fmt(self, pieces: Iterable[Piece], context: str, /) -> str:
        """A ``str.format_map`` string for pieces whose fields are prepared for ``context``."""
        return "".join(
            "{" + self.key(p, context) + "}"
            if isinstance(p, Field)
            else p.replace("{", "{{").replace("}", "}}")
            for p in pieces
        )

    def plan(self) -> tuple[SlotPlan, ...]:
        """One entry per (column, spec): what to compute for a row."""
        plan: list[SlotPlan] = []
        for (name, spec), keys in self._keys.items():
            header, text, html, url, rawurl = (keys.get(c) for c in CONTEXTS)
            plan.append((name, spec, header, text, html, url, rawurl))
        return tuple(plan)


def normalize_newlines(text: str, /) -> str:
    """CRLF and lone CR become LF (the body is written with CRLF later)."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def qp(text: str, /) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends; lines stay within 76 characters."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _qp_stretch(text: str) -> bytes:
    """A stretch of text encoded to start and end on a line boundary of its own."""
    if not text:
        return b""
    encoded = qp(text)
    return encoded if encoded.endswith(b"\n") else encoded + b"=\r\n"


@dataclasses.dataclass(frozen=True)
class Part:
    """A text part with fields: ``template % encoded_values`` gives its bytes.

    ``template`` holds the encoded constant text with ``%b`` where a value goes (``keys`` in
    order); ``final_newline`` says the part ends with a value, after which a line break must
    follow unless the value brought one.
    """

    template: bytes
    keys: tuple[str, ...]
    final_newline: bool


#: In a compiled body: final bytes, or a text part that has fields.
BodyItem = bytes | Part


def compile_body(pieces: Sequence[Piece], context: str, slots: Slots, /) -> bytes | Part:
    """Encode the constant text of a body template now and leave a ``%b`` for each field.
    A part always ends with a line break (as ``EmailMessage.set_content`` makes it)."""
    template: list[bytes] = []
    keys: list[str] = []
    for i, piece in enumerate(pieces):
        if isinstance(piece, Field):
            template.append(b"%b")
            keys.append(slots.key(piece, context))
            continue
        text = normalize_newlines(piece)
        if i == len(pieces) - 1 and not text.endswith("\n"):
            text += "\n"
        template.append(_qp_stretch(text).replace(b"%", b"%%"))
    if not pieces:
        return b"\r\n"
    if not keys:
        return b"".join(template).replace(b"%%", b"%")
    return Part(b"".join(template), tuple(keys), isinstance(pieces[-1], Field))


def _encode_value(value: str) -> bytes:
    if not value:
        return b""
    if len(value) < 70 and value.isascii() and value.isprintable() and "=" not in value:
        if value[-1] != " ":  # quoted-printable would leave it as it is
            return value.encode("ascii") + b"=\r\n"
    chunk = binascii.b2a_qp(value.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    return chunk if chunk.endswith(b"\n") else chunk + b"=\r\n"


def fill_part(part: Part, values: dict[str, str], /) -> bytes:
    """The bytes of one text part with the row's ``values`` encoded and spliced in."""
    data = part.template % tuple([_encode_value(values[key]) for key in part.keys])
    if part.final_newline and (not data or data.endswith(b"=\r\n")):
        data += b"\r\n"  # the part ended with a value that brought no line break
    return data


def fill_body(items: Iterable[BodyItem], values: dict[str, str], out: list[bytes], /) -> None:
    """Append the bytes of a compiled body with the row's ``values`` spliced in to ``out``."""
    for item in items:
        out.append(item if isinstance(item, bytes) else fill_part(item, values))


def _attachment_part(filename: str, data: bytes, content_type: str) -> bytes:
    if content_type.startswith("text/"):
        try:
            data.decode("utf-8")
            content_type += '; charset="utf-8"'
        except UnicodeDecodeError:
            pass
    head = (
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n"
        f"{disposition(filename)}\r\n"
    )
    return head.encode("ascii") + base64.encodebytes(data).replace(b"\n", b"\r\n")


def skeleton(
    text: BodyItem,
    html: BodyItem | None,
    attachments: Sequence[tuple[str, bytes, str]],
    /,
) -> tuple[BodyItem, ...]:
    """The whole body from ``MIME-Version`` on: text/plain, or multipart/alternative with
    text/html, wrapped in multipart/mixed with base64 attachments ``(filename, data, type)``."""
    token = secrets.token_hex(12)
    # "=_" never occurs in quoted-printable or base64 text, so no part can contain a boundary
    alternative, mixed = f"=_alt_{token}", f"=_mix_{token}"
    if html is None:
        body: list[BodyItem] = [_TEXT_HEAD + b"\r\n", text]
    else:
        body = [
            f'Content-Type: multipart/alternative; boundary="{alternative}"\r\n\r\n'
            f"--{alternative}\r\n".encode("ascii"),
            _TEXT_HEAD + b"\r\n",
            text,
            f"\r\n--{alternative}\r\n".encode("ascii"),
            _HTML_HEAD + b"\r\n",
            html,
            f"\r\n--{alternative}--\r\n".encode("ascii"),
        ]
    if attachments:
        body.insert(
            0, f'Content-Type: multipart/mixed; boundary="{mixed}"\r\n\r\n--{mixed}\r\n'.encode()
        )
        for filename, data, content_type in attachments:
            body += [
                f"\r\n--{mixed}\r\n".encode("ascii"),
                _attachment_part(filename, data, content_type),
            ]
        body.append(f"\r\n--{mixed}--\r\n".encode("ascii"))
    merged: list[BodyItem] = []
    for item in [b"MIME-Version: 1.0\r\n", *body]:
        if isinstance(item, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += item
        else:
            merged.append(item)
    return tuple(merged)
