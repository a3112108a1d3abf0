"""Pre-flight check of an SMTP configuration: a report, not a send.

``verify(config)`` walks the steps a campaign will take and says, for each, whether it worked and
what to do when it did not: connect (time, greeting), TLS (version, cipher, certificate subject
and expiry), EHLO (SIZE, PIPELINING, 8BITMIME, SMTPUTF8, AUTH mechanisms), login, and optionally
one test message. Nothing in it raises for a server problem: a failed step is a row of the
report. The connection work and the translation of SMTP errors are :mod:`smtpkit.transport`'s;
this module only turns them into plain-language advice for the configuration at hand.

Example:
    >>> from smtpkit import Sandbox, verify
    >>> with Sandbox(auth=True) as box:
    ...     report = verify(box.config)
    >>> report.ok, [step.name for step in report.steps]
    (True, ['connect', 'tls', 'ehlo', 'auth', 'test_message'])
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import email.message
import email.policy
import email.utils
import html
import time
from typing import Literal

import pandas as pd

from . import _portal
from .config import SMTPConfig
from .errors import InputError
from .transport import REASONS, ConnectionInfo, SMTPConnection, SMTPReply, TransportError

__all__ = ["CERT_EXPIRY_WARNING_DAYS", "VerifyReport", "VerifyStep", "averify", "verify"]

#: A certificate expiring within this many days is reported as a warning.
CERT_EXPIRY_WARNING_DAYS = 14

StepName = Literal["connect", "tls", "ehlo", "auth", "test_message"]
StepState = Literal["ok", "warning", "failed", "skipped"]
_STEPS: tuple[StepName, ...] = ("connect", "tls", "ehlo", "auth", "test_message")
_STATE_COLORS = {"ok": "#2e7d32", "warning": "#b26a00", "failed": "#c62828", "skipped": "#666666"}


@dataclasses.dataclass(frozen=True)
class VerifyStep:
    """One step of the check: its state, what was found, and how to fix it when it failed."""

    name: StepName
    state: StepState
    detail: str
    fix: str = ""
    ms: float | None = None

    @property
    def ok(self) -> bool:
        """True when the step worked (a warning still works) or was not needed."""
        return self.state != "failed"


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """The result of :func:`verify`: one :class:`VerifyStep` per step, in order."""

    server: str
    tls_mode: str
    steps: tuple[VerifyStep, ...]
    info: ConnectionInfo | None = None

    @property
    def ok(self) -> bool:
        """True when no step failed."""
        return all(step.ok for step in self.steps)

    def step(self, name: StepName, /) -> VerifyStep:
        """The step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        names = ", ".join(repr(step.name) for step in self.steps)
        raise InputError(f"This report has no step {name!r}; its steps are {names}.")

    def to_frame(self) -> pd.DataFrame:
        """The steps as a frame: step, state, detail, fix, ms."""
        return pd.DataFrame(
            [(s.name, s.state, s.detail, s.fix, s.ms) for s in self.steps],
            columns=["step", "state", "detail", "fix", "ms"],
        )

    def __str__(self) -> str:
        verdict = "ready to send" if self.ok else "NOT ready"
        lines = [f"SMTP check of {self.server} (tls={self.tls_mode}): {verdict}"]
        for s in self.steps:
            timing = f" [{s.ms:.0f} ms]" if s.ms is not None else ""
            lines.append(f"  {s.state.upper():8} {s.name:13} {s.detail}{timing}")
            if s.fix:
                lines.append(f"  {'':8} {'':13} fix: {s.fix}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        verdict = "ready to send" if self.ok else "NOT ready"
        rows = []
        for s in self.steps:
            color = _STATE_COLORS[s.state]
            timing = f"{s.ms:.0f} ms" if s.ms is not None else ""
            rows.append(
                "<tr>"
                f"<td style='text-align:left'>{html.escape(s.name)}</td>"
                f"<td style='text-align:left;color:{color};font-weight:bold'>{s.state}</td>"
                f"<td style='text-align:left'>{html.escape(s.detail)}</td>"
                f"<td style='text-align:left'>{html.escape(s.fix)}</td>"
                f"<td style='text-align:right'>{timing}</td>"
                "</tr>"
            )
        return (
            f"<table><caption>SMTP check of {html.escape(self.server)} "
            f"(tls={html.escape(self.tls_mode)}): <b>{verdict}</b></caption>"
            "<tr><th>step</th><th>state</th><th>found</th><th>fix</th><th>time</th></tr>"
            + "".join(rows)
            + "</table>"
        )


def verify(
    config: SMTPConfig, /, *, send_test_to: str | None = None, sender: str | None = None
) -> VerifyReport:
    """Check ``config`` step by step before a campaign; never raises for a server problem.

    Parameters:
        send_test_to: also send one short test message to this address.
        sender: envelope and ``From`` address of the test message (default: the username when it
            is an address, else ``smtpkit-verify@<host>``).

    Example:
        >>> from smtpkit import SMTPConfig
        >>> report = verify(SMTPConfig("127.0.0.1", 1, tls="none", timeout=2))
        >>> report.ok, report.step("connect").state
        (False, 'failed')
    """
    return _portal.run(averify(config, send_test_to=send_test_to, sender=sender))


async def averify(
    config: SMTPConfig, /, *, send_test_to: str | None = None, sender: str | None = None
) -> VerifyReport:
    """The coroutine behind :func:`verify` (same arguments)."""
    if not isinstance(config, SMTPConfig):
        raise InputError(
            f"verify() checks one SMTPConfig; got {type(config).__name__}. For direct MX "
            "delivery, verify the config of one MX host (MXDelivery.config_for(host))."
        )
    for name, value in (("send_test_to", send_test_to), ("sender", sender)):
        if value is not None and not _plain_address(value):
            raise InputError(f"{name} must be one email address; got {value!r}.")
    steps: dict[StepName, VerifyStep] = {}
    started = time.perf_counter()
    try:
        conn = await SMTPConnection.open(config, login=False)
    except TransportError as exc:
        _record_open_failure(steps, config, exc, (time.perf_counter() - started) * 1000.0)
        return _report(config, steps, exc.info)
    try:
        info = conn.info
        steps["connect"] = _connect_step(info)
        steps["tls"] = _tls_step(config, info)
        steps["ehlo"] = _ehlo_step(info)
        if config.username is None:
            steps["auth"] = VerifyStep("auth", "skipped", "no username configured; not logging in")
        else:
            t0 = time.perf_counter()
            reply = await conn.login()
            ms = (time.perf_counter() - t0) * 1000.0
            if reply.ok:
                steps["auth"] = VerifyStep("auth", "ok", f"logged in as {config.username}", ms=ms)
            else:
                steps["auth"] = VerifyStep(
                    "auth", "failed", _said(reply), _fix_for(config, reply), ms=ms
                )
        if send_test_to is None:
            steps["test_message"] = VerifyStep(
                "test_message", "skipped", "not asked (pass send_test_to=...)"
            )
        elif not steps["auth"].ok:
            steps["test_message"] = VerifyStep(
                "test_message", "skipped", "not sent because the login failed"
            )
        else:
            steps["test_message"] = await _send_test(conn, config, send_test_to, sender)
        info = conn.info
    finally:
        await conn.close()
    return _report(config, steps, info)


def _report(
    config: SMTPConfig, steps: dict[StepName, VerifyStep], info: ConnectionInfo | None
) -> VerifyReport:
    ordered = tuple(
        steps.get(name) or VerifyStep(name, "skipped", "not reached") for name in _STEPS
    )
    return VerifyReport(config.server, config.tls, ordered, info)


def _record_open_failure(
    steps: dict[StepName, VerifyStep], config: SMTPConfig, exc: TransportError, ms: float
) -> None:
    """Put the failed step (and the ones that worked before it) into ``steps``."""
    reply, info = exc.reply, exc.info
    failed_step: StepName = {
        "connect": "connect",
        "greeting": "connect",
        "starttls": "tls",
        "ehlo": "ehlo",
        "auth": "auth",
    }.get(reply.stage, "connect")  # type: ignore[assignment]
    # A TLS handshake that fails while connecting (implicit TLS) is a TLS problem.
    if failed_step == "connect" and reply.reason == "tls_failed":
        failed_step = "tls"
        steps["connect"] = VerifyStep(
            "connect", "ok", "TCP connection made; the TLS handshake failed before any greeting"
        )
    if failed_step != "connect" and info is not None:
        steps["connect"] = _connect_step(info)
        if failed_step == "ehlo":
            steps["tls"] = _tls_step(config, info)
    steps[failed_step] = VerifyStep(
        failed_step, "failed", _said(reply), _fix_for(config, reply), ms=ms
    )


def _connect_step(info: ConnectionInfo) -> VerifyStep:
    greeting = _first_line(info.greeting)
    return VerifyStep("connect", "ok", f"connected; greeting: {greeting}", ms=info.connect_ms)


def _tls_step(config: SMTPConfig, info: ConnectionInfo) -> VerifyStep:
    if config.tls == "none":
        return VerifyStep(
            "tls", "skipped", "not used: plaintext (allowed to loopback or with insecure=True)"
        )
    if not info.tls:
        return VerifyStep("tls", "failed", "the connection is not encrypted", _fix_for_tls(config))
    detail = f"{info.tls_version}, {info.cipher}; certificate {info.peer_subject or '(no subject)'}"
    if info.peer_not_after is not None:
        days = (info.peer_not_after - _dt.datetime.now(_dt.UTC)).days
        detail += f", valid until {info.peer_not_after:%Y-%m-%d}"
        if days < CERT_EXPIRY_WARNING_DAYS:
            return VerifyStep(
                "tls",
                "warning",
                f"{detail} (expires in {days} days)",
                "Renew the server certificate soon, or mail will stop when it expires.",
            )
    return VerifyStep("tls", "ok", detail)


def _ehlo_step(info: ConnectionInfo) -> VerifyStep:
    size = info.size_limit
    found = [
        f"SIZE {size:,}" if size else "SIZE unlimited/not announced",
        "PIPELINING" if info.pipelining else "no PIPELINING (slower sending)",
        "8BITMIME" if info.eightbitmime else "no 8BITMIME",
        "SMTPUTF8" if info.smtputf8 else "no SMTPUTF8 (internationalized addresses will fail)",
        "AUTH " + " ".join(info.auth_mechanisms) if info.auth_mechanisms else "no AUTH offered",
    ]
    return VerifyStep("ehlo", "ok", "; ".join(found))


async def _send_test(
    conn: SMTPConnection, config: SMTPConfig, to: str, sender: str | None
) -> VerifyStep:
    if sender is None:
        user = config.username or ""
        sender = user if "@" in user else f"smtpkit-verify@{config.host}"
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "smtpkit verify: test message"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
    msg.set_content("This is a test message sent by smtpkit verify. No action is needed.\n")
    t0 = time.perf_counter()
    replies = await conn.send(sender, [to], msg.as_bytes())
    ms = (time.perf_counter() - t0) * 1000.0
    reply = replies[to]
    if reply.ok:
        return VerifyStep("test_message", "ok", f"accepted for {to}: {_said(reply)}", ms=ms)
    return VerifyStep("test_message", "failed", _said(reply), _fix_for(config, reply), ms=ms)


def _said(reply: SMTPReply) -> str:
    meaning = REASONS.get(reply.reason, reply.reason)
    text = str(reply)
    return f"{meaning} ({text})" if text and text != meaning else meaning


def _fix_for_tls(config: SMTPConfig) -> str:
    if config.port == 465 and config.tls != "implicit":
        return "Port 465 expects implicit TLS; use tls='implicit'."
    if config.tls == "implicit":
        return (
            f"Port {config.port} does not speak TLS from the first byte; use tls='starttls' "
            "(usual on 587 and 25)."
        )
    return (
        "If the server uses its own certificate authority, pass ca_file=...; check that the "
        "host name matches the certificate."
    )


def _fix_for(config: SMTPConfig, reply: SMTPReply) -> str:
    """Plain-language advice for a failed step, specific to this configuration."""
    reason, stage = reply.reason, reply.stage
    if reason in ("timeout", "connection_lost") and stage in ("connect", "greeting"):
        if config.tls == "starttls" and config.port == 465:
            return "Port 465 expects implicit TLS; use tls='implicit'."
        if config.tls == "none" and config.port == 465:
            return "Port 465 expects implicit TLS; use tls='implicit'."
    if reason == "tls_failed":
        return _fix_for_tls(config)
    if reason == "tls_unavailable":
        return (
            "The server did not offer STARTTLS, so smtpkit stopped instead of sending in clear "
            "text (someone may be stripping it). Check the host and port; use tls='implicit' "
            "for port 465."
        )
    if reason == "connection_refused":
        return (
            f"Nothing listens on {config.server}; check the host and port (587 for STARTTLS "
            "submission, 465 for implicit TLS) and that the server is running."
        )
    if reason == "host_not_found":
        return f"The host name {config.host!r} does not resolve; check its spelling."
    if reason == "timeout":
        return "No answer in time; check the host, port and firewall, or raise timeout=."
    if reason == "auth_failed":
        return "Check the username and password (an app password may be needed); nothing was sent."
    if reason == "auth_unavailable":
        return "The server offers no AUTH mechanism smtpkit can use here; check the port."
    if reason == "ehlo_rejected":
        return "Set local_hostname= to a fully qualified host name the server accepts."
    if reason in ("service_unavailable", "service_refused"):
        return "The server refuses this client now; check your IP address or account, or retry."
    if reply.kind == "permanent":
        return "The server refused it permanently; read its message above."
    return "A temporary problem; try again in a few minutes."


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "(none)"


def _plain_address(value: object) -> bool:
    """One bare address: text with an @, without white space, controls or angle brackets."""
    return (
        isinstance(value, str)
        and "@" in value
        and not any(ch.isspace() or ord(ch) < 32 or 127 <= ord(ch) < 160 or ch in "<>,"
                    for ch in value)
    )
