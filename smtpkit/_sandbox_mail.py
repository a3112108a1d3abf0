"""Late mail of the Sandbox: bounces (RFC 3464), complaints (RFC 5965), auto-replies (RFC 3834).

The server schedules one :class:`LateMail` per accepted recipient whose outcome is
``bounce_later``, ``complain_later`` or ``auto_reply``; :class:`LateMailbox` writes each into a
Maildir when it is due (or at once on ``flush``). Every report is addressed to the envelope
sender of the original message, exactly as given (VERP senders such as
``bounces+token@example.com`` included), in ``To:`` and ``Delivered-To:``, with a null
``Return-Path`` as RFC 3834 asks of automatic mail.

Example:
    >>> raw = build_auto_reply(
    ...     to="news@example.com", recipient="ann@example.org",
    ...     original=b"Message-ID: <1@example.com>\\r\\nSubject: Hi\\r\\n\\r\\nHello\\r\\n",
    ...     now=0.0)
    >>> b"In-Reply-To: <1@example.com>" in raw
    True
"""

from __future__ import annotations

import dataclasses
import email.policy
import email.utils
import heapq
import itertools
import mailbox
import os
import threading
import time
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Literal

__all__ = [
    "LateKind",
    "LateMail",
    "LateMailbox",
    "build_arf",
    "build_auto_reply",
    "build_dsn",
    "original_headers",
]

LateKind = Literal["dsn", "arf", "auto_reply"]
#: Written in every report as the user agent / reporting software.
SANDBOX_AGENT = "smtpkit-sandbox/0.1"
_WRITE_POLICY = email.policy.default  # LF line endings, as Maildir files conventionally have
_HEADER_PARSER = BytesHeaderParser(policy=email.policy.default)


def _header_block(original: bytes) -> bytes:
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = original.find(separator)
        if end >= 0:
            return original[: end + len(separator) // 2]
    return original


def original_headers(original: bytes, /) -> str:
    """The header section of a raw message as text with LF line endings (for rfc822-headers)."""
    block = _header_block(original).replace(b"\r\n", b"\n")
    return block.decode("utf-8", "replace").rstrip("\n") + "\n"


def _parsed_headers(original: bytes) -> Message:
    return _HEADER_PARSER.parsebytes(_header_block(original))


def _domain_of(address: str) -> str:
    from ._sandbox_world import normalize_domain

    return normalize_domain(address.rpartition("@")[2]) or "sandbox.smtpkit.test"


def _address_type(address: str) -> str:
    return "rfc822" if address.isascii() else "utf-8"


def _stamp(message: EmailMessage, *, to: str, sender: str, subject: str, now: float) -> None:
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(now, usegmt=True)
    message["Message-ID"] = email.utils.make_msgid(domain=_domain_of(sender))


def _finish(message: EmailMessage, *, to: str, recipient: str) -> bytes:
    # An internationalized address (SMTPUTF8) has no ASCII form (RFC 2047 encoded words are not
    # allowed in addresses): write UTF-8 header fields as RFC 6532 allows.
    utf8 = not (to + recipient).isascii()
    try:
        body = message.as_bytes(policy=_WRITE_POLICY.clone(utf8=utf8))
    except UnicodeEncodeError:
        body = message.as_bytes(policy=_WRITE_POLICY.clone(utf8=True))
    # Added by the final delivery, as a mail store does; Return-Path is null for automatic mail.
    return b"Return-Path: <>\nDelivered-To: " + to.encode("utf-8") + b"\n" + body


def _fields(pairs: list[tuple[str, str]]) -> Message:
    block = Message()
    for name, value in pairs:
        block[name] = value
    return block


def _text(message: EmailMessage | MIMEPart, text: str) -> None:
    # 7bit keeps the human-readable part legible to naive readers (no quoted-printable).
    message.set_content(text, cte="7bit" if text.isascii() else "8bit")


def _attach(message: EmailMessage, part: MIMEPart) -> None:
    message.attach(part)  # type: ignore[arg-type]  # typeshed: EmailMessage only


def _report(report_type: str, text: str) -> EmailMessage:
    message = EmailMessage()
    _text(message, text)
    message.make_mixed()
    message.set_type("multipart/report")
    message.set_param("report-type", report_type)
    return message


def build_dsn(
    *,
    to: str,
    recipient: str,
    original: bytes,
    arrival: float,
    failure: tuple[int, str, str],
    now: float,
) -> bytes:
    """An RFC 3464 delivery status notification: ``recipient`` failed after it was accepted.

    The per-recipient block carries Original-Recipient, Final-Recipient, Action, Status,
    Remote-MTA, Diagnostic-Code and Last-Attempt-Date; the third part is the original message's
    header section (``text/rfc822-headers``), so its Message-ID is there.
    """
    code, status, text = failure
    domain = _domain_of(recipient)
    reporting = f"mx1.{domain}"
    remote = f"mailstore.{domain}"
    diagnostic = f"{code} {status} <{recipient}>: {text}"
    message = _report(
        "delivery-status",
        f"This is the mail system at host {reporting}.\n\n"
        "Your message was accepted at first, but it could not be delivered to the\n"
        "recipient below. This is a permanent error; it will not be tried again.\n\n"
        f"<{recipient}>: host {remote} said: {diagnostic}\n",
    )
    _stamp(
        message,
        to=to,
        sender=f"Mail Delivery System <MAILER-DAEMON@{reporting}>",
        subject="Undelivered Mail Returned to Sender",
        now=now,
    )
    message["Auto-Submitted"] = "auto-replied"
    status_part = MIMEPart()
    status_part["Content-Type"] = "message/delivery-status"
    status_part.set_payload(
        [
            _fields(
                [
                    ("Reporting-MTA", f"dns; {reporting}"),
                    ("X-Sandbox-Agent", SANDBOX_AGENT),
                    ("Arrival-Date", email.utils.formatdate(arrival, usegmt=True)),
                ]
            ),
            _fields(
                [
                    ("Original-Recipient", f"{_address_type(recipient)}; {recipient}"),
                    ("Final-Recipient", f"{_address_type(recipient)}; {recipient}"),
                    ("Action", "failed"),
                    ("Status", status),
                    ("Remote-MTA", f"dns; {remote}"),
                    ("Diagnostic-Code", f"smtp; {diagnostic}"),
                    ("Last-Attempt-Date", email.utils.formatdate(now, usegmt=True)),
                ]
            ),
        ]
    )
    _attach(message, status_part)
    headers = MIMEPart()
    text_headers = original_headers(original)
    headers.set_content(
        text_headers,
        subtype="rfc822-headers",
        cte="7bit" if text_headers.isascii() else "8bit",
    )
    _attach(message, headers)
    return _finish(message, to=to, recipient=recipient)


def build_arf(
    *,
    to: str,
    recipient: str,
    original: bytes,
    arrival: float,
    source_ip: str,
    now: float,
) -> bytes:
    """An RFC 5965 abuse report: the recipient marked the message as spam.

    The machine-readable part has Feedback-Type ``abuse``, Version 1, User-Agent,
    Original-Mail-From, Original-Rcpt-To, Arrival-Date, Reporting-MTA, Source-IP and
    Reported-Domain; the third part is the whole original message (``message/rfc822``).
    """
    domain = _domain_of(recipient)
    reporter = f"fbl.{domain}"
    arrived = email.utils.formatdate(arrival, usegmt=True)
    message = _report(
        "feedback-report",
        f"This is an email abuse report for a message received from IP {source_ip}\n"
        f"on {arrived}. A recipient at {domain} marked it as spam.\n"
        "The message is attached.\n",
    )
    _stamp(
        message,
        to=to,
        sender=f"Feedback Loop <feedback@{reporter}>",
        subject=f"Abuse report for a message from {source_ip}",
        now=now,
    )
    message["Auto-Submitted"] = "auto-generated"
    feedback = MIMEPart()
    feedback["Content-Type"] = "message/feedback-report"
    feedback.set_payload(
        [
            _fields(
                [
                    ("Feedback-Type", "abuse"),
                    ("User-Agent", SANDBOX_AGENT),
                    ("Version", "1"),
                    ("Original-Mail-From", f"<{to}>"),
                    ("Original-Rcpt-To", f"<{recipient}>"),
                    ("Arrival-Date", arrived),
                    ("Reporting-MTA", f"dns; {reporter}"),
                    ("Source-IP", source_ip),
                    ("Reported-Domain", _domain_of(to)),
                ]
            )
        ]
    )
    _attach(message, feedback)
    attached = MIMEPart()
    attached.set_content(email.message_from_bytes(original, policy=email.policy.default))
    _attach(message, attached)
    return _finish(message, to=to, recipient=recipient)


def build_auto_reply(*, to: str, recipient: str, original: bytes, now: float) -> bytes:
    """An RFC 3834 out-of-office reply from ``recipient`` to ``to``.

    It carries ``Auto-Submitted: auto-replied``, ``In-Reply-To`` and ``References`` pointing at
    the original Message-ID, and the subject ``Auto: <original subject>``.
    """
    headers = _parsed_headers(original)
    subject = str(headers.get("Subject", "") or "").strip() or "Your message"
    message = EmailMessage()
    _stamp(message, to=to, sender=recipient, subject=f"Auto: {subject}", now=now)
    message["Auto-Submitted"] = "auto-replied"
    message_id = str(headers.get("Message-ID", "") or "").strip()
    if message_id:
        message["In-Reply-To"] = message_id
        references = str(headers.get("References", "") or "").split()
        message["References"] = " ".join([*references, message_id])
    _text(
        message,
        "Thank you for your message. I am out of the office this week with limited\n"
        "access to email and will read it when I am back.\n\n"
        "This is an automatic reply.\n",
    )
    return _finish(message, to=to, recipient=recipient)


@dataclasses.dataclass
class LateMail:
    """One scheduled late message and, once written, where it is."""

    kind: LateKind
    to: str
    recipient: str
    original_message_id: str | None
    due_at: float
    data: bytes = dataclasses.field(repr=False)
    written_at: float | None = None
    path: str | None = None


class LateMailbox:
    """Pending late messages and the Maildir they are written to; safe across threads."""

    def __init__(self, root: Path, /) -> None:
        self.root = root
        self._maildir = mailbox.Maildir(root, factory=None, create=True)
        self._cond = threading.Condition()
        self._pending: list[tuple[float, int, LateMail]] = []
        self._order = itertools.count()
        self.records: list[LateMail] = []
        self.written = 0

    def schedule(self, item: LateMail, /) -> None:
        """Queue ``item`` to be written at ``item.due_at``."""
        with self._cond:
            heapq.heappush(self._pending, (item.due_at, next(self._order), item))
            self.records.append(item)

    @property
    def pending(self) -> int:
        """How many late messages are waiting to be written."""
        with self._cond:
            return len(self._pending)

    def next_due(self) -> float | None:
        """When the next pending message is due (``time.time()`` seconds), or None."""
        with self._cond:
            return self._pending[0][0] if self._pending else None

    def write_due(self, now: float | None = None, /) -> int:
        """Write every message due by ``now`` (all when ``now`` is None); return how many."""
        count = 0
        with self._cond:
            while self._pending and (now is None or self._pending[0][0] <= now):
                _, _, item = heapq.heappop(self._pending)
                key = self._maildir.add(item.data)
                item.path = os.path.join(self.root, "new", key)
                item.written_at = time.time()
                count += 1
            if count:
                self.written += count
                self._cond.notify_all()
        return count

    def wait(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` messages have been written; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.written >= count, timeout=timeout)
