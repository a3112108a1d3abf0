"""The Sandbox's SMTP server: aiosmtpd with a World's decisions, strict input checks, records.

``SandboxSMTP`` is aiosmtpd's ``SMTP`` protocol with four additions: every reply is recorded as
an event; command lines ending in a bare LF or holding a bare CR are refused (aiosmtpd accepts
them); the greeting can be a 421; DATA can be cut off before the 354. ``SandboxHandler`` holds
the per-recipient decisions (the World's outcome, greylisting, throttling) and, at the end of
DATA, the message checks (bare LF / CR, ``<LF>.<LF>`` smuggling, duplicate or malformed header
fields), latency, delivery records and late mail.

Everything here runs on the sandbox's own event loop; ``Recorder`` is the only state read from
other threads, under its lock.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, AnyStr, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

from ._sandbox_mail import LateMail, LateMailbox, build_arf, build_auto_reply, build_dsn
from ._sandbox_world import World, normalize_address

__all__ = [
    "DeliveryRow",
    "EventRow",
    "Recorder",
    "SandboxHandler",
    "SandboxSMTP",
    "SandboxState",
    "ServerOptions",
    "abort",
]

log = logging.getLogger("smtpkit.sandbox")

# One row of box.events(): when, connection, command, argument, code, reply, event.
EventRow = tuple[float, int | None, str | None, str | None, int | None, str, str]
# One row of box.deliveries() (see Recorder.deliver for the order).
DeliveryRow = tuple[str, str, str | None, int, float, bool, int, str, int, bool, str | None]

# RFC 5322 section 3.6: fields that may appear at most once in a message.
_SINGLE_FIELDS = frozenset(
    {
        "from", "sender", "reply-to", "to", "cc", "bcc", "message-id", "in-reply-to",
        "references", "subject", "date",
    }
)  # fmt: skip
_FIELD_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
# A line holding only "." reached through any non-CRLF line ending: the smuggling pattern.
_SMUGGLED_DOT = re.compile(rb"(?:(?<!\r)\n|\r(?!\n)|\r\n)\.(?:\r(?!\n)|(?<!\r)\n)|(?<!\r)\n\.\r\n")
# In one CRLF-terminated DATA line: a "." at a line start followed by a line ending.
_DOT_LINE = re.compile(rb"(?:^|[\r\n])\.[\r\n]")
_LATE_KINDS = {"bounce_later": "dsn", "complain_later": "arf", "auto_reply": "auto_reply"}
_CLOSING_EVENTS = frozenset({"bare_lf", "bare_cr", "smuggling"})

# Replies aiosmtpd makes itself, and the event each one records.
_BUILTIN_EVENTS: tuple[tuple[str, str], ...] = (
    ("Command line too long", "line_too_long"),
    ("Line too long", "line_too_long"),
    ("Too much mail data", "too_big"),
    ("message size exceeds", "too_big"),
    ("Too many unrecognized commands", "unknown_command"),
    ("not recognized", "unknown_command"),
    ("bad syntax", "syntax_error"),
    ("Syntax:", "syntax_error"),
    ("strict ASCII mode", "needs_smtputf8"),
    ("SMTPUTF8 disabled", "needs_smtputf8"),
    ("Encryption required", "auth_needs_tls"),
    ("Must issue a STARTTLS", "tls_required"),
    ("Authentication required", "auth_required"),
    ("Authentication credentials invalid", "auth_failed"),
    ("Authentication successful", "auth_ok"),
    ("Auth aborted", "auth_failed"),
    ("Ready to start TLS", "starttls"),
    ("malformed address", "bad_address"),
    ("nested MAIL", "bad_sequence"),
    ("need MAIL", "bad_sequence"),
    ("need RCPT", "bad_sequence"),
    ("first", "bad_sequence"),
)


def _event_for(code: int | None, text: str) -> str:
    for needle, event in _BUILTIN_EVENTS:
        if needle in text:
            return event
    if code is None or code < 400:
        return "ok"
    return "tempfail" if code < 500 else "refused"


def _printable(text: str, limit: int = 300) -> str:
    """Text safe to echo in a reply or a frame: no control characters, bounded length."""
    cleaned = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


@dataclass(frozen=True)
class ServerOptions:
    """Server-wide settings of one sandbox run."""

    world: World
    hostname: str
    max_recipients: int
    pipelining: bool
    username: str | None
    password: str | None
    source_ip: str


@dataclass
class Plan:
    """An accepted recipient of the open transaction and what happens to it."""

    recipient: str
    key: str
    domain: str
    outcome: str
    attempt: int


class Recorder:
    """Deliveries, events and received messages; appended on the loop, read from any thread."""

    def __init__(self, *, keep_messages: bool) -> None:
        self.lock = threading.Lock()
        self.deliveries: list[DeliveryRow] = []
        self.events: list[EventRow] = []
        self.messages: list[bytes] = []
        self.keep_messages = keep_messages
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._connections = 0

    def next_connection(self) -> int:
        self._connections += 1
        return self._connections

    def event(
        self,
        connection: int | None,
        command: str | None,
        argument: str | None,
        reply: str,
        event: str | None,
    ) -> None:
        code = int(reply[:3]) if reply[:3].isdigit() else None
        kind = event or _event_for(code, reply)
        row: EventRow = (time.time(), connection, command, argument, code, reply, kind)
        with self.lock:
            self.events.append(row)

    def deliver(
        self,
        *,
        sender: str,
        plan: Plan,
        message_id: str | None,
        identity: str,
        content: bytes,
        tls: bool,
        connection: int,
        acknowledged: bool,
    ) -> None:
        with self.lock:
            self._counts[(plan.key, identity)] += 1
            row: DeliveryRow = (
                sender,
                plan.recipient,
                message_id,
                len(content),
                time.time(),
                tls,
                self._counts[(plan.key, identity)],
                plan.domain,
                connection,
                acknowledged,
                _LATE_KINDS.get(plan.outcome),
            )
            self.deliveries.append(row)
            self.messages.append(content if self.keep_messages else b"")


class SandboxState:
    """What outlives one connection: the world's counters, clocks and the records."""

    def __init__(self, options: ServerOptions, recorder: Recorder, late: LateMailbox) -> None:
        self.options = options
        self.recorder = recorder
        self.late = late
        self.late_changed: asyncio.Event | None = None
        self.attempts: collections.Counter[str] = collections.Counter()
        self.greylist: dict[tuple[str, str], float] = {}
        self.windows: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self.protocols: set[SandboxSMTP] = set()


class _StrictReader(asyncio.StreamReader):
    """Notes whether the last command line ended in a bare LF or held a bare CR, and whether
    a DATA line held a "." between non-CRLF line endings (aiosmtpd's dot-unstuffing would
    otherwise hide ``<CR><LF>.<LF>`` from the content check)."""

    line_problem: str | None = None
    smuggled_dot = False

    async def readuntil(self, separator: Any = b"\n") -> bytes:
        if separator == b"\n":
            self.line_problem = None
        line = await super().readuntil(separator)
        if separator == b"\n":
            if not line.endswith(b"\r\n"):
                self.line_problem = "bare_lf"
            elif b"\r" in line[:-2]:
                self.line_problem = "bare_cr"
        elif line != b".\r\n" and _DOT_LINE.search(line) is not None:
            self.smuggled_dot = True
        return line


class _QuietSession(Session):
    """aiosmtpd's Session without the deprecation warning it logs on every successful AUTH."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class SandboxSMTP(SMTP):
    """aiosmtpd's SMTP protocol that records every reply and refuses bare line endings."""

    def __init__(self, handler: SandboxHandler, /, **options: Any) -> None:
        super().__init__(handler, **options)
        # aiosmtpd keeps this dict on the class and grows it per EHLO; give each connection its own.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.state = handler.state
        self.connection_id = self.state.recorder.next_connection()
        self.delivered_per_domain: collections.Counter[str] = collections.Counter()
        self.plans: list[Plan] = []
        self._plans_for: Envelope | None = None
        self._command: str | None = None
        self._argument: str | None = None
        self._event: str | None = None
        self._close_after_reply = False
        self._smtp_methods = {
            name: self._guarded(name, method) for name, method in self._smtp_methods.items()
        }

    # --- hooks into aiosmtpd ----------------------------------------------------------------

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    def _cb_client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            reader.__class__ = _StrictReader
        except TypeError:  # a StreamReader that cannot take a subclass: lenient, as aiosmtpd is
            log.warning("sandbox: bare <LF> command lines cannot be detected on this Python")
        super()._cb_client_connected(reader, writer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.state.protocols.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.state.protocols.discard(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        self._command = "CONNECT"
        if self.state.options.world.refuses_greeting(self.connection_id):
            self._event = "greeting_refused"
            await self.push(f"421 4.3.2 {self.hostname} Service not available, try again later")
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def push(self, status: AnyStr) -> None:
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        if not (len(text) > 3 and text[3] == "-"):  # one event per reply, not per EHLO line
            self.state.recorder.event(
                self.connection_id, self._command, self._argument, text, self._event
            )
            self._event = None
        if self._command == "CONNECT":
            self._command = None
        await super().push(status)
        if self._close_after_reply and self.transport is not None:
            self._close_after_reply = False
            self.transport.close()

    def _guarded(
        self, name: str, method: Callable[[str], Awaitable[None]]
    ) -> Callable[[str], Awaitable[None]]:
        async def guarded(arg: str) -> None:
            self._command = name
            self._argument = _printable(arg.split()[0] if name == "AUTH" and arg else arg or "")
            try:
                problem = getattr(self._reader, "line_problem", None)
                if problem is not None:
                    await self.refuse_and_close(problem)
                    return
                await method(arg)
            finally:
                self._command = self._argument = None

        return guarded

    async def smtp_DATA(self, arg: str) -> None:
        if isinstance(self._reader, _StrictReader):
            self._reader.smuggled_dot = False
        plans = self.plans_for(self.envelope)
        if (
            not arg
            and self.envelope is not None
            and self.envelope.rcpt_tos
            and any(plan.outcome == "drop_before_dot" for plan in plans)
        ):
            self.state.recorder.event(self.connection_id, "DATA", None, "", "dropped_before_dot")
            assert self.transport is not None
            abort(self.transport)
            return
        await super().smtp_DATA(arg)

    # --- helpers for the handler ------------------------------------------------------------

    def plans_for(self, envelope: Envelope | None) -> list[Plan]:
        """The accepted recipients of ``envelope`` (a new envelope starts a new list)."""
        if envelope is not self._plans_for:
            self._plans_for = envelope
            self.plans = []
        return self.plans

    def smuggled_dot(self) -> bool:
        """True when the DATA just read held a "." line with a non-CRLF line ending."""
        return bool(getattr(self._reader, "smuggled_dot", False))

    def mark(self, event: str, *, close: bool = False) -> None:
        """Name the event of the next reply; close the connection after it when ``close``."""
        self._event = event
        self._close_after_reply = close

    async def refuse_and_close(self, problem: str) -> None:
        self.mark(problem, close=True)
        what = "<LF>" if problem == "bare_lf" else "<CR>"
        await self.push(
            f"521 5.5.2 Error: bare {what} received; end every line with <CR><LF> "
            "(RFC 5321 section 2.3.8)"
        )

    def record_silent(self, event: str, *, command: str | None = None) -> None:
        """Record an event that has no reply (a drop, a suppressed late message)."""
        self.state.recorder.event(self.connection_id, command, None, "", event)


class SandboxHandler:
    """aiosmtpd handler hooks: the world's decisions for each command."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.options = state.options

    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.options.username is not None
            and self.options.password is not None
            and hmac.compare_digest(auth_data.login, self.options.username.encode())
            and hmac.compare_digest(auth_data.password, self.options.password.encode())
        )
        if ok:
            return AuthResult(success=True, auth_data=self.options.username)
        return AuthResult(success=False, handled=False)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.options.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self,
        server: SandboxSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if _has_control(address):
            server.mark("bad_address")
            return "501 5.1.7 Bad sender address syntax: control characters are not allowed"
        if not address.isascii() and not envelope.smtp_utf8:
            server.mark("needs_smtputf8")
            return "553 5.6.7 A non-ASCII sender address needs MAIL FROM:<...> SMTPUTF8"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self,
        server: SandboxSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        world = self.options.world
        echo = _printable(address)
        if _has_control(address):
            server.mark("bad_address")
            return "501 5.1.3 Bad recipient address syntax: control characters are not allowed"
        if not address.isascii() and not envelope.smtp_utf8:
            server.mark("needs_smtputf8")
            return f"553 5.6.7 <{echo}>: a non-ASCII address needs MAIL FROM:<...> SMTPUTF8"
        if len(envelope.rcpt_tos) >= self.options.max_recipients:
            server.mark("too_many_recipients")
            return f"452 4.5.3 Too many recipients (at most {self.options.max_recipients})"
        key = normalize_address(address)
        domain = key.rpartition("@")[2]
        attempt = self.state.attempts[key]
        self.state.attempts[key] += 1
        outcome = world.outcome(key, attempt=attempt)
        if outcome == "domain_not_found":
            server.mark(outcome)
            return f"550 5.1.2 <{echo}>: Recipient address rejected: Domain {domain} not found"
        if outcome == "null_mx":
            server.mark(outcome)
            return (
                f"556 5.1.10 <{echo}>: Recipient address rejected: Domain {domain} does not "
                "accept mail (null MX)"
            )
        if outcome == "dns_failure":
            server.mark(outcome)
            return (
                f"451 4.4.3 <{echo}>: Recipient address rejected: Domain {domain} lookup "
                "failed, try again later"
            )
        policy = world.policy_for(domain)
        assert policy is not None
        now = time.time()
        limit = policy.max_per_connection
        if limit is not None and server.delivered_per_domain[domain] >= limit:
            server.mark("throttled_connection", close=True)
            return (
                f"421 4.7.0 Too many messages to {domain} on one connection; closing, try "
                "again later"
            )
        limit = policy.max_per_window
        if limit is not None:
            window = self.state.windows[domain]
            while window and window[0] <= now - policy.window_seconds:
                window.popleft()
            if len(window) >= limit:
                server.mark("throttled_rate")
                return (
                    f"452 4.7.0 <{echo}>: Too many messages to {domain} right now; slow down "
                    "and try again later"
                )
        sender = normalize_address(envelope.mail_from or "")
        seconds = world.greylist_seconds(sender, key, outcome=outcome)
        if seconds > 0:
            first = self.state.greylist.setdefault((sender, key), now)
            if now - first < seconds:
                server.mark("greylisted")
                return (
                    f"451 4.7.1 <{echo}>: Recipient address rejected: Greylisted, please try "
                    f"again in {seconds:g} seconds"
                )
        refusal = _REFUSALS.get(outcome)
        if refusal is not None:
            server.mark(outcome)
            return refusal.format(rcpt=echo, domain=domain)
        server.plans_for(envelope).append(Plan(address, key, domain, outcome, attempt))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        server.mark("accepted")
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SandboxSMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        problem = _content_problem(content, smuggled=server.smuggled_dot())
        if problem is not None:
            event, reply = problem
            server.mark(event, close=event in _CLOSING_EVENTS)
            return reply
        fields, _ = _scan_header(content)
        message_id = _first(fields, "message-id")
        identity = message_id or _digest(content)
        plans = list(server.plans_for(envelope))
        sender = envelope.mail_from or ""
        tls = session.ssl is not None
        if any(plan.outcome == "drop_after_dot" for plan in plans):
            self._deliver(server, sender, plans, fields, message_id, identity, content, tls, False)
            server.record_silent("dropped_after_dot", command="DATA")
            assert server.transport is not None
            abort(server.transport)
            await asyncio.sleep(30)  # the lost connection cancels this coroutine at once
            return "421 4.4.2 Connection dropped"
        delay = max(
            (self.options.world.latency(p.key, attempt=p.attempt) for p in plans), default=0.0
        )
        if delay > 0:
            await asyncio.sleep(delay)
        self._deliver(server, sender, plans, fields, message_id, identity, content, tls, True)
        server.mark("delivered")
        return f"250 2.0.0 Ok: queued as S{server.connection_id}X{len(plans)}"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            self.state.recorder.event(None, "STARTTLS", None, "", "tls_failed")
            return "454 4.7.0 TLS handshake failed"
        log.exception("sandbox SMTP session error")
        self.state.recorder.event(None, None, None, "", "internal_error")
        return f"451 4.3.0 Internal sandbox error ({type(error).__name__}); try again later"

    # --- delivery ---------------------------------------------------------------------------

    def _deliver(
        self,
        server: SandboxSMTP,
        sender: str,
        plans: list[Plan],
        fields: dict[str, list[str]],
        message_id: str | None,
        identity: str,
        content: bytes,
        tls: bool,
        acknowledged: bool,
    ) -> None:
        now = time.time()
        for plan in plans:
            self.state.recorder.deliver(
                sender=sender,
                plan=plan,
                message_id=message_id,
                identity=identity,
                content=content,
                tls=tls,
                connection=server.connection_id,
                acknowledged=acknowledged,
            )
            server.delivered_per_domain[plan.domain] += 1
            self.state.windows[plan.domain].append(now)
            kind = _LATE_KINDS.get(plan.outcome)
            if kind is not None:
                self._schedule_late(server, kind, sender, plan, fields, message_id, content, now)

    def _schedule_late(
        self,
        server: SandboxSMTP,
        kind: str,
        sender: str,
        plan: Plan,
        fields: dict[str, list[str]],
        message_id: str | None,
        content: bytes,
        arrival: float,
    ) -> None:
        if sender in ("", "<>"):
            server.record_silent("late_mail_suppressed_null_sender")
            return
        auto = (_first(fields, "auto-submitted") or "no").split(";")[0].strip().lower()
        if kind == "auto_reply" and auto != "no":
            # RFC 3834 section 2: never answer automatic mail automatically.
            server.record_silent("auto_reply_suppressed")
            return
        world = self.options.world
        due = arrival + world.late_delay_for(plan.key)
        if kind == "dsn":
            data = build_dsn(
                to=sender,
                recipient=plan.recipient,
                original=content,
                arrival=arrival,
                failure=world.late_failure(plan.key),
                now=due,
            )
        elif kind == "arf":
            data = build_arf(
                to=sender,
                recipient=plan.recipient,
                original=content,
                arrival=arrival,
                source_ip=self.options.source_ip,
                now=due,
            )
        else:
            data = build_auto_reply(to=sender, recipient=plan.recipient, original=content, now=due)
        self.state.late.schedule(
            LateMail(kind, sender, plan.recipient, message_id, due, data)  # type: ignore[arg-type]
        )
        if self.state.late_changed is not None:
            self.state.late_changed.set()


_REFUSALS = {
    "user_unknown": "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
    "mailbox_full": "552 5.2.2 <{rcpt}>: Mailbox full, over quota",
    "policy": "554 5.7.1 <{rcpt}>: Message refused by the policy of {domain}",
    "tempfail": "451 4.3.0 <{rcpt}>: Temporary local problem, please try again later",
}


def abort(transport: asyncio.BaseTransport) -> None:
    """Cut a connection at once (no flush, no goodbye), as a crashing server would."""
    cast(asyncio.Transport, transport).abort()


def _has_control(address: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in address)


def _first(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def _digest(content: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(content).hexdigest()


def _scan_header(content: bytes) -> tuple[dict[str, list[str]], str | None]:
    """The header fields (lower-case name -> unfolded values) and the first problem found."""
    fields: dict[str, list[str]] = {}
    last: str | None = None
    for number, line in enumerate(content.split(b"\r\n"), start=1):
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if last is None:
                return fields, f"header line {number} is a continuation with no field before it"
            values = fields[last]
            values[-1] += " " + line.strip().decode("utf-8", "replace")
            continue
        match = _FIELD_LINE.match(line)
        if match is None:
            if number == 1:
                return fields, None  # no header section at all: the whole message is a body
            return fields, f"header line {number} is not a 'Name: value' field"
        last = match.group(1).decode("ascii").lower()
        value = line[match.end() :].strip().decode("utf-8", "replace")
        fields.setdefault(last, []).append(value)
    return fields, None


def _content_problem(content: bytes, *, smuggled: bool = False) -> tuple[str, str] | None:
    """(event, reply) when a strict server refuses this message data, else None."""
    bare_lf = _BARE_LF.search(content) is not None
    bare_cr = _BARE_CR.search(content) is not None
    if bare_lf or bare_cr or smuggled:
        if smuggled or _SMUGGLED_DOT.search(content) is not None:
            return (
                "smuggling",
                "521 5.5.2 Error: bare <LF> or <CR> around a '.' line in the message data "
                "(SMTP smuggling attempt); end every line with <CR><LF>",
            )
        what = "<LF>" if bare_lf else "<CR>"
        return (
            "bare_lf" if bare_lf else "bare_cr",
            f"521 5.5.2 Error: bare {what} received in the message data; end every line with "
            "<CR><LF> (RFC 5321 section 2.3.8)",
        )
    fields, malformed = _scan_header(content)
    if malformed is not None:
        return "malformed_header", f"554 5.6.0 Message refused: {malformed}"
    for name, values in fields.items():
        if name in _SINGLE_FIELDS and len(values) > 1:
            return (
                "duplicate_header",
                f"554 5.6.0 Message refused: it has {len(values)} '{name}' header fields and "
                "RFC 5322 allows one (header injection?)",
            )
    return None
