"""Header encoding for compose: safety checks, RFC 2047 / RFC 6532 values, folding, addresses.

Everything here works on ``str`` and returns whole header lines ending in CRLF, folded at spaces
to 78 octets where possible and never longer than 998 octets (RFC 5322 section 2.1.1).

* ``unsafe_character`` finds what must never reach a header: C0/C1 control characters (CR, LF,
  TAB, NUL, ...), DEL and the Unicode line / paragraph separators.
* ``hidden_control`` finds RFC 2047 encoded-words (``=?charset?B|Q?...?=``) whose decoded text
  holds such a character: a lenient reader that decodes and re-folds them would write a raw line
  break (CVE-2024-6923). Values that merely *contain* ``=?`` are encoded by us as a whole, so no
  reader decodes user data as an encoded-word.
* Non-ASCII text becomes base64 encoded-words (``=?utf-8?b?...?=``, never splitting a character)
  unless the message is SMTPUTF8, where RFC 6532 allows raw UTF-8.
* Addresses are checked structurally (dot-atom local part, host name labels) and their domain is
  converted to IDNA A-labels (UTS 46, the same library email-validator uses).

Example:
    >>> unstructured("Subject", "Grüße aus Köln", utf8=False)
    'Subject: =?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=\\r\\n'
    >>> address_line("To", phrase("Doe, Jane", utf8=False), "jane@example.com", utf8=False)
    'To: "Doe, Jane" <jane@example.com>\\r\\n'
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import NamedTuple
from urllib.parse import quote

import idna

__all__ = [
    "HARD_LIMIT",
    "SOFT_LIMIT",
    "AddressProblem",
    "CheckedAddress",
    "address_line",
    "ascii_domain",
    "check_address",
    "disposition",
    "encoded_words",
    "hidden_control",
    "phrase",
    "split_mailbox",
    "unsafe_character",
    "unstructured",
]

#: Header lines are folded to this many octets where a space allows it (RFC 5322 "SHOULD").
SOFT_LIMIT = 78
#: No line of a message may be longer than this many octets, CRLF excluded (RFC 5322 "MUST").
HARD_LIMIT = 998

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Lenient on purpose: anything a permissive decoder might take for an encoded-word.
_LOOSE_EW = re.compile(r"=\?([^?]*)\?([bBqQ])\?(.*?)\?=")
_WORDS = re.compile(r" *[^ ]+")
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_PHRASE_ASCII = re.compile(f"[{_ATEXT}]+(?: [{_ATEXT}]+)*")
_PHRASE_UTF8 = re.compile(f"[{_ATEXT}\u00a0-\U0010ffff]+(?: [{_ATEXT}\u00a0-\U0010ffff]+)*")
_LOCAL = re.compile(f"[{_ATEXT}\u0080-\U0010ffff]+(?:\\.[{_ATEXT}\u0080-\U0010ffff]+)*")
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(f"{_LABEL}(?:\\.{_LABEL})*")
_PLAIN_ADDRESS = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*@{_LABEL}(?:\\.{_LABEL})*")
_SPACE = re.compile(r"\s")
_EW_PREFIX = "=?utf-8?b?"
# 42 octets of UTF-8 make 56 base64 characters: "=?utf-8?b?" + 56 + "?=" = 68 columns.
_EW_OCTETS = 42
# RFC 2231 attribute-char: what may stay unencoded in an extended parameter value.
_ATTR_SAFE = "!#$&+-.^_`|~"


def unsafe_character(value: str, /) -> str | None:
    """The first character of ``value`` that must never reach a header, or None.

    Example:
        >>> unsafe_character("Ann\\r\\nBcc: x@y.z")
        '\\r'
    """
    match = _UNSAFE.search(value)
    return match.group() if match else None


def _decode_loosely(charset: str, encoding: str, text: str) -> tuple[bytes, str]:
    try:
        if encoding in "bB":
            compact = re.sub(r"\s", "", text)
            data = binascii.a2b_base64(
                (compact + "=" * (-len(compact) % 4)).encode("ascii", "replace")
            )
        else:
            data = binascii.a2b_qp(text.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return b"", ""
    name = charset.split("*", 1)[0].strip() or "ascii"
    try:
        decoded = data.decode(name, "replace")
    except (LookupError, ValueError):
        decoded = data.decode("latin-1")
    return data, decoded


def hidden_control(value: str, /) -> str | None:
    """The first RFC 2047 encoded-word in ``value`` that decodes to a control character, or None.

    Example:
        >>> hidden_control("Hi =?utf-8?q?x=0D=0ABcc:_a@b.c?=")
        '=?utf-8?q?x=0D=0ABcc:_a@b.c?='
    """
    if "=?" not in value:
        return None
    for match in _LOOSE_EW.finditer(value):
        data, text = _decode_loosely(*match.groups())
        if any(byte in data for byte in b"\r\n\x00") or _UNSAFE.search(text):
            return match.group()
    return None


def _octets(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def encoded_words(value: str, /) -> list[str]:
    """``value`` as base64 UTF-8 encoded-words, each a whole number of characters.

    The first word has no leading space, the others one (a place to fold). Example:
        >>> encoded_words("Zoë")
        ['=?utf-8?b?Wm/Dqw==?=']
    """
    data = value.encode("utf-8")
    words: list[str] = []
    start, size = 0, len(data)
    while start < size:
        end = min(start + _EW_OCTETS, size)
        while end < size and (data[end] & 0xC0) == 0x80:  # never cut a UTF-8 sequence
            end -= 1
        chunk = base64.b64encode(data[start:end]).decode("ascii")
        words.append(f"{' ' if words else ''}{_EW_PREFIX}{chunk}?=")
        start = end
    return words


def _fold(prefix: str, pieces: list[str]) -> str | None:
    """Join pieces after ``prefix``, starting a new line before a piece (which begins with a space)
    when the line would pass the soft limit; None when a line cannot be kept under 998 octets."""
    if not pieces:
        return prefix.rstrip(" ") + "\r\n"
    whole = prefix + "".join(pieces)
    if len(whole) <= SOFT_LIMIT and whole.isascii():  # the common case: one short line
        return whole + "\r\n"
    lines: list[str] = []
    current = prefix + pieces[0]
    width = _octets(current)
    for piece in pieces[1:]:
        size = _octets(piece)
        if width + size > SOFT_LIMIT:
            lines.append(current)
            current, width = piece, size
        else:
            current += piece
            width += size
    lines.append(current)
    if max(_octets(line) for line in lines) > HARD_LIMIT:
        return None
    return "\r\n".join(lines) + "\r\n"


def unstructured(name: str, value: str, /, *, utf8: bool) -> str:
    """A folded ``Name: value`` line for free text (Subject, X- headers, ...).

    ``value`` must already be free of unsafe characters. ASCII text is written as is; non-ASCII
    text as encoded-words (raw UTF-8 when ``utf8``); text containing ``=?`` always encoded, so a
    reader shows it literally.

    Example:
        >>> unstructured("Subject", "a  b", utf8=False)
        'Subject: a  b\\r\\n'
    """
    prefix = name + ": "
    if "=?" not in value and (utf8 or value.isascii()):
        if len(prefix) + len(value) <= SOFT_LIMIT and value.isascii():
            return prefix + value + "\r\n"
        line = _fold(prefix, _WORDS.findall(value))
        if line is not None:
            return line
    line = _fold(prefix, encoded_words(value))
    assert line is not None  # encoded-words are short and folded between each other
    return line


def phrase(name: str, /, *, utf8: bool) -> list[str]:
    """A display name as foldable pieces: atoms, one quoted string, or encoded-words.

    Runs of white space become one space: readers (the stdlib's among them) collapse them in
    encoded-words anyway, so this is the only form every reader shows alike.

    Example:
        >>> phrase("Jane Doe", utf8=False), phrase("Doe, Jane", utf8=False)
        (['Jane Doe'], ['"Doe, Jane"'])
    """
    if "  " in name or not name.isascii():
        name = " ".join(name.split())
    if not name:
        return []
    if "=?" in name or not (utf8 or name.isascii()):
        return encoded_words(name)
    if (_PHRASE_UTF8 if utf8 else _PHRASE_ASCII).fullmatch(name):
        if len(name) <= 40:
            return [name]
        words = _WORDS.findall(name)
        # a word too long for any line is split into encoded-words instead
        return words if max(map(_octets, words)) <= HARD_LIMIT - 100 else encoded_words(name)
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return [quoted] if _octets(quoted) <= SOFT_LIMIT * 8 else encoded_words(name)


def address_line(name: str, display: list[str], address: str, /, *, utf8: bool) -> str | None:
    """``Name: display <address>`` (or just the address), folded; None if it cannot fit.

    Example:
        >>> address_line("From", phrase("Acme News", utf8=False), "news@acme.test", utf8=False)
        'From: Acme News <news@acme.test>\\r\\n'
    """
    pieces = [*display, f" <{address}>"] if display else [address]
    return _fold(name + ": ", pieces)


@functools.lru_cache(maxsize=4096)
def ascii_domain(domain: str, /) -> str | None:
    """The ASCII (IDNA A-label) form of a host name, or None when it is not a valid one.

    Example:
        >>> ascii_domain("bücher.example"), ascii_domain("bad..example")
        ('xn--bcher-kva.example', None)
    """
    if domain.isascii():
        candidate = domain
    else:
        try:
            candidate = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    if len(candidate) > 253 or not _HOST.fullmatch(candidate):
        return None
    return candidate


class CheckedAddress(NamedTuple):
    """An address that passed :func:`check_address`.

    ``envelope`` is what goes into ``MAIL FROM`` / ``RCPT TO`` (domain in A-labels);
    ``header_ascii`` / ``header_utf8`` what a header shows in a plain or an SMTPUTF8 message;
    ``utf8`` says the local part is not ASCII, so only an SMTPUTF8 transaction can carry it.
    """

    envelope: str
    header_ascii: str
    header_utf8: str
    utf8: bool

    @property
    def domain(self) -> str:
        """The ASCII domain."""
        return self.envelope.rpartition("@")[2]


class AddressProblem(ValueError):
    """Why an address cannot be used: ``reason`` (``unsafe_header`` or ``invalid_recipient``)
    and a sentence, ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def check_address(address: str, /) -> CheckedAddress:
    """Check one ``local@domain`` address; :class:`AddressProblem` when it cannot be used.

    Quoted local parts and address literals are refused: they are legal but, in a mailing list,
    far more often a mistake than a mailbox.

    Example:
        >>> check_address("zoë@bücher.example").envelope
        'zoë@xn--bcher-kva.example'
        >>> check_address("two@@example.com")
        Traceback (most recent call last):
        ...
        smtpkit._compose_headers.AddressProblem: The address 'two@@example.com' is not valid: \
its local part has a character or a dot an address cannot have there.
    """
    if _PLAIN_ADDRESS.fullmatch(address) and len(address) <= 254 and address.index("@") <= 64:
        if "=?" not in address:  # the common case: plain ASCII, nothing to convert
            return CheckedAddress(address, address, address, False)
    bad = unsafe_character(address)
    if bad is not None:
        raise AddressProblem(
            "unsafe_header",
            f"The address {address!r} contains the control character {bad!r}; clean the list "
            "with smtpkit.clean before sending.",
        )
    if "=?" in address:
        raise AddressProblem(
            "unsafe_header", f"The address {address!r} contains an encoded-word ('=?')."
        )
    local, at, domain = address.rpartition("@")
    problem = None
    if not at or not local or not domain:
        problem = "it is not of the form local-part@domain"
    elif _SPACE.search(address):
        problem = "it contains white space"
    elif local.startswith('"'):
        problem = "quoted local parts are not supported"
    elif not _LOCAL.fullmatch(local):
        problem = "its local part has a character or a dot an address cannot have there"
    elif len(local.encode("utf-8")) > 64:
        problem = "its local part is longer than 64 octets"
    if problem is None:
        adomain = ascii_domain(domain)
        if adomain is None:
            problem = "its domain is not a valid host name"
        elif len(local.encode("utf-8")) + 1 + len(adomain) > 254:
            problem = "it is longer than 254 octets"
        else:
            return CheckedAddress(
                f"{local}@{adomain}", f"{local}@{adomain}", f"{local}@{domain}", not local.isascii()
            )
    raise AddressProblem("invalid_recipient", f"The address {address!r} is not valid: {problem}.")


def split_mailbox(text: str, /) -> tuple[str, str]:
    """Split ``"Display Name <addr>"`` (quotes optional) into ``(display, addr)``.

    Example:
        >>> split_mailbox('"Acme, Inc." <news@acme.test>'), split_mailbox("a@b.test")
        (('Acme, Inc.', 'news@acme.test'), ('', 'a@b.test'))
    """
    text = text.strip()
    if text.endswith(">") and "<" in text:
        display, _, address = text[:-1].rpartition("<")
        display = display.strip()
        if len(display) >= 2 and display[0] == display[-1] == '"':
            display = re.sub(r"\\(.)", r"\1", display[1:-1])
        return display, address.strip()
    return "", text


def disposition(filename: str, /) -> str:
    """A ``Content-Disposition: attachment`` line naming ``filename`` (RFC 2231 when needed).

    Example:
        >>> disposition("report.pdf")
        'Content-Disposition: attachment;\\r\\n filename="report.pdf"\\r\\n'
    """
    head = "Content-Disposition: attachment;"
    if filename.isascii() and len(filename) <= 200:
        escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
        return f'{head}\r\n filename="{escaped}"\r\n'
    encoded = quote(filename.encode("utf-8"), safe=_ATTR_SAFE)
    segments: list[str] = []
    while encoded:
        cut = min(60, len(encoded))
        if cut < len(encoded) and "%" in encoded[cut - 2 : cut]:  # never split a %XX triplet
            cut = encoded.rfind("%", 0, cut)
        segments.append(encoded[:cut])
        encoded = encoded[cut:]
    if len(segments) == 1:
        return f"{head}\r\n filename*=utf-8''{segments[0]}\r\n"
    parts = [f"filename*0*=utf-8''{segments[0]}"]
    parts += [f"filename*{i}*={segment}" for i, segment in enumerate(segments[1:], start=1)]
    return head + "".join(f"\r\n {part};" for part in parts)[:-1] + "\r\n"
