"""SMTP connections, and the one place that turns SMTP replies and errors into outcomes.

Everything smtpkit learns from a mail server passes through :func:`translate`, which turns an
aiosmtplib reply or exception (or a socket / TLS error) into an :class:`SMTPReply`: the code,
the enhanced status (RFC 3463), the server's text, a *kind* and a short stable *reason*:

``kind``
    ``ok`` (accepted), ``transient`` (4xx or a network problem before the message data: try
    again later), ``permanent`` (5xx: do not retry) or ``unknown`` (the connection broke after
    the final "." and before the reply: the server may have accepted the message, RFC 1047).
``reason``
    ``accepted``, ``greylisted``, ``throttled``, ``user_unknown``, ``mailbox_full``, ``policy``,
    ... (see :data:`REASONS`). The send engine, the report and ``verify`` rely on these names.

A 421 in the middle of a session means "closing this channel" (RFC 5321 3.8): often the
server's limit of messages per connection. It is ``connection_closed`` — reconnect and go on —
unless its text speaks of rates, volume or too many connections, which makes it ``throttled``
(slow down). A 421 greeting is ``service_unavailable``.

:class:`SMTPConnection` is one open session: connect, EHLO, STARTTLS (required when
``tls="starttls"``: a server that does not offer it is a downgrade and an error, never a
plaintext fallback), verified certificates, AUTH only over TLS, then any number of messages.
The handshake runs on aiosmtplib. The message transactions run on a small pipelining
protocol (RFC 2920) over the same socket: when the server offers PIPELINING, MAIL, RCPT and
DATA go out in one write, and with ``send(..., lookahead=...)`` the next message's MAIL, RCPT
and DATA ride along with this message's content, so a message costs one write and one wake-up
(a fraction of aiosmtplib's CPU time per message). It quotes dots, normalizes line endings and
refuses control characters in addresses, like aiosmtplib does.

The password is revealed only at the AUTH command; it never appears in an exception, a log
record, a repr or a reply.

Example:
    >>> from smtpkit.transport import translate
    >>> from aiosmtplib import SMTPResponse
    >>> reply = translate(SMTPResponse(550, "5.1.1 <x@example.com>: user unknown"), stage="rcpt")
    >>> reply.kind, reply.reason, reply.enhanced
    ('permanent', 'user_unknown', '5.1.1')
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as _dt
import functools
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Literal

import aiosmtplib
from aiosmtplib import SMTPResponse

from .config import SMTPConfig
from .errors import SmtpkitError

__all__ = [
    "CAMPAIGN_STOPPING_REASONS",
    "REASONS",
    "THROTTLE_REASONS",
    "ConnectionInfo",
    "Envelope",
    "ReplyKind",
    "SMTPConnection",
    "SMTPReply",
    "Stage",
    "TransportError",
    "translate",
]

ReplyKind = Literal["ok", "transient", "permanent", "unknown"]
Stage = Literal[
    "connect", "greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "message", "quit"
]

#: Every reason :func:`translate` gives, with what it means.
REASONS: Mapping[str, str] = MappingProxyType(
    {
        "accepted": "the server accepted it (2xx)",
        "greylisted": "temporarily refused by greylisting; accepted on a later try",
        "throttled": "the server asks to slow down (451 4.7.x, 452, 454, a 421 about rates or "
        "too many connections)",
        "user_unknown": "the mailbox does not exist (5.1.1)",
        "bad_address": "the address is refused as such (5.1.0, 5.1.6)",
        "invalid_address": "the address is not valid syntax or holds control characters",
        "domain_not_found": "the recipient's domain does not exist or has no mail server",
        "null_mx": "the recipient's domain says it accepts no mail (null MX, RFC 7505)",
        "dns_error": "the recipient domain's name servers did not answer (try again later)",
        "mailbox_full": "the mailbox is over quota (x.2.2)",
        "mailbox_disabled": "the mailbox is disabled or not accepting mail (x.2.1)",
        "mailbox_unavailable": "the mailbox is unavailable (550 without more detail)",
        "message_too_large": "the message is larger than the server accepts (552, x.3.4, x.2.3)",
        "too_many_recipients": "too many recipients for one message (x.5.3)",
        "relay_denied": "the server does not relay for this recipient",
        "spam": "the message was refused as spam",
        "policy": "refused by the server's policy (x.7.x, 554)",
        "content_rejected": "the message content was refused (x.6.x)",
        "sender_rejected": "the envelope sender was refused (MAIL FROM)",
        "smtputf8_required": "the address needs SMTPUTF8, which the server does not offer",
        "service_unavailable": "the server is temporarily unavailable (421)",
        "connection_closed": "the server closed this connection (421 without a rate limit, such "
        "as after its limit of messages per connection); reconnect and go on",
        "service_refused": "the server refuses the connection (554 greeting)",
        "ehlo_rejected": "the server refused EHLO and HELO",
        "tls_unavailable": "STARTTLS was required but the server did not offer it (downgrade)",
        "tls_refused": "the server refused the STARTTLS command",
        "tls_failed": "the TLS handshake failed (certificate not trusted, wrong TLS mode, ...)",
        "auth_failed": "the server rejected the username or password",
        "auth_unavailable": "the server offers no AUTH mechanism smtpkit can use",
        "auth_temporary": "authentication failed temporarily (454)",
        "connection_refused": "nothing is listening at that host and port",
        "host_not_found": "the server's host name does not resolve",
        "connection_failed": "the connection could not be made (network unreachable, ...)",
        "connection_lost": "the connection broke before the message data was sent",
        "connection_lost_after_data": "the connection broke after the final '.' (may be sent)",
        "timeout": "no answer in time before the message data was sent",
        "timeout_after_data": "no reply in time after the final '.' (may be sent)",
        "protocol_error": "the server's answer was not valid SMTP, or a command was refused",
        "temporary_failure": "another temporary failure (4xx)",
        "permanent_failure": "another permanent failure (5xx)",
        "error": "an unexpected local error",
    }
)

#: Reasons after which the engine slows the domain down instead of burning retries.
THROTTLE_REASONS: frozenset[str] = frozenset({"throttled"})
#: Reasons that concern the account or the connection, not the recipient: every message sent
#: through that server would meet them, so a campaign over a relay stops at once.
CAMPAIGN_STOPPING_REASONS: frozenset[str] = frozenset(
    {
        "sender_rejected",
        "service_refused",
        "tls_unavailable",
        "tls_refused",
        "tls_failed",
        "auth_failed",
        "auth_unavailable",
    }
)
_AFTER_DATA_STAGES = frozenset({"message"})
# What a 421 says when it asks the client to slow down rather than only closing the channel.
_RATE_TEXT = re.compile(
    r"\brate\b|rate[ -]?limit|ratelimit|throttl|slow(?:ing)? down|too many (?:\w+ )?connections"
    r"|concurrent|volume|too fast|too much mail"
)
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclasses.dataclass(frozen=True, slots=True)
class SMTPReply:
    """One translated SMTP result: what the server said and what it means for the message.

    ``code`` / ``enhanced`` are None when there was no reply (refused connection, timeout).
    ``message`` is the server's text without the enhanced code, or a description of the error.

    Example:
        >>> r = SMTPReply(451, "4.7.1", "Greylisted", "transient", "greylisted", "rcpt")
        >>> r.ok, r.retryable, r.throttled
        (False, True, False)
    """

    code: int | None
    enhanced: str | None
    message: str
    kind: ReplyKind
    reason: str
    stage: str

    @property
    def ok(self) -> bool:
        """True when the server accepted (2xx)."""
        return self.kind == "ok"

    @property
    def retryable(self) -> bool:
        """True when trying again later may succeed (a transient failure)."""
        return self.kind == "transient"

    @property
    def throttled(self) -> bool:
        """True when the server asks the sender to slow down."""
        return self.reason in THROTTLE_REASONS

    @property
    def stops_campaign(self) -> bool:
        """True when every message through this server would fail the same way."""
        if self.reason == "service_refused":
            return self.stage == "greeting"
        return self.reason in CAMPAIGN_STOPPING_REASONS

    def __str__(self) -> str:
        parts = [str(self.code) if self.code is not None else "", self.enhanced or "", self.message]
        return " ".join(p for p in parts if p)


def _split_enhanced(message: str) -> tuple[str | None, str]:
    text = message.strip()
    if not text.isascii():  # bytes that were not UTF-8 (escaped by aiosmtplib): show them as �
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    m = _ENHANCED.match(text)
    if m is None:
        return None, text
    rest = text[m.end() :].strip()
    if "\n" in rest:  # multi-line replies repeat the enhanced code on each line
        rest = "\n".join(_ENHANCED.sub("", line, count=1).strip() for line in rest.split("\n"))
    return m.group(0), rest


def _reason_for(code: int, enhanced: str | None, text: str, stage: str) -> str:
    """The reason of a 4xx/5xx reply (see REASONS)."""
    low = text.lower()
    transient = code < 500
    if stage == "greeting":
        return "service_unavailable" if transient else "service_refused"
    if stage == "ehlo":
        return "ehlo_rejected"
    if stage == "starttls":
        return "tls_refused"
    if stage == "auth":
        if transient:
            return "auth_temporary"
        return "auth_unavailable" if code in (502, 504) else "auth_failed"
    if transient and ("greylist" in low or "graylist" in low or "grey-list" in low):
        return "greylisted"
    if code == 421:
        # "Service not available, closing transmission channel" (RFC 5321 4.2.2, 3.8): mid
        # session that closes this connection, often after a number of messages on it, and a
        # new connection goes on. Only a 421 that speaks of rates, volume or too many
        # connections asks to slow down.
        return "throttled" if _RATE_TEXT.search(low) else "connection_closed"
    if any(w in low for w in ("rate limit", "too many messages", "throttl", "slow down",
                              "too many connections", "ratelimit", "rate-limit")):
        return "throttled" if transient else "policy"
    sub = enhanced[2:] if enhanced is not None else None
    if stage == "mail" and not transient:
        # a refused MAIL FROM concerns every message of the campaign, whatever the detail
        return "message_too_large" if code == 552 or sub in ("2.3", "3.4") else "sender_rejected"
    if sub is not None:
        if sub == "1.1":
            return "user_unknown"
        if sub in ("1.0", "1.6"):
            return "bad_address"
        if sub == "1.2":
            return "domain_not_found"
        if sub == "1.3":
            return "invalid_address"
        if sub in ("1.7", "1.8"):
            return "sender_rejected"
        if sub == "2.1":
            return "mailbox_disabled"
        if sub == "2.2":
            return "mailbox_full"
        if sub in ("2.3", "3.4"):
            return "message_too_large"
        if sub == "5.3":
            return "throttled" if transient else "too_many_recipients"
        if sub.startswith("6."):
            return "content_rejected"
        if sub.startswith("7."):
            if transient:
                return "throttled"
            if "spam" in low:
                return "spam"
            if "relay" in low:
                return "relay_denied"
            return "policy"
        if sub == "4.5":
            return "throttled"
    if code in (452, 454):
        return "throttled"
    if code in (550, 551, 553) and stage == "rcpt":
        if any(w in low for w in ("unknown", "no such", "does not exist", "not found")):
            return "user_unknown"
        if "relay" in low:
            return "relay_denied"
        return "mailbox_unavailable"
    if code == 552:
        return "mailbox_full" if stage == "rcpt" else "message_too_large"
    if code == 554:
        return "spam" if "spam" in low else "policy"
    if 500 <= code <= 504:
        return "protocol_error"
    return "temporary_failure" if transient else "permanent_failure"


# Replies already translated (a server says "250 2.0.0 Ok" to every message): SMTPReply is
# immutable, so one object serves them all. Bounded: cleared when full.
_TRANSLATED: dict[tuple[int, str, str], SMTPReply] = {}
_TRANSLATED_MAX = 1024


def _from_code(code: int, message: str, stage: str) -> SMTPReply:
    key = (code, message, stage)
    found = _TRANSLATED.get(key)
    if found is None:
        found = _translate_code(code, message, stage)
        if len(_TRANSLATED) >= _TRANSLATED_MAX:
            _TRANSLATED.clear()
        _TRANSLATED[key] = found
    return found


def _translate_code(code: int, message: str, stage: str) -> SMTPReply:
    enhanced, text = _split_enhanced(message)
    if 200 <= code < 400:
        return SMTPReply(code, enhanced, text, "ok", "accepted", stage)
    if 400 <= code < 600:
        kind: ReplyKind = "transient" if code < 500 else "permanent"
        if stage in _AFTER_DATA_STAGES and code < 0:
            kind = "unknown"
        reason = _reason_for(code, enhanced, text, stage)
        return SMTPReply(code, enhanced, text, kind, reason, stage)
    # not a valid SMTP reply code (aiosmtplib uses -1 for malformed replies)
    after = stage in _AFTER_DATA_STAGES
    return SMTPReply(
        None,
        None,
        text or "The server's reply was not valid SMTP.",
        "unknown" if after else "transient",
        "protocol_error",
        stage,
    )


def _lost(stage: str, text: str, *, timeout: bool = False) -> SMTPReply:
    if stage in _AFTER_DATA_STAGES:
        reason = "timeout_after_data" if timeout else "connection_lost_after_data"
        return SMTPReply(None, None, text, "unknown", reason, stage)
    reason = "timeout" if timeout else "connection_lost"
    return SMTPReply(None, None, text, "transient", reason, stage)


def translate(error_or_reply: object, /, *, stage: str) -> SMTPReply:
    """Turn an SMTP reply, an aiosmtplib exception or a socket/TLS error into an SMTPReply.

    Accepts an ``aiosmtplib.SMTPResponse``, a ``(code, message)`` pair, an exception, or an
    SMTPReply (returned as is). ``stage`` is the step that produced it (``connect``,
    ``greeting``, ``ehlo``, ``starttls``, ``auth``, ``mail``, ``rcpt``, ``data`` — the DATA
    command — or ``message`` — the reply after the final "."). A network failure at the
    ``message`` stage is ``unknown``: the server may already have accepted the message.

    Example:
        >>> translate(ConnectionRefusedError(111, "Connection refused"), stage="connect").reason
        'connection_refused'
        >>> translate(TimeoutError(), stage="message").kind
        'unknown'
    """
    if isinstance(error_or_reply, SMTPReply):
        return error_or_reply
    if isinstance(error_or_reply, TransportError):
        return error_or_reply.reply
    if isinstance(error_or_reply, SMTPResponse) or (
        isinstance(error_or_reply, tuple)
        and len(error_or_reply) == 2
        and isinstance(error_or_reply[0], int)
    ):
        code, message = error_or_reply
        return _from_code(int(code), str(message), stage)
    if isinstance(error_or_reply, BaseException):
        return _from_exception(error_or_reply, stage)
    raise TypeError(
        f"translate() takes an SMTP reply or an exception, not {type(error_or_reply).__name__}."
    )


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _from_exception(exc: BaseException, stage: str) -> SMTPReply:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return _from_code(first.code, first.message, "rcpt")
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return _from_code(exc.code, exc.message, "greeting")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _from_code(exc.code, exc.message, stage)
    root = _root_cause(exc)
    if isinstance(root, ssl.SSLCertVerificationError):
        detail = root.verify_message or root.reason or str(root)
        return SMTPReply(None, None, f"certificate not trusted: {detail}", "permanent",
                         "tls_failed", stage)
    if isinstance(root, ssl.SSLError):
        return SMTPReply(None, None, f"TLS handshake failed: {root.reason or root}", "permanent",
                         "tls_failed", stage)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        reason = "smtputf8_required" if "smtputf8" in exc.message.lower() else "protocol_error"
        return SMTPReply(None, None, exc.message, "permanent", reason, stage)
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        return _lost(stage, getattr(exc, "message", "") or "no answer in time", timeout=True)
    if isinstance(root, ConnectionRefusedError):
        return SMTPReply(None, None, "connection refused", "transient", "connection_refused",
                         "connect")
    if isinstance(root, socket.gaierror):
        return SMTPReply(None, None, f"host name lookup failed: {root.strerror or root}",
                         "transient", "host_not_found", "connect")
    if (
        stage == "connect"
        and isinstance(exc, aiosmtplib.SMTPConnectError)
        and isinstance(root, OSError)
        and not isinstance(root, aiosmtplib.SMTPException)
    ):
        return SMTPReply(None, None, f"connection failed: {root.strerror or root}",
                         "transient", "connection_failed", "connect")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError
                  | ConnectionError | EOFError):
        return _lost(stage, getattr(exc, "message", "") or str(exc) or "connection lost")
    if isinstance(exc, OSError):
        return _lost(stage, f"network error: {exc.strerror or exc}")
    if isinstance(exc, aiosmtplib.SMTPException):
        low = exc.message.lower()
        if "starttls" in low:
            return SMTPReply(None, None, exc.message, "permanent", "tls_unavailable", stage)
        if "auth" in low:
            return SMTPReply(None, None, exc.message, "permanent", "auth_unavailable", stage)
        return SMTPReply(None, None, exc.message, "transient", "protocol_error", stage)
    kind: ReplyKind = "unknown" if stage in _AFTER_DATA_STAGES else "transient"
    return SMTPReply(None, None, f"{type(exc).__name__}: {exc}", kind, "error", stage)


@dataclasses.dataclass(frozen=True)
class ConnectionInfo:
    """What was learnt while opening a connection (for ``verify`` and outcome frames).

    ``esmtp`` maps lower-case EHLO keywords to their parameters (after STARTTLS, if used);
    ``logged_in`` is None when no login was attempted.
    """

    host: str
    port: int
    server: str
    connect_ms: float | None = None
    greeting: str | None = None
    esmtp: Mapping[str, str] = dataclasses.field(default_factory=dict)
    auth_mechanisms: tuple[str, ...] = ()
    tls: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    peer_subject: str | None = None
    peer_not_after: _dt.datetime | None = None
    logged_in: bool | None = None

    @property
    def pipelining(self) -> bool:
        """The server offers PIPELINING (RFC 2920)."""
        return "pipelining" in self.esmtp

    @property
    def smtputf8(self) -> bool:
        """The server offers SMTPUTF8 (RFC 6531)."""
        return "smtputf8" in self.esmtp

    @property
    def eightbitmime(self) -> bool:
        """The server offers 8BITMIME (RFC 6152)."""
        return "8bitmime" in self.esmtp

    @property
    def size_limit(self) -> int | None:
        """The SIZE limit in octets (RFC 1870), or None when unlimited or not announced."""
        value = self.esmtp.get("size", "").strip()
        return int(value) if value.isdigit() and int(value) > 0 else None


_HINTS: Mapping[str, str] = {
    "connection_refused": "Nothing is listening there; check the host and port, and that the "
    "server is running.",
    "host_not_found": "Check the spelling of the host name.",
    "connection_failed": "Check the host, the port and the network (firewall, VPN).",
    "timeout": "Check the host, the port and the firewall, or raise the timeout; a server on port "
    "465 expects tls='implicit'.",
    "connection_lost": "The server closed the connection; a server on port 465 expects "
    "tls='implicit', on 587 or 25 tls='starttls'.",
    "service_unavailable": "The server is busy or shutting down; try again later.",
    "service_refused": "The server refuses to talk to this client; check that your IP address "
    "or account may use it.",
    "ehlo_rejected": "Set local_hostname to a fully qualified name the server accepts.",
    "tls_unavailable": "The server did not offer STARTTLS, so the connection was closed instead "
    "of going on in clear text (an attacker may have stripped it). Check the host and port; use "
    "tls='implicit' for port 465.",
    "tls_refused": "The server refused to start TLS; try again later or ask its administrator.",
    "tls_failed": "If the server uses its own certificate authority pass ca_file=...; a server "
    "on port 465 expects tls='implicit', on 587 or 25 tls='starttls'.",
    "auth_failed": "Check the username and password; nothing was sent.",
    "auth_unavailable": "The server offers no AUTH mechanism smtpkit can use (PLAIN, LOGIN, "
    "CRAM-MD5); check the port (587 is usual for submission).",
    "auth_temporary": "Authentication failed temporarily; try again later.",
}


class TransportError(SmtpkitError, ConnectionError):
    """A connection could not be opened (or a login failed); ``reply`` says why.

    ``info`` holds what was learnt before the failure (greeting, EHLO extensions, TLS), or
    None when the connection was never made. The message never contains the password.
    """

    def __init__(self, reply: SMTPReply, info: ConnectionInfo | None, server: str) -> None:
        self.reply = reply
        self.info = info
        self.server = server
        said = f" ({reply})" if reply.code is not None else f" ({reply.message})"
        what = REASONS.get(reply.reason, reply.reason)
        hint = _HINTS.get(reply.reason, "")
        text = f"SMTP {reply.stage} step failed at {server}: {what}{said}."
        super().__init__(f"{text} {hint}".strip())

    def __reduce__(self) -> Any:
        return (type(self), (self.reply, self.info, self.server))


@functools.lru_cache(maxsize=16)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context (system store, or only ``ca_file``); shared, it is immutable
    once built."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _tls_details(transport: asyncio.BaseTransport | None) -> dict[str, Any]:
    if transport is None:
        return {}
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return {}
    cert = obj.getpeercert() or {}
    subject = ", ".join(
        f"{key}={value}" for rdn in cert.get("subject", ()) for key, value in rdn
    ) or None
    not_after = None
    if cert.get("notAfter"):
        seconds = ssl.cert_time_to_seconds(cert["notAfter"])
        not_after = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC)
    cipher = obj.cipher()
    return {
        "tls": True,
        "tls_version": obj.version(),
        "cipher": cipher[0] if cipher else None,
        "peer_subject": subject,
        "peer_not_after": not_after,
    }


_CONTROL = re.compile(r"[\x00-\x20\x7f<>]")
_BARE_EOL = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_MAX_LINE = 8192
# what follows the code in a reply line (the line without its LF): text, more lines, or nothing
_SEPARATORS = frozenset((b" ", b"-", b"\r", b""))
_MAX_REPLY = _MAX_LINE * 4
_QUIT_TIMEOUT = 2.0


class _Wire(asyncio.Protocol):
    """The message-transaction protocol: writes commands, parses every reply that arrives.

    Unlike aiosmtplib's protocol it keeps *all* complete replies in a queue, so pipelined
    replies that arrive in one packet are not lost; a reply nobody asked for (an unsolicited
    421 before the server hangs up) marks the connection unusable.
    """

    def __init__(self, transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.buffer = bytearray()
        self.replies: collections.deque[tuple[int, str]] = collections.deque()
        self.expected = 0  # replies owed by the server for commands written
        self.need = 0
        self.waiter: asyncio.Future[None] | None = None
        self.failure: BaseException | None = None
        self.broken = False
        self.paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        # one lazily moved timer per connection instead of one timer per reply
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        if len(buf) + len(data) > _MAX_REPLY:
            self._fail(aiosmtplib.SMTPResponseException(-1, "The server's reply is too long."))
            return
        if not buf and data.endswith(b"\n"):
            lines = data.split(b"\n")  # the usual case: whole replies only
            lines.pop()
            buf_left = b""
        else:
            buf += data
            end = buf.rfind(b"\n")
            if end < 0:
                return
            lines = bytes(buf[:end]).split(b"\n")
            buf_left = bytes(buf[end + 1 :])
        replies = self.replies
        parts: list[bytes] = []
        for line in lines:
            separator = line[3:4]
            if len(line) > _MAX_LINE or not line[:3].isdigit() or separator not in _SEPARATORS:
                self._fail(aiosmtplib.SMTPResponseException(
                    -1, "Malformed SMTP reply: " + line[:80].decode("utf-8", "replace")
                ))
                return
            if separator == b"-":
                parts.append(line)
                continue
            if parts:  # the last line of a multi-line reply
                parts.append(line)
                text = "\n".join(
                    x[4:].strip(b" \t\r\n").decode("utf-8", "replace") for x in parts
                )
                parts = []
            else:
                text = line[4:].strip(b" \t\r\n").decode("utf-8", "replace")
            if self.expected <= 0:
                # nobody asked: typically "421 closing" before a hang-up
                self.broken = True
            else:
                self.expected -= 1
            replies.append((int(line[:3]), text))
        # the rest: the start of a reply still to come (with the lines of a multi-line one)
        buf[:] = b"\n".join(parts) + b"\n" + buf_left if parts else buf_left
        waiter = self.waiter
        if waiter is not None and len(replies) >= self.need and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("The server closed the connection."))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_timer()
        failure = aiosmtplib.SMTPServerDisconnected("Connection lost")
        if exc is not None:
            failure.__cause__ = exc
        self._fail(failure)
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # -- use ---------------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        self.broken = True
        if self.failure is None:
            self.failure = exc
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
            waiter.exception()  # retrieved here; the reader re-raises it

    def write(self, data: bytes, replies: int) -> None:
        if self.failure is not None:
            raise self.failure
        self.expected += replies
        self.transport.write(data)  # type: ignore[attr-defined]

    async def drain(self) -> None:
        if self.paused and self.failure is None:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    async def read(self, count: int, timeout: float) -> list[tuple[int, str]]:  # noqa: ASYNC109
        """Wait until ``count`` replies are queued and return them."""
        replies = self.replies
        if count == 1 and replies:
            return [replies.popleft()]
        if len(replies) < count:
            if self.failure is not None:
                raise self.failure
            waiter = self.loop.create_future()
            self.waiter, self.need = waiter, count
            self.deadline = self.loop.time() + timeout
            if self.timer is None:
                self.timer = self.loop.call_at(self.deadline, self._check_deadline)
            try:
                await waiter
            finally:
                self.waiter = None
        return [replies.popleft() for _ in range(count)]

    def _check_deadline(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.loop.time() < self.deadline:  # the deadline moved on since: check again then
            self.timer = self.loop.call_at(self.deadline, self._check_deadline)
            return
        self.broken = True
        waiter.set_exception(aiosmtplib.SMTPReadTimeoutError("No reply in time."))
        waiter.exception()

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _address_ok(address: str) -> bool:
    return bool(address) and "@" in address and _CONTROL.search(address) is None


def _prepare(data: bytes, canonical: bool = False) -> bytes:
    """CRLF line endings, dot-quoting and the final "." (RFC 5321 4.5.2).

    ``canonical``: the caller vouches that ``data`` has CRLF line endings only (as
    ``smtpkit.compose`` renders messages), so the search for bare CR or LF is skipped. Dot
    quoting looks at every LF either way, so a bare LF before a "." could never end the data
    early.
    """
    if not canonical:
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:  # a bare CR or LF
            data = _BARE_EOL.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data[:1] == b"." or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data + b".\r\n"


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """A message to come, whose commands may be pipelined ahead (``send(lookahead=...)``)."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    smtputf8: bool = False
    canonical: bool = False  # see SMTPConnection.send


@dataclasses.dataclass(slots=True)
class _Prepared:
    sender: str
    recipients: list[str]
    data: bytes
    valid: list[str]
    results: dict[str, SMTPReply]
    commands: list[bytes] | None
    payload: bytes


class SMTPConnection:
    """One open SMTP session that sends any number of messages, one transaction at a time.

    Open it with ``await SMTPConnection.open(config)``; it is an async context manager that
    says QUIT on exit.

    Example:
        async with await SMTPConnection.open(SMTPConfig("127.0.0.1", 2525, tls="none")) as conn:
            replies = await conn.send("me@example.com", ["you@example.org"], message_bytes)
            replies["you@example.org"].ok
    """

    def __init__(self, config: SMTPConfig, smtp: aiosmtplib.SMTP, info: ConnectionInfo) -> None:
        self.config = config
        self.info = info
        self.server = info.server
        self.messages = 0
        self._smtp: aiosmtplib.SMTP | None = smtp
        self._wire: _Wire | None = None
        self._needs_rset = False
        self._busy = False
        self._closed = False
        self._pending: _Prepared | None = None  # a message whose commands went out ahead
        # what EHLO said, looked up once (the extensions do not change after TLS and login)
        self._size_limit = info.size_limit
        self._size_param = self._size_limit is not None or "size" in info.esmtp
        self._smtputf8 = info.smtputf8
        self._eightbitmime = info.eightbitmime
        self._pipelining = info.pipelining

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self.usable else "broken")
        return f"<SMTPConnection {self.server} {state}, {self.messages} messages>"

    @classmethod
    async def open(
        cls, config: SMTPConfig, /, *, login: bool = True, server_name: str | None = None
    ) -> SMTPConnection:
        """Connect, EHLO, STARTTLS when configured, and log in when the config has credentials.

        ``server_name`` is the name the server's certificate must carry when it differs from
        ``config.host`` (STARTTLS to an MX host's address, checked against the MX host name).

        Raises:
            TransportError: with ``.reply`` (reason such as ``connection_refused``,
                ``tls_unavailable``, ``auth_failed``) and ``.info`` (what was learnt so far).
        """
        server = config.server
        info = ConnectionInfo(host=config.host, port=int(config.port or 0), server=server)
        context = _tls_context(config.ca_file) if config.tls != "none" else None
        hostname = server_name or config.host
        smtp = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            local_hostname=config.local_hostname or await _local_hostname(),
            timeout=config.timeout,
            use_tls=config.tls == "implicit",
            start_tls=False,
            tls_context=context,
        )
        stage = "connect"
        started = time.perf_counter()
        try:
            greeting = await smtp.connect()
            info = dataclasses.replace(
                info,
                connect_ms=(time.perf_counter() - started) * 1000.0,
                greeting=greeting.message,
                **_tls_details(smtp.transport),
            )
            stage = "ehlo"
            await _ehlo(smtp)
            info = dataclasses.replace(
                info, esmtp=dict(smtp.esmtp_extensions),
                auth_mechanisms=tuple(m.upper() for m in smtp.server_auth_methods),
            )
            if config.tls == "starttls":
                stage = "starttls"
                if not smtp.supports_extension("starttls"):
                    raise aiosmtplib.SMTPException("STARTTLS not offered by the server.")
                await smtp.starttls(server_hostname=hostname, tls_context=context)
                info = dataclasses.replace(info, **_tls_details(smtp.transport))
                stage = "ehlo"
                await _ehlo(smtp)
                info = dataclasses.replace(
                    info, esmtp=dict(smtp.esmtp_extensions),
                    auth_mechanisms=tuple(m.upper() for m in smtp.server_auth_methods),
                )
        except asyncio.CancelledError:
            smtp.close()
            raise
        except Exception as exc:
            smtp.close()
            if stage == "connect" and _during_greeting(exc):
                stage = "greeting"  # the TCP (and TLS) connection was made
            reply = translate(exc, stage=stage)
            raise TransportError(reply, info if info.connect_ms is not None else None,
                                 server) from None
        conn = cls(config, smtp, info)
        if login and config.username is not None:
            reply = await conn.login()
            if not reply.ok:
                await conn.close()
                raise TransportError(reply, conn.info, server) from None
        return conn

    @property
    def usable(self) -> bool:
        """True while the session can carry another message."""
        if self._closed:
            return False
        if self._wire is not None:
            return not self._wire.broken and not self._wire.transport.is_closing()
        return self._smtp is not None and self._smtp.is_connected

    async def login(self) -> SMTPReply:
        """Authenticate with the config's username and password; return the server's verdict.

        Refused before anything is sent when the connection is not encrypted. Returns a
        non-ok reply (``auth_failed``, ``auth_unavailable``, ...) instead of raising.
        """
        config = self.config
        smtp = self._smtp
        if smtp is None or self._wire is not None or not smtp.is_connected:
            return SMTPReply(None, None, "The connection is not open for AUTH.", "transient",
                             "connection_lost", "auth")
        if config.username is None or config.password is None:
            return SMTPReply(None, None, "No username and password are configured.",
                             "permanent", "auth_unavailable", "auth")
        if smtp.get_transport_info("sslcontext") is None:
            return SMTPReply(None, None, "AUTH is never sent over an unencrypted connection.",
                             "permanent", "auth_unavailable", "auth")
        try:
            response = await smtp.login(config.username, config.password.reveal())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reply = translate(exc, stage="auth")
            if reply.reason == "protocol_error":
                reply = dataclasses.replace(reply, kind="permanent", reason="auth_unavailable")
            self.info = dataclasses.replace(self.info, logged_in=False)
            return reply
        self.info = dataclasses.replace(self.info, logged_in=True)
        return translate(response, stage="auth")

    async def send(
        self,
        sender: str,
        recipients: Sequence[str],
        data: bytes,
        /,
        *,
        smtputf8: bool = False,
        before_data: Callable[[], Awaitable[None] | None] | None = None,
        lookahead: Callable[[], Envelope | None] | None = None,
        canonical: bool = False,
    ) -> dict[str, SMTPReply]:
        """Send one message; return the reply for each recipient (partial refusal per recipient).

        A recipient refused at RCPT gets its RCPT reply; the accepted ones share the reply to
        the message data. ``before_data`` is called after the server said 354 and before the
        message content goes out (and what it returns awaited, if anything): the send engine
        records its intent there. If it raises, the
        connection is dropped before the final "." (so nothing is delivered) and the exception
        propagates. Never raises for what the server says or for a broken connection; those
        are replies (``kind="unknown"`` when the break came after the final ".").

        ``lookahead`` (PIPELINING servers): called just before the content goes out; the
        :class:`Envelope` it returns has its MAIL, RCPT and DATA written in the same packet
        as this message's content (RFC 2920 allows the content to open a command group).
        The next ``send`` on this connection must then be that message; any other message
        closes the connection first (the server already holds that transaction).

        ``canonical=True`` says ``data`` has CRLF line endings only (``smtpkit.compose``
        output): the search for bare CR or LF is skipped (dot quoting never is).
        """
        if self._busy:
            raise RuntimeError("SMTPConnection.send() is already running on this connection.")
        recipients = list(recipients)
        pending, self._pending = self._pending, None
        written = False
        if pending is not None:
            if pending.data is data and pending.sender == sender and \
                    pending.recipients == recipients:
                prepared, written = pending, True
            else:  # the server holds another message's transaction: it cannot be finished
                self.abort()
                prepared = self._prepare(sender, recipients, data, smtputf8, canonical)
        else:
            prepared = self._prepare(sender, recipients, data, smtputf8, canonical)
        if prepared.commands is None:
            return prepared.results
        if not self.usable:
            return self._all(prepared.valid, _lost("mail", "The connection is closed."),
                             prepared.results)
        self._busy = True
        try:
            wire = self._take_wire()
            return await self._transaction(wire, prepared, written, before_data, lookahead)
        finally:
            self._busy = False

    def _prepare(self, sender: str, recipients: list[str], data: bytes, smtputf8: bool,
                 canonical: bool = False) -> _Prepared:
        """Check a message locally and build its commands (None when nothing may go out)."""
        results: dict[str, SMTPReply] = {}
        valid: list[str] = []
        for rcpt in recipients:
            if _address_ok(rcpt):
                valid.append(rcpt)
            else:
                results[rcpt] = SMTPReply(None, None, f"Invalid recipient address {rcpt!r}.",
                                          "permanent", "invalid_address", "rcpt")
        prepared = _Prepared(sender, recipients, data, valid, results, None, b"")
        if not _address_ok(sender):
            self._all(recipients, SMTPReply(None, None, f"Invalid sender address {sender!r}.",
                                            "permanent", "invalid_address", "mail"), results)
            return prepared
        if not valid:
            return prepared
        needs_utf8 = smtputf8 or not sender.isascii() or not all(r.isascii() for r in valid)
        if needs_utf8 and not self._smtputf8:
            self._all(valid, SMTPReply(
                None, None, "The address needs SMTPUTF8, which this server does not offer.",
                "permanent", "smtputf8_required", "mail"), results)
            return prepared
        payload = _prepare(data, canonical)
        size = len(payload) - 3
        limit = self._size_limit
        if limit is not None and size > limit:
            self._all(valid, SMTPReply(
                None, None, f"The message has {size} octets; the server accepts {limit}.",
                "permanent", "message_too_large", "mail"), results)
            return prepared
        mail = b"MAIL FROM:<" + sender.encode() + b">"
        if self._size_param:
            mail += b" SIZE=%d" % size
        if needs_utf8:
            mail += b" SMTPUTF8"
        if self._eightbitmime and not data.isascii():
            mail += b" BODY=8BITMIME"
        prepared.commands = [mail + b"\r\n"] + [b"RCPT TO:<" + r.encode() + b">\r\n"
                                                 for r in valid]
        prepared.payload = payload
        return prepared

    def _all(
        self, recipients: Sequence[str], reply: SMTPReply, into: dict[str, SMTPReply] | None = None
    ) -> dict[str, SMTPReply]:
        results = into if into is not None else {}
        for rcpt in recipients:
            results[rcpt] = reply
        return results

    def _take_wire(self) -> _Wire:
        """Move the socket from aiosmtplib to the transaction protocol (once)."""
        if self._wire is None:
            smtp = self._smtp
            assert smtp is not None and smtp.transport is not None
            transport = smtp.transport
            loop = asyncio.get_running_loop()
            wire = _Wire(transport, loop)
            transport.set_protocol(wire)
            self._wire = wire
            self._smtp = None  # aiosmtplib no longer owns the socket
        return self._wire

    async def _transaction(
        self,
        wire: _Wire,
        prepared: _Prepared,
        written: bool,
        before_data: Callable[[], Awaitable[None] | None] | None,
        lookahead: Callable[[], Envelope | None] | None,
    ) -> dict[str, SMTPReply]:
        timeout = self.config.timeout
        valid, results = prepared.valid, prepared.results
        commands = prepared.commands
        assert commands is not None
        owed = len(valid) + 2  # MAIL, each RCPT, DATA
        replies: list[tuple[int, str]] = []
        rset = self._needs_rset and not written
        self._needs_rset = False
        try:
            if written:  # the commands went out with the previous message's content
                replies = await wire.read(owed, timeout)
            elif self._pipelining:
                group = b"".join(commands) + b"DATA\r\n"
                if rset:
                    group = b"RSET\r\n" + group
                wire.write(group, owed + rset)
                replies = await wire.read(owed + rset, timeout)
                if rset and replies.pop(0)[0] != 250:
                    wire.broken = True
            else:
                if rset:
                    wire.write(b"RSET\r\n", 1)
                    if (await wire.read(1, timeout))[0][0] != 250:
                        wire.broken = True
                wire.write(commands[0], 1)
                replies += await wire.read(1, timeout)
                if replies[0][0] == 250:
                    for command in commands[1:]:
                        wire.write(command, 1)
                        replies += await wire.read(1, timeout)
                    if any(code in (250, 251) for code, _ in replies[1:]):
                        wire.write(b"DATA\r\n", 1)
                        replies += await wire.read(1, timeout)
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception as exc:
            wire.broken = True
            got = replies or list(wire.replies)[rset:]
            wire.replies.clear()
            stages = ["mail"] + ["rcpt"] * len(valid) + ["data"]
            # a refusal that came before the hang-up (e.g. "421 too many messages") says more
            for position, (code, text) in enumerate(got):
                if code >= 400 or code < 200:
                    return self._all(valid, translate((code, text), stage=stages[position]),
                                     results)
            stage = stages[min(len(got), len(stages) - 1)]
            return self._all(valid, translate(exc, stage=stage), results)

        mail_code, mail_text = replies[0]
        data_reply = replies[len(valid) + 1] if len(replies) == len(valid) + 2 else None
        if 421 in [code for code, _ in replies]:
            wire.broken = True
        if mail_code != 250:
            self._refuse_data(wire, data_reply)
            return self._all(valid, translate((mail_code, mail_text), stage="mail"), results)
        accepted: list[str] = []
        for rcpt, (code, text) in zip(valid, replies[1 : len(valid) + 1], strict=False):
            if code in (250, 251):
                accepted.append(rcpt)
            else:
                results[rcpt] = translate((code, text), stage="rcpt")
        if not accepted or data_reply is None or data_reply[0] != 354:
            self._needs_rset = True
            self._refuse_data(wire, data_reply)
            if accepted:
                assert data_reply is not None
                self._all(accepted, translate(data_reply, stage="data"), results)
            return results
        if before_data is not None:
            try:
                pending = before_data()
                if pending is not None:
                    await pending
            except BaseException:
                self.abort()  # hang up before the final ".": nothing is delivered
                raise
        out, owed = prepared.payload, 1
        ahead: _Prepared | None = None
        if lookahead is not None and self._pipelining and not wire.broken:
            envelope = lookahead()
            if envelope is not None:
                ahead = self._prepare(envelope.sender, list(envelope.recipients),
                                      envelope.data, envelope.smtputf8, envelope.canonical)
                if ahead.commands is not None:
                    out = b"".join((out, *ahead.commands, b"DATA\r\n"))
                    owed += len(ahead.commands) + 1
                else:
                    ahead = None  # refused locally: its own send() will say so
        try:
            wire.write(out, owed)
            if ahead is not None:
                self._pending = ahead
            if wire.paused:
                await wire.drain()
            (code, text), = await wire.read(1, timeout)
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception as exc:
            wire.broken = True
            return self._all(accepted, translate(exc, stage="message"), results)
        self.messages += 1
        if code == 421:
            wire.broken = True
        reply = _from_code(code, text, "message")
        if len(accepted) == 1 and not results:
            return {accepted[0]: reply}
        return self._all(accepted, reply, results)

    def _refuse_data(self, wire: _Wire, data_reply: tuple[int, str] | None) -> None:
        """A pipelined DATA got 354 although there is nothing to send (RFC 2920 3.1): hang up
        rather than send an empty message."""
        if data_reply is not None and data_reply[0] == 354:
            self.abort()

    async def close(self) -> None:
        """Say QUIT (briefly) and close the connection; safe to call more than once."""
        if self._closed:
            return
        if self._pending is not None:  # the server waits for a message's content: no QUIT
            self.abort()
            return
        self._closed = True
        wire, smtp = self._wire, self._smtp
        self._wire = self._smtp = None
        if wire is not None:
            try:
                if not wire.broken and not wire.transport.is_closing():
                    wire.write(b"QUIT\r\n", 1)
                    await wire.read(1, _QUIT_TIMEOUT)
            except asyncio.CancelledError:
                wire.transport.close()
                raise
            except Exception:  # noqa: S110  (the server hung up first: nothing to do)
                pass
            wire.transport.close()
        elif smtp is not None:
            try:
                if smtp.is_connected:
                    await smtp.quit(timeout=_QUIT_TIMEOUT)
            except asyncio.CancelledError:
                smtp.close()
                raise
            except Exception:  # noqa: S110
                pass
            smtp.close()

    def abort(self) -> None:
        """Drop the connection at once, without QUIT."""
        self._closed = True
        self._pending = None
        if self._wire is not None:
            self._wire.broken = True
            self._wire.transport.abort()  # type: ignore[attr-defined]
        elif self._smtp is not None:
            transport = self._smtp.transport
            if transport is not None:
                transport.abort()  # type: ignore[attr-defined]
            self._smtp.close()

    async def __aenter__(self) -> SMTPConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _ehlo(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo()


def _during_greeting(exc: BaseException) -> bool:
    """True when aiosmtplib's connect failed after the socket was open (no or a bad greeting)."""
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return True
    root = _root_cause(exc)
    if isinstance(root, aiosmtplib.SMTPServerDisconnected):
        return True
    return isinstance(exc, aiosmtplib.SMTPTimeoutError) and "ready message" in exc.message


_fqdn: str | None = None


async def _local_hostname() -> str:
    """This host's name for EHLO, looked up once (off the event loop: it may query DNS)."""
    global _fqdn
    if _fqdn is None:
        name = await asyncio.to_thread(socket.getfqdn)
        _fqdn = name if name and re.fullmatch(r"[A-Za-z0-9.-]+", name) else "localhost"
    return _fqdn
