"""Turn one message into bounce records: RFC 3464 DSN, RFC 5965 ARF, RFC 3834 auto-reply, text.

Private helper of :mod:`smtpkit.bounces` (which documents the behaviour). ``parse_message``
never raises for bad input: whatever the bytes are, the answer is a list of records, with
``kind="unparsed"`` and a reason when nothing could be read.

Example:
    >>> raw = (b"From: MAILER-DAEMON@mx.example.net\\nTo: bounces+t1@example.com\\n"
    ...        b"Subject: failure notice\\n\\n<ann@example.net>:\\nno such user\\n")
    >>> [(r.recipient, r.kind, r.reason) for r in parse_message(raw)]
    [('ann@example.net', 'bounce', 'user_unknown')]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.message
import email.policy
import email.utils
import re
from collections.abc import Iterator
from typing import Any, Literal

from . import _bounce_text as text_rules
from ._bounce_classify import classify, reason_from_text
from ._bounce_mime import Part, decode_bytes, decode_header_value

__all__ = ["MAX_PARSE_BYTES", "BounceKind", "BounceRecord", "parse_message"]

BounceKind = Literal["bounce", "delay", "complaint", "auto_reply", "delivered", "unparsed"]

#: Only the first bytes of a bigger message are parsed: the report and the notice come first,
#: the returned copy of the original (which can be huge) last.
MAX_PARSE_BYTES = 2 * 1024 * 1024
_MAX_DIAGNOSTIC = 1000
_MAX_DEPTH = 3
_MAX_TAIL = 16 * 1024
#: How much of a report's human-readable notice is searched for the lines about a recipient.
_MAX_ABOUT_CHARS = 64 * 1024
#: A chunk of text about one recipient this long says more than the address, whatever it holds
#: (checking by removing the address would cost its length once per recipient that shares it).
_LONG_CHUNK = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class BounceRecord:
    """What one report says about one recipient (one row of ``read_bounces``).

    ``kind`` is one of ``bounce``, ``delay``, ``complaint``, ``auto_reply``, ``delivered``,
    ``unparsed``; ``reason`` is a code from ``smtpkit.bounces.REASONS``; ``hard`` means the
    address must not be mailed again; ``bounce_to`` is the address the report was sent to
    (our VERP envelope sender); times are timezone-aware UTC datetimes.
    """

    recipient: str | None
    kind: BounceKind
    reason: str
    hard: bool = False
    status: str | None = None
    reply_code: int | None = None
    diagnostic: str | None = None
    original_message_id: str | None = None
    reporting_mta: str | None = None
    remote_mta: str | None = None
    arrived_at: dt.datetime | None = None
    bounce_to: str | None = None
    source: str | None = None
    format: str = "unknown"


@dataclasses.dataclass
class _Context:
    """What every record of one message shares."""

    headers: dict[str, str]
    arrived_at: dt.datetime | None
    bounce_to: str | None
    source: str | None
    own_addresses: set[str]


# --- entry point ----------------------------------------------------------------------------


def parse_message(
    message: bytes | str | email.message.Message, /, *, source: str | None = None
) -> list[BounceRecord]:
    """Every record one message holds; never raises for bad input (see module docstring)."""
    if not isinstance(message, bytes | bytearray | memoryview | str | email.message.Message):
        from .errors import InputError

        raise InputError(
            f"parse_bounce needs the raw message as bytes or str, or an email.message.Message; "
            f"got {type(message).__name__}."
        )
    try:
        parsed, problem = _to_message(message)
        if parsed is None:
            return [_unparsed("malformed", problem, source)]
        records = _parse(parsed, source, depth=0)
        if problem and records and records[0].kind == "unparsed":
            records = [dataclasses.replace(records[0], diagnostic=problem)]
        return records
    except Exception as exc:  # a bad message is a row, never a traceback
        return [_unparsed("parse_error", f"{type(exc).__name__}: {exc}"[:_MAX_DIAGNOSTIC], source)]


_HEADER_START = re.compile(rb"^(?:From [^\r\n]*\r?\n)?[!-9;-~]{1,80}:", re.ASCII)


def _to_message(message: Any) -> tuple[Part | None, str | None]:
    if isinstance(message, email.message.Message):
        try:
            message = message.as_bytes(policy=email.policy.compat32)
        except Exception:  # a message object that cannot serialize itself
            message = str(message)
    if isinstance(message, str):
        message = message.encode("utf-8", "surrogateescape")
    data = bytes(message)
    if not data.strip():
        return None, "The message is empty."
    problem = None
    if len(data) > MAX_PARSE_BYTES:
        problem = (
            f"The message has {len(data):,} bytes; only the first {MAX_PARSE_BYTES:,} were read."
        )
        data = data[:MAX_PARSE_BYTES]
    data = data.lstrip(b"\r\n")
    if not _HEADER_START.match(data):
        return None, "The data does not start with a mail header section (binary or not mail)."
    if data[:4096].count(b"\0") > 8:
        return None, "The data is binary, not a mail message."
    return Part(data), problem


# --- MIME helpers ---------------------------------------------------------------------------


def _header(msg: Part, name: str) -> str:
    return decode_header_value(msg.get(name))


def _decode(payload: bytes, charset: str | None) -> str:
    return decode_bytes(payload, charset)


def _part_text(part: Part) -> str:
    text = part.text()
    if part.content_type == "text/html":
        text = text_rules.html_to_text(text)
    return text


def _walk(msg: Part) -> Iterator[Part]:
    """Leaves and ``message/*`` parts, not descending into attached messages."""
    if msg.is_multipart():
        for part in msg.children:
            if part.maintype == "message":
                yield part
            else:
                yield from _walk(part)
        return
    yield msg


def _addresses(value: str) -> list[str]:
    if "<" in value:  # Name <addr>: the address is in the angle brackets
        value = " ".join(re.findall(r"<([^<>]*)>", value)) or value
    return [m.group(1) for m in text_rules.ADDRESS_RE.finditer(value)]


def _first_address(msg: Part, *names: str) -> str | None:
    for name in names:
        for addr in _addresses(_header(msg, name)):
            return addr
    return None


def _domain(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.rpartition("@")[2].strip(" >.").lower() or None


def _date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    try:
        return when.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return None


def _arrival(msg: Part) -> dt.datetime | None:
    when = _date(_header(msg, "Date"))
    if when is None:
        received = _header(msg, "Received")
        if ";" in received:
            when = _date(received.rpartition(";")[2])
    return when


def _condense(text: str) -> str | None:
    text = " ".join(text.split())
    return text[:_MAX_DIAGNOSTIC] or None


# --- the parse ------------------------------------------------------------------------------


def _parse(msg: Part, source: str | None, *, depth: int) -> list[BounceRecord]:
    bounce_to = _first_address(
        msg, "X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To", "To"
    )
    ctx = _Context(
        headers={
            "subject": _header(msg, "Subject"),
            "from": _header(msg, "From"),
            "mailer": _header(msg, "X-Mailer"),
        },
        arrived_at=_arrival(msg),
        bounce_to=bounce_to,
        source=source,
        own_addresses=set(),
    )
    status_parts: list[Part] = []
    feedback_parts: list[Part] = []
    returned: list[Part] = []
    texts: list[Part] = []
    for part in _walk(msg):
        ctype = part.content_type
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            status_parts.append(part)
        elif ctype == "message/feedback-report":
            feedback_parts.append(part)
        elif ctype in ("message/rfc822", "message/global", "text/rfc822-headers",
                       "message/rfc822-headers", "message/global-headers"):
            returned.append(part)
        elif part.maintype == "text":
            texts.append(part)

    report_type = msg.param("report-type") or ""
    if not feedback_parts and report_type.lower() == "feedback-report":
        feedback_parts = [p for p in texts if "feedback-type:" in _part_text(p).lower()][:1]
    if feedback_parts:
        records = _arf_records(feedback_parts[0], returned, ctx)
        if records:
            return records

    if texts:
        body = _part_text(texts[0])
    elif msg.maintype == "multipart":  # a broken multipart (no boundary): read it as text
        body = _decode(msg.payload(), msg.param("charset"))
    else:
        body = ""
    notice, tail = text_rules.cut_notice(body)

    returned_headers = _returned_headers(returned, tail)
    original_id = _message_id(returned_headers)

    if status_parts:
        records = _dsn_records(status_parts, notice, original_id, ctx)
        if records:
            return records

    if depth < _MAX_DEPTH:
        for part in returned:
            inner = part.attached
            if inner is not None and inner.content_type == "multipart/report":
                records = _parse(inner, source, depth=depth + 1)
                if records and records[0].kind != "unparsed":
                    # the forwarded report arrived here: where and when it arrived is ours
                    return [
                        dataclasses.replace(
                            r,
                            bounce_to=ctx.bounce_to or r.bounce_to,
                            arrived_at=ctx.arrived_at or r.arrived_at,
                        )
                        for r in records
                    ]

    subject, sender = ctx.headers["subject"], ctx.headers["from"]
    strong = text_rules.looks_like_bounce(subject, sender, "")
    if not strong and _is_auto_reply(msg, subject):
        return [_auto_reply_record(msg, ctx)]
    if strong or text_rules.looks_like_bounce("", "", notice):
        ctx.own_addresses = _own_addresses(msg)
        return _text_records(notice, subject, returned_headers, original_id, ctx)
    return [
        _unparsed(
            "not_a_bounce",
            _condense(f"Subject: {subject}") if subject else "No subject; no bounce text found.",
            source,
            ctx,
        )
    ]


def _returned_headers(returned: list[Part], tail: str) -> str:
    """The header section of the returned original message, as text ("" when absent)."""
    for part in returned:
        inner = part.attached
        if inner is not None:
            return inner.header_text()
        return _part_text(part).split("\n\n", 1)[0]
    # the returned headers come first; its body (maybe megabytes) is never needed
    lines = [line[1:] if line.startswith(">") else line for line in tail[:_MAX_TAIL].split("\n")]
    return "\n".join(lines)


_MESSAGE_ID = re.compile(r"^[ \t]*Message-ID[ \t]*:[ \t]*(<[^>\s]+>)", re.MULTILINE | re.IGNORECASE)
_HEADER_FIELD = r"^[ \t]*{}[ \t]*:[ \t]*(.+)$"


def _message_id(headers: str) -> str | None:
    match = _MESSAGE_ID.search(headers)
    return match.group(1) if match else None


def _header_in(headers: str, name: str) -> str | None:
    match = re.search(_HEADER_FIELD.format(re.escape(name)), headers, re.MULTILINE | re.IGNORECASE)
    return match.group(1).strip() if match else None


# --- RFC 3464 delivery status notifications -------------------------------------------------

_FIELD_LINE = re.compile(r"^([A-Za-z0-9-]+)[ \t]*:[ \t]*(.*)$")


def _field_blocks(part: Part) -> list[dict[str, str]]:
    """The field groups of a delivery-status / feedback-report part (lower-case names)."""
    blocks: list[dict[str, str]] = []
    text = part.text()
    # the pieces of each value are joined once a block ends: appending to a growing string
    # for each continuation line costs quadratic time on a field folded over many lines
    current: dict[str, list[str]] = {}
    last = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append({name: " ".join(pieces) for name, pieces in current.items()})
                current, last = {}, ""
            continue
        if line[0] in " \t" and last:
            current[last].append(line.strip())
            continue
        match = _FIELD_LINE.match(line)
        if match:
            last = match.group(1).lower()
            current.setdefault(last, [match.group(2).strip()])
    if current:
        blocks.append({name: " ".join(pieces) for name, pieces in current.items()})
    return blocks


def _typed_address(value: str | None) -> str | None:
    """``rfc822; ann@example.com`` -> ``ann@example.com`` (None for x400 and other types)."""
    if not value:
        return None
    kind, sep, rest = value.partition(";")
    if not sep:
        rest, kind = kind, "rfc822"
    if kind.strip().lower() not in ("rfc822", "utf-8", ""):
        return None
    found = text_rules.ADDRESS_RE.search(rest.strip())
    return found.group(1) if found else None


def _mta_name(value: str | None) -> str | None:
    if not value:
        return None
    name = value.partition(";")[2] if ";" in value else value
    name = name.strip().split()[0] if name.strip() else ""
    return name.strip("[]").rstrip(".") or None


_ENHANCED_ONLY = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")


def _dsn_records(
    parts: list[Part],
    notice: str,
    original_id: str | None,
    ctx: _Context,
) -> list[BounceRecord]:
    records: list[BounceRecord] = []
    seen: set[tuple[str, str]] = set()
    about = _LinesAbout(notice)
    for part in parts:
        blocks = _field_blocks(part)
        per_message: dict[str, str] = {}
        recipients = []
        for block in blocks:
            if "final-recipient" in block or "original-recipient" in block:
                recipients.append(block)
            else:
                per_message.update(block)
        reporting = _mta_name(per_message.get("reporting-mta"))
        for block in recipients:
            address = (
                _typed_address(block.get("original-recipient"))
                or _typed_address(block.get("final-recipient"))
                or _typed_address(block.get("x-actual-recipient"))
            )
            record = _dsn_record(block, address, reporting, about, original_id, ctx)
            key = ((address or "").lower(), record.kind)
            if key in seen:
                continue
            seen.add(key)
            records.append(record)
    return records


def _dsn_record(
    block: dict[str, str],
    address: str | None,
    reporting: str | None,
    about: _LinesAbout,
    original_id: str | None,
    ctx: _Context,
) -> BounceRecord:
    status_field = block.get("status", "").strip()
    status_match = _ENHANCED_ONLY.match(status_field)
    status = status_match.group(1) if status_match else None
    diagnostic = block.get("diagnostic-code", "")
    if ";" in diagnostic[:20]:
        diagnostic = diagnostic.partition(";")[2].strip()
    extra = " ".join(
        v for k, v in block.items() if k in ("x400-supplementary-info", "x-supplementary-info")
    )
    status_comment = status_field[status_match.end():] if status_match else status_field
    detail_text = " ".join(x for x in (diagnostic, status_comment.strip(" ()"), extra) if x)
    found_status, reply_code = text_rules.extract_codes(detail_text)
    if status is None and status_field[:3].isdigit():
        reply_code = reply_code or int(status_field[:3])
    if found_status and (status is None or status.endswith(".0.0")) and (
        status is None or found_status[0] == status[0]
    ):
        status = found_status

    action = block.get("action", "").strip().lower().split(" ")[0].split("(")[0]
    kind: BounceKind
    if action in ("failed", "failure"):
        kind = "bounce"
    elif action == "delayed":
        kind = "delay"
    elif action in ("delivered", "relayed", "expanded"):
        kind = "delivered"
    elif status and status[0] == "4":
        kind = "delay"
    elif status and status[0] == "2":
        kind = "delivered"
    else:
        kind = "bounce"

    if kind == "delivered":
        reason, hard = "delivered", False
    else:
        text_reason = reason_from_text(detail_text)
        if text_reason is None and address:
            text_reason = reason_from_text(about(address))
        reason, hard = classify(
            status, reply_code, "", permanent=kind == "bounce", text_reason=text_reason
        )
    return BounceRecord(
        recipient=address,
        kind=kind,
        reason=reason,
        hard=hard,
        status=status,
        reply_code=reply_code,
        diagnostic=_condense(detail_text) or _condense(about(address or "")),
        original_message_id=original_id,
        reporting_mta=reporting,
        remote_mta=_mta_name(block.get("remote-mta")),
        arrived_at=ctx.arrived_at,
        bounce_to=ctx.bounce_to,
        source=ctx.source,
        format="dsn",
    )


class _LinesAbout:
    """The first line of a notice that names an address, and the two after it, as one line.

    A report can list thousands of recipients: the notice is lower-cased once (not once per
    recipient and line), answers are kept, and only its first ``_MAX_ABOUT_CHARS`` are searched.
    """

    def __init__(self, notice: str) -> None:
        self._notice = notice
        head = notice[:_MAX_ABOUT_CHARS]
        lowered = head.lower()
        # lower() lengthens a few letters ("İ"); then offsets differ and lines are searched
        self._lowered = lowered if len(lowered) == len(head) else None
        self._answers: dict[str, str] = {}

    def __call__(self, address: str) -> str:
        if not address:
            return ""
        answer = self._answers.get(address)
        if answer is None:
            answer = self._answers[address] = self._find(address.lower())
        return answer

    def _find(self, lowered: str) -> str:
        notice = self._notice
        if self._lowered is None:
            lines = notice[:_MAX_ABOUT_CHARS].split("\n")
            for row, line in enumerate(lines):
                if lowered in line.lower():
                    return " ".join(notice.split("\n")[row : row + 3])
            return ""
        found = self._lowered.find(lowered)
        if found < 0 or "\n" in lowered:
            return ""
        start = end = notice.rfind("\n", 0, found) + 1
        for _ in range(3):
            end = notice.find("\n", end) + 1
            if end == 0:
                end = len(notice) + 1
                break
        return notice[start : end - 1].replace("\n", " ")


# --- RFC 5965 feedback reports (complaints) --------------------------------------------------


def _arf_records(
    part: Part, returned: list[Part], ctx: _Context
) -> list[BounceRecord]:
    fields: dict[str, str] = {}
    rcpt_to: list[str] = []
    for block in _field_blocks(part):
        fields.update(block)
    raw = part.text()
    for match in re.finditer(r"(?im)^original-rcpt-to[ \t]*:[ \t]*(.+)$", raw):
        address = _typed_address(match.group(1).strip())
        if address:
            rcpt_to.append(address)
    headers = _returned_headers(returned, "")
    if not rcpt_to:
        for name in ("X-HmXmrOriginalRecipient", "To"):
            value = _header_in(headers, name)
            if value:
                rcpt_to = _addresses(value)
                if rcpt_to:
                    break
    feedback_type = fields.get("feedback-type", "abuse").strip().lower() or "abuse"
    mail_from = _typed_address(fields.get("original-mail-from"))
    return_path = _header_in(headers, "Return-Path")
    envelope = mail_from or (_addresses(return_path)[0] if return_path and _addresses(return_path)
                             else None)
    diagnostic = "; ".join(
        f"{name}: {fields[key]}"
        for name, key in (("Feedback-Type", "feedback-type"), ("User-Agent", "user-agent"),
                          ("Source-IP", "source-ip"))
        if fields.get(key)
    )
    arrived = _date(fields.get("arrival-date", "")) or ctx.arrived_at
    reporting = _mta_name(fields.get("reporting-mta")) or fields.get("user-agent")
    base = BounceRecord(
        recipient=None,
        kind="complaint",
        reason="complaint",
        hard=feedback_type != "not-spam",
        diagnostic=diagnostic or None,
        original_message_id=_message_id(headers),
        reporting_mta=reporting,
        arrived_at=arrived if ctx.arrived_at is None else ctx.arrived_at,
        bounce_to=envelope or ctx.bounce_to,
        source=ctx.source,
        format="arf",
    )
    if not rcpt_to:
        return [base]
    unique = list(dict.fromkeys(rcpt_to))
    return [dataclasses.replace(base, recipient=address) for address in unique]


# --- RFC 3834 automatic replies ---------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|answer)|autoreply|out of (?:the )?office"
    r"|vacation|away from|abwesenheit|automatische antwort|r[ée]ponse automatique|absence"
    r"|autosvar|risposta automatica|respuesta autom[áa]tica|on leave)",
    re.IGNORECASE,
)


# "<" is not allowed inside an id: otherwise every "<" of a long run without ">" starts a rescan.
_MESSAGE_IDS = re.compile(r"<[^<>\s]+>")


def _is_auto_reply(msg: Part, subject: str) -> bool:
    auto_submitted = _header(msg, "Auto-Submitted").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return True
    if any(msg.has(name) for name in ("X-Autoreply", "X-Autorespond", "X-Vacation",
                                      "X-Autoresponder")):
        return True
    precedence = (_header(msg, "Precedence") + " " + _header(msg, "X-Precedence")).lower()
    if "auto_reply" in precedence or "auto-reply" in precedence:
        return True
    if _header(msg, "X-Auto-Response-Suppress") and _AUTO_SUBJECT.search(subject):
        return True
    return _AUTO_SUBJECT.search(subject) is not None


def _auto_reply_record(msg: Part, ctx: _Context) -> BounceRecord:
    replier = _first_address(msg, "From", "Sender", "Reply-To")
    in_reply_to = _header(msg, "In-Reply-To") or _header(msg, "References")
    ids = _MESSAGE_IDS.findall(in_reply_to)
    fmt = "rfc3834" if msg.has("Auto-Submitted") else "auto_reply"
    return BounceRecord(
        recipient=replier,
        kind="auto_reply",
        reason="auto_reply",
        diagnostic=_condense(ctx.headers["subject"]),
        original_message_id=ids[0] if ids else None,
        reporting_mta=_domain(replier),
        arrived_at=ctx.arrived_at,
        bounce_to=ctx.bounce_to,
        source=ctx.source,
        format=fmt,
    )


# --- non-standard bounce text -----------------------------------------------------------------

_REPORTING_IN_TEXT = re.compile(
    r"(?:program|mail delivery agent|mta program|deliver program) at (?:host )?([\w.-]+\.\w+)",
    re.IGNORECASE,
)
# "host mx.example.com" or "mx.example.com [192.0.2.1]". The second form is tried only at the
# start of a run of name characters, and the atomic group settles on the run's first possible
# start (an ASCII letter or digit at a word start) once: trying every word start inside a long
# run ("a.a.a.a...") would rescan the rest of the run from each of them, in quadratic time.
_REMOTE_IN_TEXT = re.compile(
    r"\bhost\s+([A-Za-z0-9][\w.-]*\.[A-Za-z]{2,})"
    r"|(?<![\w.-])(?>[\w.-]*?(?<!\w)(?=[A-Za-z0-9]))([A-Za-z0-9][\w.-]*\.[A-Za-z]{2,})"
    r"\s*\[\d{1,3}(?:\.\d{1,3}){3}\]",
)


def _own_addresses(msg: Part) -> set[str]:
    """The bounce's own header addresses: never a failed recipient."""
    return {
        a.lower()
        for name in ("From", "Sender", "Reply-To", "To", "Cc", "Return-Path", "Errors-To")
        for value in msg.get_all(name)
        for a in _addresses(decode_header_value(value))
    }


def _text_records(
    notice: str,
    subject: str,
    returned_headers: str,
    original_id: str | None,
    ctx: _Context,
) -> list[BounceRecord]:
    sender = _first_address_text(ctx.headers["from"])
    envelope = text_rules.envelope_recipients(returned_headers)
    found = text_rules.find_recipients(
        notice,
        exclude=ctx.own_addresses,
        fallback_domain=_domain(sender),
        envelope_recipients=envelope,
    )
    whole_notice = notice.strip()
    if not found and subject:
        found = [
            text_rules.Found(f.address, whole_notice)
            for f in text_rules.find_recipients(subject, exclude=ctx.own_addresses)
        ]
    if not found and len(envelope) == 1:
        found = [text_rules.Found(envelope[0], whole_notice)]

    delay = text_rules.is_delay_text(notice + "\n" + subject)
    kind: BounceKind = "delay" if delay else "bounce"
    whole = notice + "\n" + subject
    fmt = text_rules.detect_format("\n".join((notice, ctx.headers["from"], ctx.headers["mailer"])))
    reporting_match = _REPORTING_IN_TEXT.search(notice)
    reporting = reporting_match.group(1) if reporting_match else _domain(sender)
    if not found:
        found = [text_rules.Found("", whole_notice)]
    # Many recipients can share one chunk (one line naming them all) or fall back to the whole
    # notice: what is read from a text is read once per text, not once per recipient.
    codes: dict[str, tuple[str | None, int | None]] = {}
    reasons: dict[str, str | None] = {}
    remotes: dict[str, str | None] = {}
    diagnostics: dict[str, str | None] = {}
    records = []
    for item in found:
        chunk = item.chunk
        substantive = len(chunk) > _LONG_CHUNK or (
            len(chunk.replace(item.address, "").strip(" \t\n<>:*-\"'")) >= 12
        )
        if chunk not in codes:
            codes[chunk] = text_rules.extract_codes(chunk)
        status, reply_code = codes[chunk]
        if status is None and reply_code is None and len(found) == 1:
            status, reply_code = text_rules.extract_codes(notice)
        if chunk not in reasons:
            reasons[chunk] = reason_from_text(chunk)
        text_reason = reasons[chunk]
        if text_reason is None:
            if whole not in reasons:
                reasons[whole] = reason_from_text(whole)
            text_reason = reasons[whole]
        reason, hard = classify(
            status, reply_code, "", permanent=not delay, text_reason=text_reason
        )
        described = chunk if substantive else notice
        if described not in remotes:
            remote = _REMOTE_IN_TEXT.search(described)
            remotes[described] = (remote.group(1) or remote.group(2)) if remote else None
            diagnostics[described] = _condense(described)
        records.append(
            BounceRecord(
                recipient=item.address or None,
                kind=kind,
                reason=reason,
                hard=hard,
                status=status,
                reply_code=reply_code,
                diagnostic=diagnostics[described],
                original_message_id=original_id,
                reporting_mta=reporting,
                remote_mta=remotes[described],
                arrived_at=ctx.arrived_at,
                bounce_to=ctx.bounce_to,
                source=ctx.source,
                format=fmt,
            )
        )
    return records


def _first_address_text(value: str) -> str | None:
    addresses = _addresses(value)
    if addresses:
        return addresses[0]
    match = text_rules.ADDRESS_RE.search(value)
    return match.group(1) if match else None


def _unparsed(
    reason: str, diagnostic: str | None, source: str | None, ctx: _Context | None = None
) -> BounceRecord:
    return BounceRecord(
        recipient=None,
        kind="unparsed",
        reason=reason,
        diagnostic=diagnostic,
        arrived_at=ctx.arrived_at if ctx else None,
        bounce_to=ctx.bounce_to if ctx else None,
        source=source,
    )
