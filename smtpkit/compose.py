"""Templates to safe, standards-correct MIME messages, fast: compile once, fill every row.

A :class:`Template` is validated and compiled when it is built. Its constant parts (header
lines, MIME skeleton, boundaries, quoted-printable lines without fields, base64 attachments) are
serialized to bytes once; per row, :func:`render` only converts the row's values, encodes the
header values and the body lines that hold a field, and splices them in. That makes a message
tens of times cheaper than building an ``email.message.EmailMessage`` per row (measured by
``bench/compose_bench.py``), while a property test checks that the stdlib parser reads back
exactly what ``EmailMessage`` would have built from the same values.

Fields are plain ``{column}`` substitution (``str.format`` syntax without attribute access,
indexing or conversions; ``{column:spec}`` applies a format spec such as ``{amount:,.2f}``;
``{{`` and ``}}`` are literal braces), not Jinja2. Why:

* the fields a template uses are known before any row is seen, so :func:`check` finds every
  missing or unsafe value of a whole frame in a dry run, and ``Template.fields`` is exact;
* there is no template logic to sandbox: a template can only read the row's values as text;
* filling is ``str.format_map`` on pre-split pieces, which is what makes the speed target;
* conditional text belongs in the frame, where pandas computes it for all rows at once
  (``df["greeting"] = ("Hi " + df["first_name"]).fillna("Hello")``).

Values are inserted as text: HTML-escaped in the HTML part, percent-encoded in ``unsubscribe``
URLs. A value with CR, LF or another control character (or an RFC 2047 encoded-word that decodes
to one) that would reach a header makes that row fail with reason ``unsafe_header``; constant
template text with them, and ``headers=`` that would override a structural header, raise
:class:`~smtpkit.errors.TemplateError` when the template is built.

Per-row problems are :class:`RowError` with a stable ``reason`` (:data:`ROW_ERROR_REASONS`):
``missing_field``, ``unsafe_header``, ``invalid_recipient``, ``invalid_value``,
``line_too_long`` (the send engine adds ``smtputf8_required``).

Example:
    >>> t = Template(subject="Hi {first_name}", text="Hello {first_name}!",
    ...              sender="Acme <news@acme.example>")
    >>> msg = render_message({"first_name": "Zoë", "email": "zoe@example.com"}, t)
    >>> msg.recipient, str(msg.message["Subject"])
    ('zoe@example.com', 'Hi Zoë')
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import email.utils
import hashlib
import html
import mimetypes
import os
import re
import secrets
import time
import types
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from ._compose_body import (
    BodyItem,
    SlotPlan,
    Slots,
    compile_body,
    fill_body,
    normalize_newlines,
    skeleton,
)
from ._compose_headers import (
    HARD_LIMIT,
    AddressProblem,
    CheckedAddress,
    address_line,
    ascii_domain,
    check_address,
    hidden_control,
    phrase,
    split_mailbox,
    unsafe_character,
    unstructured,
)
from ._compose_text import Field, Piece, html_to_text, parse_template, to_source
from .errors import InputError, MissingColumnError, SmtpkitError, TemplateError

__all__ = [
    "CHECK_COLUMNS",
    "FORBIDDEN_HEADERS",
    "RECIPIENT_COLUMNS",
    "ROW_ERROR_REASONS",
    "Attachment",
    "Preview",
    "PreviewItem",
    "Rendered",
    "RowError",
    "Template",
    "check",
    "make_message_id",
    "preview",
    "render",
    "render_message",
]

#: The ``reason`` codes a :class:`RowError` can carry, with what each means.
ROW_ERROR_REASONS: Mapping[str, str] = types.MappingProxyType(
    {
        "missing_field": "a column the template uses is absent or empty (NA) for the row",
        "unsafe_header": "a value bound for a header holds a line break or control character",
        "invalid_recipient": "the recipient address is not a usable address",
        "invalid_value": "a value does not fit its format spec, cannot be encoded, or is a bad URL",
        "line_too_long": "a header line cannot be folded under 998 octets",
        "smtputf8_required": "the message needs SMTPUTF8 and the server does not offer it",
    }
)
#: Header names ``headers=`` may not set (lower case): smtpkit writes them, they would add
#: recipients, or they belong to the receiving side. Any ``content-*`` / ``resent-*`` too.
FORBIDDEN_HEADERS: frozenset[str] = frozenset(
    {
        "from", "sender", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id",
        "mime-version", "return-path", "received", "list-unsubscribe", "list-unsubscribe-post",
        "in-reply-to", "references", "dkim-signature", "arc-seal", "arc-message-signature",
        "arc-authentication-results", "authentication-results",
    }
)  # fmt: skip
#: Columns the recipient address is read from, in order of preference (``clean`` output first).
RECIPIENT_COLUMNS: tuple[str, ...] = ("email_normalized", "email")
#: The columns of the frame :func:`check` returns.
CHECK_COLUMNS: tuple[str, ...] = ("index", "reason", "detail", "field")

_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_MSG_ID = re.compile(rf"<{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")
_URL_TEXT = re.compile(r"[!#-;=?-~]*")  # printable ASCII without space, " < >
_URL = re.compile(r"(?:https://|mailto:)[!#-;=?-~]+", re.IGNORECASE)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HTML_SPECIAL = re.compile("[&<>\"']")
_POST_LINE = "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
_CHECK_MESSAGE_ID = "<check@smtpkit.invalid>"
_CHECK_DATE = "Thu, 01 Jan 2026 00:00:00 +0000"


class RowError(SmtpkitError, ValueError):
    """One row cannot become a message; the send engine records it as a ``failed`` outcome.

    ``reason`` is a stable code from :data:`ROW_ERROR_REASONS`, ``detail`` a sentence that says
    what to fix, ``field`` the column at fault (None when no single column is).

    Example:
        >>> err = RowError("missing_field", "Column 'first_name' is empty.", "first_name")
        >>> err.reason, err.field, str(err)
        ('missing_field', 'first_name', "Column 'first_name' is empty.")
    """

    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        super().__init__(reason, detail, field)
        self.reason = reason
        self.detail = detail
        self.field = field

    def __str__(self) -> str:
        return self.detail


@dataclasses.dataclass(frozen=True, repr=False)
class Rendered:
    """One message, ready for ``DATA``.

    ``data`` is the whole message with CRLF line endings; ``message_id`` the ``<...@...>`` of
    its Message-ID header; ``recipient`` the envelope recipient (domain in IDNA A-labels);
    ``smtputf8`` says the transaction needs the SMTPUTF8 extension (non-ASCII local part), in
    which case the headers are raw UTF-8 (RFC 6532); otherwise ``data`` is pure ASCII.
    """

    data: bytes
    message_id: str
    recipient: str
    smtputf8: bool

    @property
    def message(self) -> EmailMessage:
        """The message parsed back by the stdlib, for inspection (``msg["Subject"]``, parts).

        Line ends read as ``\\n``, as in an ``EmailMessage`` built in memory (``data`` has no
        bare CR or LF, so nothing is lost).
        """
        data = self.data.replace(b"\r\n", b"\n")
        if self.smtputf8:
            parsed = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
        else:
            parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def __repr__(self) -> str:
        return (
            f"Rendered(recipient={self.recipient!r}, message_id={self.message_id!r}, "
            f"smtputf8={self.smtputf8}, size={len(self.data)})"
        )


@dataclasses.dataclass(frozen=True, repr=False)
class Attachment:
    """A file attached to every message of a template.

    ``content_type`` is guessed from the file name when not given. A ``text/*`` attachment whose
    data is valid UTF-8 is labelled ``charset="utf-8"``.

    Example:
        >>> Attachment("prices.csv", b"sku,price\\n")
        Attachment('prices.csv', <10 bytes>, 'text/csv')
    """

    filename: str
    data: bytes
    content_type: str = ""

    def __post_init__(self) -> None:
        name = self.filename
        if not isinstance(name, str) or not name.strip():
            raise TemplateError("An attachment needs a file name, such as 'report.pdf'.")
        if unsafe_character(name) is not None or len(name) > 255:
            raise TemplateError(
                f"The attachment file name {name!r} is unusable: use at most 255 characters "
                "and no control characters."
            )
        if isinstance(self.data, bytearray | memoryview):
            object.__setattr__(self, "data", bytes(self.data))
        if not isinstance(self.data, bytes):
            raise TemplateError(
                f"The data of attachment {name!r} must be bytes, not {type(self.data).__name__}; "
                "pass a path to attach a file."
            )
        guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
        content_type = self.content_type or guessed
        if not isinstance(content_type, str) or not _MEDIA_TYPE.fullmatch(content_type):
            raise TemplateError(
                f"The content type {content_type!r} of attachment {name!r} is not of the form "
                "'type/subtype', such as 'application/pdf'."
            )
        object.__setattr__(self, "content_type", content_type.lower())

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], /, *, filename: str | None = None, content_type: str = ""
    ) -> Attachment:
        """Read a file to attach; ``filename`` defaults to the file's own name."""
        file = Path(path)
        if not file.is_file():
            raise TemplateError(f"The attachment {str(file)!r} does not exist or is not a file.")
        return cls(filename or file.name, file.read_bytes(), content_type)

    def __repr__(self) -> str:
        return f"Attachment({self.filename!r}, <{len(self.data)} bytes>, {self.content_type!r})"


AttachmentLike = Attachment | str | os.PathLike[str] | tuple[str, bytes] | tuple[str, bytes, str]


@dataclasses.dataclass(frozen=True)
class _HeaderText:
    """A header value template: a format string over value keys, or a constant."""

    fmt: str | None
    const: str
    fields: tuple[str, ...]

    @property
    def field(self) -> str | None:
        return ", ".join(self.fields) or None


@dataclasses.dataclass(frozen=True)
class _Unsubscribe:
    """List-Unsubscribe URIs as ("const", url, None), ("fmt", format, fields) or
    ("raw", value key, column); ``line`` is the finished header when every URI is constant."""

    uris: tuple[tuple[str, str, str | None], ...]
    line: str | None


@dataclasses.dataclass(frozen=True)
class _Compiled:
    """Everything a template needs per row, prepared when it is built."""

    slots: tuple[SlotPlan, ...]
    sender_utf8: bool
    from_lines: tuple[str, str]  # (plain message, SMTPUTF8 message)
    reply_lines: tuple[str, str]
    subject: _HeaderText
    subject_lines: tuple[str, str] | None
    to_display: _HeaderText | None
    to_address: _HeaderText | None
    custom: tuple[tuple[str, _HeaderText, tuple[str, str] | None], ...]
    unsubscribe: _Unsubscribe | None
    body: tuple[BodyItem, ...]


def _fields_of(pieces: Iterable[Piece]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.name for p in pieces if isinstance(p, Field)))


def _check_constant(text: str, where: str) -> None:
    bad = unsafe_character(text)
    if bad is not None:
        raise TemplateError(
            f"The {where} contains the control character {bad!r}; header text must be one line "
            "without control characters."
        )
    hidden = hidden_control(text)
    if hidden is not None:
        raise TemplateError(
            f"The {where} contains the encoded-word {hidden!r}, which decodes to a control "
            "character; remove it."
        )


def _mailbox(text: Any, option: str) -> tuple[str, CheckedAddress]:
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(f"{option}= must be an address such as 'News <news@example.com>'.")
    if "{" in text or "}" in text:
        raise TemplateError(f"{option}= must be a constant address; it cannot hold fields.")
    _check_constant(text, f"{option} address")
    display, address = split_mailbox(text)
    try:
        return display, check_address(address)
    except AddressProblem as problem:
        raise TemplateError(f"{option}= is not usable: {problem.detail}") from None


def _address_lines(name: str, display: str, address: CheckedAddress) -> tuple[str, str]:
    lines = []
    for utf8 in (False, True):
        shown = address.header_utf8 if utf8 else address.header_ascii
        line = address_line(name, phrase(display, utf8=utf8), shown, utf8=utf8)
        if line is None:
            raise TemplateError(f"The {name} header would be longer than {HARD_LIMIT} octets.")
        lines.append(line)
    return lines[0], lines[1]


def _header_text(source: Any, where: str, slots: Slots) -> _HeaderText:
    pieces = parse_template(source, where=where)
    for piece in pieces:
        if isinstance(piece, str):
            _check_constant(piece, f"{where} template")
    names = _fields_of(pieces)
    if not names:
        const = "".join(p for p in pieces if isinstance(p, str)).strip()
        _check_constant(const, f"{where} template")
        return _HeaderText(None, const, ())
    return _HeaderText(slots.fmt(pieces, "header"), "", names)


def _constant_unstructured(name: str, text: _HeaderText) -> tuple[str, str] | None:
    if text.fmt is not None:
        return None
    return unstructured(name, text.const, utf8=False), unstructured(name, text.const, utf8=True)


def _compile_to(to: Any, slots: Slots) -> tuple[_HeaderText | None, _HeaderText | None]:
    if to is None:
        return None, None
    if not isinstance(to, str):
        raise TemplateError("to= must be a string such as '{first_name} {last_name}'.")
    display, address = to.strip(), None
    if display.endswith(">") and "<" in display:
        display, _, address = display[:-1].rpartition("<")
        display = display.strip()
    if len(display) >= 2 and display[0] == display[-1] == '"':
        display = display[1:-1]  # quotes are added where needed
    display_text = _header_text(display, "to display name", slots)
    address_text = None
    if address is not None:
        address_text = _header_text(address.strip(), "to address", slots)
        if address_text.fmt is None:
            try:
                check_address(address_text.const)
            except AddressProblem as problem:
                raise TemplateError(f"to= is not usable: {problem.detail}") from None
    return display_text, address_text


def _compile_headers(
    headers: Any, slots: Slots
) -> tuple[tuple[str, _HeaderText, tuple[str, str] | None], ...]:
    if headers is None:
        return ()
    if not isinstance(headers, Mapping):
        raise TemplateError("headers= must be a mapping of header name to value.")
    compiled = []
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise TemplateError(
                f"The header name {name!r} is not valid: use printable ASCII without spaces or "
                "colons, such as 'X-Campaign'."
            )
        lower = name.lower()
        if lower in ("cc", "bcc"):
            raise TemplateError(f"headers= cannot set {name}: each message goes to one recipient.")
        if lower in FORBIDDEN_HEADERS or lower.startswith(("content-", "resent-")):
            raise TemplateError(
                f"headers= cannot set {name!r}: smtpkit writes it (use subject=, sender=, "
                "reply_to=, to=, unsubscribe= or attachments=)."
            )
        if lower in seen:
            raise TemplateError(f"headers= sets {name!r} twice (header names ignore case).")
        seen.add(lower)
        text = _header_text(value, f"{name} header", slots)
        compiled.append((name, text, _constant_unstructured(name, text)))
    return tuple(compiled)


def _unsubscribe_line(uris: Sequence[str]) -> str | None:
    """The List-Unsubscribe header (and the RFC 8058 Post header when there is an https URI)."""
    if len(uris) == 1:  # nothing to fold between
        uri = uris[0]
        if len(uri) > HARD_LIMIT - 20:
            return None
        line = f"List-Unsubscribe: <{uri}>\r\n"
        return line + _POST_LINE if uri[:8].lower() == "https://" else line
    last = len(uris) - 1
    pieces = [f"{' ' if i else ''}<{uri}>{',' if i < last else ''}" for i, uri in enumerate(uris)]
    lines = ["List-Unsubscribe: " + pieces[0]]
    for piece in pieces[1:]:
        if len(lines[-1]) + len(piece) > 78:
            lines.append(piece)
        else:
            lines[-1] += piece
    if max(len(line) for line in lines) > HARD_LIMIT:
        return None
    text = "\r\n".join(lines) + "\r\n"
    if any(uri[:8].lower() == "https://" for uri in uris):
        text += _POST_LINE
    return text


def _compile_unsubscribe(unsubscribe: Any, slots: Slots) -> _Unsubscribe | None:
    if unsubscribe is None:
        return None
    sources = [unsubscribe] if isinstance(unsubscribe, str) else list(unsubscribe)
    if not sources or not all(isinstance(s, str) for s in sources):
        raise TemplateError("unsubscribe= must be a URL string or a sequence of them.")
    uris: list[tuple[str, str, str | None]] = []
    for source in sources:
        pieces = parse_template(source.strip(), where="unsubscribe")
        names = _fields_of(pieces)
        if len(pieces) == 1 and isinstance(pieces[0], Field):  # the whole URL comes per row
            uris.append(("raw", slots.key(pieces[0], "rawurl"), pieces[0].name))
            continue
        first = pieces[0] if pieces and isinstance(pieces[0], str) else ""
        if not re.match(r"(?i)(https://[^/?#]|mailto:)", first):
            raise TemplateError(
                f"unsubscribe= {source!r} must start with 'https://' and a host, or 'mailto:' "
                "(RFC 8058 one-click unsubscribe needs https)."
            )
        if not all(_URL_TEXT.fullmatch(p) for p in pieces if isinstance(p, str)):
            raise TemplateError(
                f"unsubscribe= {source!r} contains characters a URL in a header cannot have "
                "(spaces, quotes, angle brackets, non-ASCII); percent-encode them."
            )
        if names:
            uris.append(("fmt", slots.fmt(pieces, "url"), ", ".join(names)))
        else:
            uris.append(("const", "".join(p for p in pieces if isinstance(p, str)), None))
    line = None
    if all(kind == "const" for kind, _, _ in uris):
        line = _unsubscribe_line([text for _, text, _ in uris])
        if line is None:
            raise TemplateError(
                f"The List-Unsubscribe header would be longer than {HARD_LIMIT} octets."
            )
    return _Unsubscribe(tuple(uris), line)


def _as_attachment(item: Any) -> Attachment:
    if isinstance(item, Attachment):
        return item
    if isinstance(item, str | os.PathLike):
        return Attachment.from_path(item)
    if isinstance(item, tuple) and len(item) in (2, 3):
        return Attachment(*item)
    raise TemplateError(
        "Each attachment must be an Attachment, a file path, or a (filename, bytes[, "
        f"content_type]) tuple; got {type(item).__name__}."
    )


_date_cache: list[Any] = [None, ""]


def _date_now() -> str:
    now = int(time.time())
    if _date_cache[0] != now:  # formatted once per second, not once per message
        _date_cache[1] = email.utils.format_datetime(datetime.fromtimestamp(now, UTC))
        _date_cache[0] = now
    return str(_date_cache[1])


def _date_header(date: datetime | None) -> str:
    if date is None:
        return _date_now()
    if not isinstance(date, datetime) or date.utcoffset() is None:
        raise InputError(
            "date must be a timezone-aware datetime, such as datetime.now(timezone.utc); "
            f"got {date!r}."
        )
    return email.utils.format_datetime(date)


def _message_id(given: str | None, domain: str) -> str:
    if given is None:
        return f"<{secrets.token_hex(16)}@{domain}>"
    if not isinstance(given, str):
        raise InputError(f"message_id must be a string such as '<abc@example.com>', not {given!r}.")
    candidate = given if given.startswith("<") else f"<{given}>"
    if not _MSG_ID.fullmatch(candidate):
        raise InputError(
            f"message_id {given!r} is not a valid Message-ID; make one with "
            "make_message_id(domain=..., key=...)."
        )
    return candidate


def _is_na(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return value != value
    if isinstance(value, str | int):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-likes are values, not NA
        return False


def _as_text(raw: Any, name: str, spec: str) -> str:
    if _is_na(raw):
        raise RowError(
            "missing_field",
            f"Column {name!r} is empty for this row; fill it in or drop the row before sending.",
            name,
        )
    try:
        return format(raw, spec) if spec else (raw if isinstance(raw, str) else str(raw))
    except (TypeError, ValueError) as exc:
        raise RowError(
            "invalid_value",
            f"The value {raw!r} of column {name!r} does not fit the format spec {spec!r} ({exc}).",
            name,
        ) from None


def _as_row(row: Any) -> Mapping[str, Any]:
    if isinstance(row, pd.Series):
        return row.to_dict()  # type: ignore[return-value]
    if isinstance(row, Mapping):
        return row
    raise InputError(
        f"A row must be a mapping (dict) or a pandas Series, not {type(row).__name__}; use "
        "frame.iloc[i] or frame.to_dict('records')."
    )


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Template:
    """A message template, validated and compiled when built (``TemplateError`` if unusable).

    Parameters:
        subject: the subject line; may hold ``{column}`` fields, like every text option below.
        text: the plain-text body; generated from ``html`` when not given.
        html: the HTML body; values are HTML-escaped where they are inserted.
        sender: the From address, ``"Name <addr@domain>"`` or ``"addr@domain"`` (constant).
        reply_to: an optional Reply-To address (constant).
        headers: extra headers such as ``{"X-Campaign": "spring"}``; structural ones
            (:data:`FORBIDDEN_HEADERS`, ``Content-*``, ``Resent-*``) are refused.
        attachments: :class:`Attachment` objects, file paths or ``(filename, bytes)`` tuples.
        unsubscribe: an ``https://`` and/or ``mailto:`` URL (a string or a sequence of them)
            whose fields are percent-encoded (``"https://x.example/u?id={contact_id}"``), or a
            single field holding a whole URL per row (``"{unsubscribe_url}"``). Adds
            ``List-Unsubscribe`` and, with an https URL, ``List-Unsubscribe-Post:
            List-Unsubscribe=One-Click`` (RFC 8058).
        to: the To header's display name, optionally with an address:
            ``"{first_name} {last_name}"`` or ``"{first_name} <{email}>"``. Without an address
            part the header shows the envelope recipient. Display names are trimmed and runs of
            white space become one space (all header values are trimmed).

    ``fields`` is the set of columns the template reads (the recipient column aside: that is
    ``email_normalized`` when the row has it, else ``email``). ``sender_address`` is the
    envelope sender (MAIL FROM), ``domain`` its ASCII domain (for Message-IDs), and
    ``text_template`` the text part's template (given, or generated from ``html``).

    Example:
        >>> t = Template(subject="Hi {first_name}", html="<p>Hi {first_name}</p>",
        ...              sender="news@acme.example", to="{first_name} {last_name}")
        >>> sorted(t.fields), t.text_template
        (['first_name', 'last_name'], 'Hi {first_name}\\n')
    """

    subject: str
    text: str | None = None
    html: str | None = None
    sender: str
    reply_to: str | None = None
    headers: Mapping[str, str] | None = None
    attachments: Sequence[AttachmentLike] = ()
    unsubscribe: str | Sequence[str] | None = None
    to: str | None = None

    fields: frozenset[str] = dataclasses.field(init=False)
    sender_address: str = dataclasses.field(init=False)
    domain: str = dataclasses.field(init=False)
    text_template: str = dataclasses.field(init=False)
    _compiled: _Compiled = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: the derived fields are set once, here
        slots = Slots()
        sender_display, sender = _mailbox(self.sender, "sender")
        reply_lines = ("", "")
        if self.reply_to is not None:
            reply_lines = _address_lines("Reply-To", *_mailbox(self.reply_to, "reply_to"))
        subject = _header_text(self.subject, "subject", slots)
        to_display, to_address = _compile_to(self.to, slots)
        custom = _compile_headers(self.headers, slots)
        unsubscribe = _compile_unsubscribe(self.unsubscribe, slots)

        if self.text is None and self.html is None:
            raise TemplateError("A template needs text=, html= or both for the message body.")
        html_pieces = parse_template(self.html, where="html") if self.html is not None else None
        if self.text is not None:
            text_pieces = parse_template(self.text, where="text")
        else:
            assert html_pieces is not None
            text_pieces = html_to_text(html_pieces)
        text_items = compile_body(text_pieces, "text", slots)
        html_items = compile_body(html_pieces, "html", slots) if html_pieces is not None else None
        if isinstance(self.attachments, str | bytes | os.PathLike) or not isinstance(
            self.attachments, Iterable
        ):
            raise TemplateError("attachments= must be a list, such as ['report.pdf'].")
        attachments = tuple(_as_attachment(a) for a in self.attachments)
        body = skeleton(
            text_items, html_items, [(a.filename, a.data, a.content_type) for a in attachments]
        )

        fields = {name for name, *_ in slots.plan()}
        set_(self, "attachments", attachments)
        if self.headers is not None:
            set_(self, "headers", types.MappingProxyType(dict(self.headers)))
        set_(self, "fields", frozenset(fields))
        set_(self, "sender_address", sender.envelope)
        set_(self, "domain", sender.domain)
        set_(self, "text_template", to_source(text_pieces))
        set_(
            self,
            "_compiled",
            _Compiled(
                slots=slots.plan(),
                sender_utf8=sender.utf8,
                from_lines=_address_lines("From", sender_display, sender),
                reply_lines=reply_lines,
                subject=subject,
                subject_lines=_constant_unstructured("Subject", subject),
                to_display=to_display,
                to_address=to_address,
                custom=custom,
                unsubscribe=unsubscribe,
                body=body,
            ),
        )

    # --- per row -----------------------------------------------------------------------------

    def _fill(self, row: Mapping[Any, Any], problems: list[RowError] | None) -> dict[str, str]:
        """The row's values under every key the compiled template uses. Raises the first
        RowError, or appends every one to ``problems`` when that list is given."""
        values: dict[str, str] = {}
        for name, spec, header, text_key, html_key, url, rawurl in self._compiled.slots:
            try:
                try:
                    raw = row[name]
                except KeyError:
                    raise RowError(
                        "missing_field",
                        f"The row has no column {name!r}, which the template uses.",
                        name,
                    ) from None
                value = raw if type(raw) is str and not spec else _as_text(raw, name, spec)
                if not value.isascii():
                    try:
                        value.encode("utf-8")
                    except UnicodeEncodeError:
                        raise RowError(
                            "invalid_value",
                            f"Column {name!r} holds text that cannot be encoded as UTF-8 (a lone "
                            "surrogate); check how the file was decoded.",
                            name,
                        ) from None
                if header is not None:
                    match = _UNSAFE.search(value)
                    if match is not None:
                        raise RowError(
                            "unsafe_header",
                            f"Column {name!r} holds the control character {match.group()!r}, which "
                            "is not allowed in a header; clean the value or drop the row.",
                            name,
                        )
                    values[header] = value
                if text_key is not None or html_key is not None:
                    body = normalize_newlines(value)
                    if text_key is not None:
                        values[text_key] = body
                    if html_key is not None:
                        values[html_key] = html.escape(body) if _HTML_SPECIAL.search(body) else body
                if url is not None:
                    values[url] = quote(value, safe="")
                if rawurl is not None:
                    values[rawurl] = value
            except RowError as error:
                if problems is None:
                    raise
                problems.append(error)
        return values

    @staticmethod
    def _recipient(row: Mapping[Any, Any], recipient: str | None) -> CheckedAddress:
        column: str | None = None
        value: Any = recipient
        if recipient is None:
            column = next((c for c in RECIPIENT_COLUMNS if c in row), None)
            if column is None:
                raise RowError(
                    "missing_field",
                    "The row has no 'email_normalized' or 'email' column for the recipient "
                    "address.",
                    "email",
                )
            value = row[column]
            if _is_na(value):
                raise RowError(
                    "missing_field",
                    f"Column {column!r} is empty for this row, so it has no recipient address.",
                    column,
                )
        if not isinstance(value, str):
            raise RowError(
                "invalid_recipient",
                f"The recipient must be an address string, not {type(value).__name__} {value!r}.",
                column,
            )
        try:
            return check_address(value)
        except AddressProblem as problem:
            raise RowError(problem.reason, problem.detail, column) from None

    @staticmethod
    def _header_value(text: _HeaderText, values: Mapping[str, str], what: str) -> str:
        if text.fmt is None:
            return text.const
        value = text.fmt.format_map(values).strip()
        if "=?" in value and hidden_control(value) is not None:
            raise RowError(
                "unsafe_header",
                f"The {what} of this row contains an encoded-word that decodes to a control "
                f"character; clean the values of {text.field}.",
                text.field,
            )
        return value

    @staticmethod
    def _unsubscribe_header(unsubscribe: _Unsubscribe, values: Mapping[str, str]) -> str:
        uris: list[str] = []
        for kind, text, field in unsubscribe.uris:
            if kind == "const":
                uris.append(text)
            elif kind == "fmt":
                uris.append(text.format_map(values))
            else:
                url = values[text].strip()
                if not _URL.fullmatch(url) or re.match(r"(?i)https://[/?#]", url):
                    raise RowError(
                        "invalid_value",
                        f"The unsubscribe URL {url!r} of this row is not an https:// or mailto: "
                        "URL of printable ASCII without spaces, quotes or angle brackets.",
                        field,
                    )
                uris.append(url)
        line = _unsubscribe_line(uris)
        if line is None:
            fields = [f for _, _, f in unsubscribe.uris if f]
            raise RowError(
                "line_too_long",
                "The List-Unsubscribe header of this row cannot be folded under 998 octets; "
                "shorten the URL.",
                ", ".join(fields) or None,
            )
        return line

    def _message(
        self, values: dict[str, str], rcpt: CheckedAddress, message_id: str, date: str
    ) -> Rendered:
        c = self._compiled
        to_address = rcpt
        if c.to_address is not None:
            try:
                to_address = check_address(self._header_value(c.to_address, values, "To address"))
            except AddressProblem as problem:
                raise RowError(problem.reason, problem.detail, c.to_address.field) from None
        utf8 = c.sender_utf8 or rcpt.utf8 or to_address.utf8
        mode = 1 if utf8 else 0

        shown = to_address.header_utf8 if utf8 else to_address.header_ascii
        if c.to_display is None:
            to_line = "To: " + shown + "\r\n"  # an address has at most 254 octets
        else:
            display = self._header_value(c.to_display, values, "To display name")
            line = address_line("To", phrase(display, utf8=utf8), shown, utf8=utf8)
            if line is None:
                raise RowError(
                    "line_too_long",
                    "The To header of this row cannot be folded under 998 octets.",
                    c.to_display.field,
                )
            to_line = line
        if c.subject_lines is not None:
            subject_line = c.subject_lines[mode]
        else:
            subject = self._header_value(c.subject, values, "subject")
            subject_line = unstructured("Subject", subject, utf8=utf8)

        head = [
            c.from_lines[mode],
            to_line,
            subject_line,
            "Date: ",
            date,
            "\r\nMessage-ID: ",
            message_id,
            "\r\n",
            c.reply_lines[mode],
        ]
        if c.unsubscribe is not None:
            head.append(c.unsubscribe.line or self._unsubscribe_header(c.unsubscribe, values))
        for name, text, constant in c.custom:
            if constant is not None:
                head.append(constant[mode])
            else:
                value = self._header_value(text, values, f"{name} header")
                head.append(unstructured(name, value, utf8=utf8))
        out = ["".join(head).encode("utf-8")]
        fill_body(c.body, values, out)
        return Rendered(b"".join(out), message_id, rcpt.envelope, utf8)

    def _render(
        self, row: Any, *, recipient: str | None, message_id: str | None, date: datetime | None
    ) -> Rendered:
        mapping = _as_row(row)
        values = self._fill(mapping, None)
        rcpt = self._recipient(mapping, recipient)
        return self._message(values, rcpt, _message_id(message_id, self.domain), _date_header(date))

    def _problems(self, row: Mapping[Any, Any]) -> list[RowError]:
        """Every problem of one row (several when several columns are at fault)."""
        problems: list[RowError] = []
        values = self._fill(row, problems)
        try:
            rcpt = self._recipient(row, None)
        except RowError as error:
            problems.append(error)
        if not problems:
            try:
                self._message(values, rcpt, _CHECK_MESSAGE_ID, _CHECK_DATE)
            except RowError as error:
                problems.append(error)
        return problems

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt from its options (the compiled state is derived, headers are a mappingproxy)
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        if options["headers"] is not None:
            options["headers"] = dict(options["headers"])
        return (_rebuild_template, (options,))

    def __repr__(self) -> str:
        parts = [f"subject={self.subject!r}", f"sender={self.sender!r}"]
        if self.to is not None:
            parts.append(f"to={self.to!r}")
        body = "+".join(name for name in ("text", "html") if getattr(self, name) is not None)
        parts.append(f"body={body!r}")
        if self.attachments:
            parts.append(f"attachments={len(self.attachments)}")
        parts.append(f"fields={sorted(self.fields)!r}")
        return "Template(" + ", ".join(parts) + ")"


def _rebuild_template(options: dict[str, Any]) -> Template:
    return Template(**options)


def make_message_id(*, domain: str, key: str | None = None) -> str:
    """A Message-ID ``"<...@domain>"``: random, or derived from ``key`` so a retry keeps it.

    The send engine passes ``key=f"{campaign}/{recipient}"``: a message sent again after a crash
    carries the same Message-ID, so receivers and bounce matching see one message.

    Example:
        >>> make_message_id(domain="acme.example").endswith("@acme.example>")
        True
        >>> a = make_message_id(domain="acme.example", key="spring/ann@example.com")
        >>> a == make_message_id(domain="acme.example", key="spring/ann@example.com")
        True
    """
    host = ascii_domain(domain) if isinstance(domain, str) else None
    if host is None:
        raise InputError(f"domain must be a host name such as 'example.com'; got {domain!r}.")
    if key is None:
        return f"<{secrets.token_hex(16)}@{host}>"
    if not isinstance(key, str):
        raise InputError(
            f"key must be a string such as 'campaign/recipient'; got {type(key).__name__}."
        )
    digest = hashlib.blake2b(
        key.encode("utf-8", "surrogatepass"),
        digest_size=16,
        key=host.lower().encode("ascii"),
        person=b"smtpkit-msgid",
    )
    return f"<{digest.hexdigest()}@{host}>"


def render_message(
    row: Mapping[Any, Any] | pd.Series,
    template: Template,
    /,
    *,
    recipient: str | None = None,
    message_id: str | None = None,
    date: datetime | None = None,
) -> Rendered:
    """Render one row into a :class:`Rendered` message; :class:`RowError` when it cannot be.

    Parameters:
        recipient: the envelope recipient; default ``row["email_normalized"]`` when the row has
            that column (``smtpkit.clean`` output), else ``row["email"]``.
        message_id: the Message-ID to use (``make_message_id(domain=..., key=...)``); default a
            new random one.
        date: the Date header (timezone-aware); default now.

    Example:
        >>> t = Template(subject="Hi", text="Hello {first_name}", sender="a@acme.example")
        >>> render_message({"first_name": "Ann", "email": "ann@example.com"}, t).recipient
        'ann@example.com'
    """
    if not isinstance(template, Template):
        raise InputError(
            f"The second argument must be a smtpkit.Template, not {type(template).__name__}."
        )
    return template._render(row, recipient=recipient, message_id=message_id, date=date)


def render(
    row: Mapping[Any, Any] | pd.Series,
    template: Template,
    /,
    *,
    recipient: str | None = None,
    message_id: str | None = None,
    date: datetime | None = None,
) -> bytes:
    """The message bytes for one row (``render_message(...).data``); :class:`RowError` if bad.

    Example:
        >>> t = Template(subject="Hi", text="Hello {first_name}", sender="a@acme.example")
        >>> data = render({"first_name": "Ann", "email": "ann@example.com"}, t)
        >>> data.splitlines()[:3]
        [b'From: a@acme.example', b'To: ann@example.com', b'Subject: Hi']
    """
    return render_message(row, template, recipient=recipient, message_id=message_id, date=date).data


def _require_frame_and_template(frame: Any, template: Any, what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{what}() needs a pandas DataFrame first, not {type(frame).__name__}.")
    if not isinstance(template, Template):
        raise InputError(
            f"{what}() needs a smtpkit.Template second, not {type(template).__name__}."
        )
    present = ", ".join(repr(c) for c in frame.columns) or "no columns"
    missing = sorted(template.fields - set(frame.columns))
    if missing:
        raise MissingColumnError(
            f"The template uses columns the frame does not have: "
            f"{', '.join(map(repr, missing))}; the frame has {present}."
        )
    if not any(c in frame.columns for c in RECIPIENT_COLUMNS):
        raise MissingColumnError(
            "The frame needs an 'email_normalized' column (from smtpkit.clean) or an 'email' "
            f"column for the recipient address; it has {present}."
        )


def check(frame: pd.DataFrame, template: Template, /) -> pd.DataFrame:
    """Dry-run ``template`` over every row: one row per problem; empty when every row renders.

    Columns: ``index`` (the frame's index label), ``reason`` (see :data:`ROW_ERROR_REASONS`),
    ``detail`` (what to fix) and ``field`` (the column at fault, or NA). Nothing is sent. A
    column the template uses that the frame lacks altogether raises
    :class:`~smtpkit.errors.MissingColumnError`.

    Example:
        >>> import pandas as pd
        >>> t = Template(subject="Hi {first_name}", text="Hello", sender="a@acme.example")
        >>> frame = pd.DataFrame({"first_name": ["Ann", None],
        ...                       "email": ["a@x.example", "b@x.example"]})
        >>> check(frame, t)[["index", "reason", "field"]].to_dict("records")
        [{'index': 1, 'reason': 'missing_field', 'field': 'first_name'}]
    """
    _require_frame_and_template(frame, template, "check")
    rows: list[tuple[Any, str, str, str | None]] = []
    for label, row in zip(frame.index, frame.to_dict("records"), strict=True):
        for problem in template._problems(row):
            rows.append((label, problem.reason, problem.detail, problem.field))
    result = pd.DataFrame(rows, columns=list(CHECK_COLUMNS))
    result["index"] = result["index"].astype(object)
    for column in ("reason", "detail", "field"):
        result[column] = result[column].astype("string")
    return result


@dataclasses.dataclass(frozen=True)
class PreviewItem:
    """One previewed row: its index label and the message, or why it cannot be sent."""

    index: Any
    rendered: Rendered | None
    error: RowError | None


_SHOWN_HEADERS = ("From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Unsubscribe")


def _parts(message: EmailMessage) -> tuple[str | None, str | None, list[str]]:
    text = html_body = None
    attachments = []
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_filename() is not None:
            size = len(part.get_payload(decode=True) or b"")
            attachments.append(f"{part.get_filename()} ({part.get_content_type()}, {size} bytes)")
        elif part.get_content_type() == "text/plain" and text is None:
            text = str(part.get_content())
        elif part.get_content_type() == "text/html" and html_body is None:
            html_body = str(part.get_content())
    return text, html_body, attachments


@dataclasses.dataclass(frozen=True, repr=False)
class Preview:
    """The first rendered messages of a frame, to look at (``_repr_html_`` in a notebook)."""

    items: tuple[PreviewItem, ...]
    total: int

    @property
    def messages(self) -> list[EmailMessage]:
        """The previewed messages parsed by the stdlib (rows that failed are left out)."""
        return [item.rendered.message for item in self.items if item.rendered is not None]

    def __repr__(self) -> str:
        lines = [f"Preview of {len(self.items)} of {self.total} rows"]
        for item in self.items:
            lines.append(f"--- row {item.index!r} ---")
            if item.rendered is None:
                assert item.error is not None
                lines.append(f"cannot be sent: {item.error.reason}: {item.error.detail}")
                continue
            message = item.rendered.message
            lines += [f"{n}: {message[n]}" for n in _SHOWN_HEADERS if message[n] is not None]
            text, _, attachments = _parts(message)
            lines += [f"Attachment: {a}" for a in attachments]
            lines += ["", (text or "").rstrip("\n")]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        blocks = [f"<div><b>Preview of {len(self.items)} of {self.total} rows</b></div>"]
        for item in self.items:
            title = f"row {esc(repr(item.index))}"
            if item.rendered is None:
                assert item.error is not None
                blocks.append(
                    f"<div style='border:1px solid #c33;padding:6px;margin:6px 0'><b>{title}</b>"
                    f": cannot be sent: <code>{esc(item.error.reason)}</code> "
                    f"{esc(item.error.detail)}</div>"
                )
                continue
            message = item.rendered.message
            rows = "".join(
                f"<tr><th style='text-align:left;vertical-align:top'>{esc(name)}</th>"
                f"<td style='text-align:left'>{esc(str(message[name]))}</td></tr>"
                for name in _SHOWN_HEADERS
                if message[name] is not None
            )
            text, html_body, attachments = _parts(message)
            rows += "".join(
                f"<tr><th style='text-align:left'>Attachment</th>"
                f"<td style='text-align:left'>{esc(a)}</td></tr>"
                for a in attachments
            )
            parts = f"<pre style='white-space:pre-wrap;margin:4px 0'>{esc(text or '')}</pre>"
            if html_body is not None:
                # sandbox="": the HTML part runs no script, submits no form, navigates nowhere
                parts += (
                    "<iframe sandbox='' referrerpolicy='no-referrer' style='width:100%;"
                    f'height:320px;border:1px solid #ccc\' srcdoc="{esc(html_body)}"></iframe>'
                )
            blocks.append(
                f"<div style='border:1px solid #ccc;padding:6px;margin:6px 0'><b>{title}</b>"
                f"<table>{rows}</table>{parts}</div>"
            )
        return "".join(blocks)


def preview(frame: pd.DataFrame, template: Template, /, *, n: int = 3) -> Preview:
    """Render the first ``n`` rows of ``frame`` to look at; rows that cannot be sent say why.

    Example:
        >>> import pandas as pd
        >>> t = Template(subject="Hi {first_name}", text="Hello", sender="a@acme.example")
        >>> p = preview(pd.DataFrame({"first_name": ["Ann"], "email": ["ann@x.example"]}), t)
        >>> repr(p).splitlines()[3]
        'To: ann@x.example'
    """
    _require_frame_and_template(frame, template, "preview")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InputError(f"n must be a whole number of rows, 0 or more; got {n!r}.")
    head = frame.head(n)
    items = []
    for label, row in zip(head.index, head.to_dict("records"), strict=True):
        try:
            rendered = template._render(row, recipient=None, message_id=None, date=None)
            items.append(PreviewItem(label, rendered, None))
        except RowError as error:
            items.append(PreviewItem(label, None, error))
    return Preview(tuple(items), len(frame))
