"""An embedded local SMTP world for demos, notebooks and tests: ``Sandbox`` and ``World``.

``Sandbox`` is a real SMTP server (aiosmtpd) on 127.0.0.1 that plays the part of the internet's
mail servers. A :class:`World` says, deterministically for a seed, what each recipient and domain
does: accept, refuse (550 5.1.1 unknown user, 552 5.2.2 mailbox full, 554 5.7.1 policy), accept
and bounce later (RFC 3464), accept and complain later (RFC 5965), accept and auto-reply
(RFC 3834), greylist, throttle, answer slowly, drop the connection during DATA, or refuse the
greeting. Server-wide there is STARTTLS with a certificate made at start (its CA file exposed),
optional AUTH PLAIN/LOGIN with generated credentials (only after STARTTLS), a SIZE limit,
SMTPUTF8 on or off, PIPELINING and a maximum number of recipients per message.

It records everything: ``box.deliveries()`` (one row per accepted recipient, with how many times
that recipient has received that Message-ID, so tests can prove "delivered exactly once"),
``box.events()`` (every reply and decision: refusals, greylisting, throttling, drops, protocol
abuse), and a Maildir of late bounces, complaints and auto-replies (``box.mailbox``).

The server runs its own event loop in a daemon thread (like aiosmtpd's ``Controller``), so a
blocking ``smtplib`` client in the same thread, smtpkit's portal loop and a Jupyter kernel can all
talk to it. It binds loopback addresses only.

Speed: a pure-Python server tops out around 2,000 messages/s on this kind of machine (it
saturates one core), so never use the Sandbox to measure a client's speed; for that, run
Postfix's ``smtp-sink`` (see the sending issue and ``bench/``).

Example:
    >>> import smtplib, ssl
    >>> from smtpkit.sandbox import Sandbox, World
    >>> with Sandbox(World(addresses={"gone@example.com": "user_unknown"})) as box:
    ...     with smtplib.SMTP(box.host, box.port) as client:
    ...         _ = client.starttls(context=ssl.create_default_context(cafile=box.ca_file))
    ...         refused = client.sendmail("news@example.com", ["ann@example.com",
    ...                                   "gone@example.com"], "Subject: Hi\\r\\n\\r\\nHello\\r\\n")
    ...     delivered = box.deliveries()
    >>> refused["gone@example.com"][0], list(delivered["recipient"])
    (550, ['ann@example.com'])
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import email.message
import email.policy
import html
import os
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._sandbox_mail import LateMailbox
from ._sandbox_server import (
    Recorder,
    SandboxHandler,
    SandboxSMTP,
    SandboxState,
    ServerOptions,
    abort,
)
from ._sandbox_world import (
    DEFAULT_GREYLIST_SECONDS,
    DEFAULT_LATE_DELAY,
    DNS_MODES,
    EXAMPLE_DOMAINS,
    OUTCOMES,
    Domain,
    Rule,
    World,
)
from .config import MXDelivery, Secret, SMTPConfig, is_loopback
from .errors import SandboxError

if TYPE_CHECKING:
    from .dns import Resolver

__all__ = [
    "DEFAULT_GREYLIST_SECONDS",
    "DEFAULT_LATE_DELAY",
    "DEFAULT_MAX_RECIPIENTS",
    "DEFAULT_SIZE_LIMIT",
    "DELIVERY_COLUMNS",
    "DNS_MODES",
    "EVENT_COLUMNS",
    "EXAMPLE_DOMAINS",
    "LATE_MAIL_COLUMNS",
    "OUTCOMES",
    "SANDBOX_HOSTNAME",
    "Domain",
    "Rule",
    "Sandbox",
    "World",
]

#: Largest message (bytes) the sandbox takes by default; advertised as ``SIZE``.
DEFAULT_SIZE_LIMIT = 10 * 1024 * 1024
#: Recipients per message by default (RFC 5321 section 4.5.3.1.8 asks servers to take 100).
DEFAULT_MAX_RECIPIENTS = 100
#: Seconds an idle client connection is kept open.
DEFAULT_IDLE_TIMEOUT = 60.0
#: The name the server gives in its greeting and EHLO reply.
SANDBOX_HOSTNAME = "sandbox.smtpkit.test"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0

_DELIVERY_DTYPES: dict[str, str] = {
    "envelope_sender": "string",
    "recipient": "string",
    "message_id": "string",
    "size": "Int64",
    "received_at": "datetime64[us, UTC]",
    "tls": "bool",
    "delivery_count": "Int64",
    "domain": "string",
    "connection_id": "Int64",
    "acknowledged": "bool",
    "late_message": "string",
}
#: Columns of ``Sandbox.deliveries()``.
DELIVERY_COLUMNS: tuple[str, ...] = tuple(_DELIVERY_DTYPES)
_EVENT_DTYPES: dict[str, str] = {
    "at": "datetime64[us, UTC]",
    "connection_id": "Int64",
    "command": "string",
    "argument": "string",
    "code": "Int64",
    "reply": "string",
    "event": "string",
}
#: Columns of ``Sandbox.events()``.
EVENT_COLUMNS: tuple[str, ...] = tuple(_EVENT_DTYPES)
_LATE_DTYPES: dict[str, str] = {
    "kind": "string",
    "to": "string",
    "recipient": "string",
    "original_message_id": "string",
    "due_at": "datetime64[us, UTC]",
    "written_at": "datetime64[us, UTC]",
    "path": "string",
}
#: Columns of ``Sandbox.late_mail()``.
LATE_MAIL_COLUMNS: tuple[str, ...] = tuple(_LATE_DTYPES)


def _frame(rows: list[tuple[Any, ...]], dtypes: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(dtypes))
    for column, dtype in dtypes.items():
        if dtype.startswith("datetime64"):
            seconds = frame[column].astype("Float64")
            stamps = pd.to_datetime(seconds, unit="s", utc=True)
            frame[column] = stamps.astype(dtype)  # type: ignore[call-overload]
        else:
            frame[column] = frame[column].astype(dtype)  # type: ignore[call-overload]
    return frame


class Sandbox:
    """A local SMTP server that simulates the internet's mail servers for one ``World``.

    Parameters:
        world: what each domain and address does (default ``World()``: accept everything).
        host: a loopback address to listen on; anything else raises ``SandboxError``.
        port: 0 (default) picks a free port at start.
        tls: offer STARTTLS with a certificate made at start (``ca_file`` trusts it).
        auth: require AUTH PLAIN/LOGIN with generated ``username`` / ``password`` (needs ``tls``).
        size_limit: largest message in bytes (``SIZE``); None for no limit.
        smtputf8: offer SMTPUTF8 (internationalized addresses).
        max_recipients: RCPT commands taken per message; more get 452 4.5.3.
        mailbox: folder of the Maildir for late mail. Default: a temporary folder that is
            removed by ``stop()``; pass a path to keep the late mail after the sandbox stops.
        seed: overrides ``world.seed``.
        pipelining: advertise PIPELINING.
        require_tls: refuse mail commands (530) before STARTTLS.
        keep_messages: keep every accepted message's bytes for ``messages()``.

    Example:
        >>> box = Sandbox(tls=False).start()
        >>> box.config.tls, box.config.host
        ('none', '127.0.0.1')
        >>> box.stop()
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = True,
        auth: bool = False,
        size_limit: int | None = DEFAULT_SIZE_LIMIT,
        smtputf8: bool = True,
        max_recipients: int = DEFAULT_MAX_RECIPIENTS,
        mailbox: str | os.PathLike[str] | None = None,
        seed: int | None = None,
        pipelining: bool = True,
        require_tls: bool = False,
        keep_messages: bool = True,
    ) -> None:
        if world is None:
            world = World()
        if not isinstance(world, World):
            raise SandboxError(
                f"Sandbox needs a smtpkit.sandbox.World, not {type(world).__name__}; build one "
                "with World(...) or World.default()."
            )
        if seed is not None:
            world = dataclasses.replace(world, seed=seed)
        if not isinstance(host, str) or not is_loopback(host):
            raise SandboxError(
                f"The sandbox listens only on a loopback address (127.0.0.1, ::1 or localhost), "
                f"never on {host!r}: anyone who can reach it could use it. Leave host at its "
                "default, '127.0.0.1'."
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise SandboxError(f"port must be 0 (any free port) or 1 to 65535; got {port!r}.")
        if auth and not tls:
            raise SandboxError(
                "auth=True needs tls=True: AUTH is offered only after STARTTLS, and smtpkit "
                "never sends a password over plaintext."
            )
        if size_limit is not None and (
            isinstance(size_limit, bool) or not isinstance(size_limit, int) or size_limit < 1
        ):
            raise SandboxError(
                f"size_limit must be a positive number of bytes or None; got {size_limit!r}."
            )
        if (
            isinstance(max_recipients, bool)
            or not isinstance(max_recipients, int)
            or max_recipients < 1
        ):
            raise SandboxError(f"max_recipients must be at least 1; got {max_recipients!r}.")
        if require_tls and not tls:
            raise SandboxError("require_tls=True needs tls=True.")
        self.world = world
        self.host = "127.0.0.1" if host.lower().rstrip(".") == "localhost" else host.strip("[]")
        self.tls = tls
        self.auth = auth
        self.size_limit = size_limit
        self.smtputf8 = smtputf8
        self.max_recipients = max_recipients
        self.pipelining = pipelining
        self.require_tls = require_tls
        self._requested_port = port
        self._mailbox_arg = Path(mailbox) if mailbox is not None else None
        self.username: str | None = f"sandbox-{secrets.token_hex(3)}" if auth else None
        self._password: str | None = secrets.token_urlsafe(18) if auth else None
        self._recorder = Recorder(keep_messages=keep_messages)
        self._resolver: Resolver | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._state: SandboxState | None = None
        self._late: LateMailbox | None = None
        self._tempdir: Path | None = None
        self._ca_file: str | None = None
        self._port: int | None = None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Sandbox:
        """Make the certificate, start listening in a background thread, and return self."""
        with self._lock:
            if self._thread is not None:
                raise SandboxError(
                    f"This sandbox is already running on {self._address()}; call stop() first "
                    "or use another Sandbox."
                )
            tempdir = Path(tempfile.mkdtemp(prefix="smtpkit-sandbox-"))
            try:
                self._start_in(tempdir)
            except BaseException:
                shutil.rmtree(tempdir, ignore_errors=True)
                self._thread = self._loop = self._server = None
                self._ca_file = self._port = None
                raise
            self._tempdir = tempdir
            # A script or kernel that exits without stop() still writes pending late mail and
            # removes the temporary folder.
            atexit.register(self.stop)
        return self

    def _start_in(self, tempdir: Path) -> None:
        tls_context = self._make_tls(tempdir) if self.tls else None
        root = self._mailbox_arg if self._mailbox_arg is not None else tempdir / "Maildir"
        late = self._late if self._late is not None and self._late.root == root else None
        self._late = late or LateMailbox(root)
        options = ServerOptions(
            world=self.world,
            hostname=SANDBOX_HOSTNAME,
            max_recipients=self.max_recipients,
            pipelining=self.pipelining,
            username=self.username,
            password=self._password,
            source_ip=self.host,
        )
        state = SandboxState(options, self._recorder, self._late)
        handler = SandboxHandler(state)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def factory() -> SandboxSMTP:
            return SandboxSMTP(
                handler,
                data_size_limit=self.size_limit,
                enable_SMTPUTF8=self.smtputf8,
                hostname=SANDBOX_HOSTNAME,
                ident="ESMTP smtpkit sandbox",
                tls_context=tls_context,
                require_starttls=self.require_tls,
                timeout=DEFAULT_IDLE_TIMEOUT,
                auth_required=self.auth,
                auth_require_tls=True,
                authenticator=handler.authenticate,
                loop=loop,
            )

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                state.late_changed = asyncio.Event()
                server = loop.run_until_complete(
                    loop.create_server(factory, host=self.host, port=self._requested_port)
                )
                self._server = server
                self._port = int(server.sockets[0].getsockname()[1])
                writer = loop.create_task(self._write_late_mail(state))
            except BaseException as exc:  # reported to start() in the caller's thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                writer.cancel()
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=serve, name="smtpkit-sandbox", daemon=True)
        thread.start()
        if not ready.wait(_START_TIMEOUT) or failure:
            thread.join(_START_TIMEOUT)
            reason = failure[0] if failure else "it did not start in time"
            raise SandboxError(
                f"The sandbox could not listen on {self.host} port {self._requested_port}: "
                f"{reason}. Use port=0 to pick a free port."
            ) from (failure[0] if failure else None)
        self._loop, self._thread, self._state = loop, thread, state

    def _make_tls(self, tempdir: Path) -> ssl.SSLContext:
        import trustme

        authority = trustme.CA(organization_name="smtpkit sandbox")
        identities = ["127.0.0.1", "::1", "localhost", SANDBOX_HOSTNAME, *self.world.mx_hosts()]
        if self.host not in identities:
            identities.append(self.host)
        certificate = authority.issue_cert(*identities, common_name=SANDBOX_HOSTNAME)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        certificate.configure_cert(context)
        ca_file = tempdir / "sandbox-ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        self._ca_file = str(ca_file)
        return context

    async def _write_late_mail(self, state: SandboxState) -> None:
        changed = state.late_changed
        assert changed is not None
        while True:
            state.late.write_due(time.time())
            due = state.late.next_due()
            wait = None if due is None else max(0.0, due - time.time())
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), timeout=wait)
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Close every connection, stop the server thread and remove temporary files.

        Late mail not yet due is written at once when ``mailbox`` was given (nothing is lost);
        with the default temporary Maildir it is removed together with the folder. Calling
        ``stop()`` on a stopped sandbox does nothing.
        """
        with self._lock:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return
            atexit.unregister(self.stop)
            if threading.current_thread() is thread:
                raise SandboxError(
                    "Sandbox.stop() was called from the sandbox's own thread; call it from your "
                    "code instead."
                )
            if thread.is_alive():
                future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                try:
                    future.result(_STOP_TIMEOUT)
                finally:
                    loop.call_soon_threadsafe(loop.stop)
                    thread.join(_STOP_TIMEOUT)
            self._thread = self._loop = self._server = self._state = None
            if self._late is not None and self._mailbox_arg is not None:
                self._late.write_due()
            if self._tempdir is not None:
                shutil.rmtree(self._tempdir, ignore_errors=True)
                self._tempdir = None
            self._ca_file = None
            self._port = None

    async def _shutdown(self) -> None:
        assert self._server is not None and self._state is not None
        self._server.close()
        for protocol in list(self._state.protocols):
            if protocol.transport is not None:
                abort(protocol.transport)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # let aborted connections run connection_lost

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- where it is ------------------------------------------------------------------------

    def _require_running(self) -> None:
        if not self.running:
            raise SandboxError(
                "The sandbox is not running; call start() first or use it in a 'with' block."
            )

    def _address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self._port if self._port is not None else self._requested_port}"

    @property
    def port(self) -> int:
        """The TCP port the sandbox listens on (known once it runs)."""
        if self._port is None:
            if self._requested_port:
                return self._requested_port
            self._require_running()
        assert self._port is not None
        return self._port

    @property
    def ca_file(self) -> str | None:
        """PEM file of the certificate authority that signed the sandbox's certificate.

        Trust it with ``ssl.create_default_context(cafile=box.ca_file)``. None when ``tls`` is
        off; removed by ``stop()``.
        """
        if self.tls:
            self._require_running()
        return self._ca_file

    @property
    def password(self) -> Secret | None:
        """The generated AUTH password as a ``Secret`` (``.reveal()`` gives the string)."""
        return Secret(self._password) if self._password is not None else None

    @property
    def mailbox(self) -> Path:
        """The Maildir where late bounces, complaints and auto-replies are written."""
        if self._mailbox_arg is not None:
            return self._mailbox_arg
        self._require_running()
        assert self._late is not None
        return self._late.root

    @property
    def config(self) -> SMTPConfig:
        """An ``SMTPConfig`` that submits to this sandbox (STARTTLS with ``ca_file`` when on)."""
        self._require_running()
        if not self.tls:
            return SMTPConfig(self.host, self.port, tls="none")
        return SMTPConfig(
            self.host,
            self.port,
            tls="starttls",
            ca_file=self._ca_file,
            username=self.username,
            password=self.password,
        )

    @property
    def resolver(self) -> Resolver:
        """A ``smtpkit.dns.Resolver`` answering for the world's domains: MX hosts at this server.

        Each known domain has ``MX 10 mx1.<domain>.`` and that host an A record of the sandbox's
        address; typo and unknown domains are NXDOMAIN, a null-MX domain answers ``0 .``.
        """
        if self._resolver is None:
            from .dns import Resolver, StaticBackend

            self._resolver = Resolver(backend=StaticBackend(self.world.zone(self.host)))
        return self._resolver

    @property
    def mx(self) -> MXDelivery:
        """An ``MXDelivery`` for ``send(..., config=box.mx)``: direct-to-MX through ``resolver``."""
        self._require_running()
        return MXDelivery(
            resolver=self.resolver,
            port=self.port,
            tls="starttls" if self.tls else "none",
            ca_file=self._ca_file,
            # without TLS the sandbox's MX hosts are plaintext, but only ever on loopback
            insecure=not self.tls,
        )

    # --- what happened ----------------------------------------------------------------------

    def deliveries(self) -> pd.DataFrame:
        """One row per accepted recipient, in arrival order.

        Columns (``DELIVERY_COLUMNS``): ``envelope_sender``, ``recipient`` (as given in RCPT),
        ``message_id`` (NA when the message had none), ``size`` (bytes), ``received_at`` (UTC),
        ``tls``, ``delivery_count`` (how many times this recipient has received this Message-ID
        so far, 1 for the first; messages without one are told apart by content), ``domain``,
        ``connection_id``, ``acknowledged`` (False when the connection was dropped after the
        final "." so the client never saw the 250), ``late_message`` (``dsn``, ``arf``,
        ``auto_reply`` or NA).
        """
        with self._recorder.lock:
            rows = list(self._recorder.deliveries)
        return _frame(rows, _DELIVERY_DTYPES)

    def events(self) -> pd.DataFrame:
        """Every reply and decision, in order (``EVENT_COLUMNS``).

        ``event`` names what happened: ``ok``, ``accepted``, ``delivered``, ``greeting_refused``,
        ``greylisted``, ``throttled_connection``, ``throttled_rate``, ``user_unknown``,
        ``mailbox_full``, ``policy``, ``tempfail``, ``domain_not_found``, ``null_mx``,
        ``dns_failure``, ``too_many_recipients``, ``too_big``, ``needs_smtputf8``,
        ``dropped_before_dot``, ``dropped_after_dot``, ``bare_lf``, ``bare_cr``, ``smuggling``,
        ``line_too_long``, ``duplicate_header``, ``malformed_header``, ``bad_address``,
        ``unknown_command``, ``syntax_error``, ``bad_sequence``, ``auth_ok``, ``auth_failed``,
        ``auth_needs_tls``, ``auth_required``, ``tls_failed``, ``auto_reply_suppressed``,
        ``internal_error``, ... AUTH arguments are reduced to the mechanism name.
        """
        with self._recorder.lock:
            rows = list(self._recorder.events)
        return _frame(rows, _EVENT_DTYPES)

    def late_mail(self) -> pd.DataFrame:
        """Every late message scheduled so far (``LATE_MAIL_COLUMNS``); ``path`` once written."""
        late = self._late
        rows = (
            []
            if late is None
            else [
                (m.kind, m.to, m.recipient, m.original_message_id, m.due_at, m.written_at, m.path)
                for m in list(late.records)
            ]
        )
        return _frame(rows, _LATE_DTYPES)

    def raw_messages(self, recipient: str | None = None, /) -> list[bytes]:
        """The bytes of each accepted message, one per delivery row (or one recipient's only)."""
        with self._recorder.lock:
            pairs = list(zip(self._recorder.deliveries, self._recorder.messages, strict=True))
        wanted = None if recipient is None else recipient.lower()
        return [data for row, data in pairs if wanted is None or row[1].lower() == wanted]

    def messages(self, recipient: str | None = None, /) -> list[email.message.EmailMessage]:
        """Accepted messages parsed with the stdlib ``email`` package (see ``raw_messages``)."""
        return [
            email.message_from_bytes(data, policy=email.policy.default)
            for data in self.raw_messages(recipient)
        ]

    # --- late mail --------------------------------------------------------------------------

    @property
    def mail_pending(self) -> int:
        """Late messages scheduled but not yet written."""
        return self._late.pending if self._late is not None else 0

    @property
    def mail_written(self) -> int:
        """Late messages written to the Maildir so far."""
        return self._late.written if self._late is not None else 0

    def flush_mail(self) -> int:
        """Write every pending late message now, however far its delay; return how many."""
        return self._late.write_due() if self._late is not None else 0

    def wait_for_mail(self, count: int, /, *, timeout: float = 10.0) -> int:
        """Wait until at least ``count`` late messages have been written; return the number written.

        Raises ``SandboxError`` when fewer arrive within ``timeout`` seconds.
        """
        late = self._late
        if late is None:
            raise SandboxError(
                "The sandbox has not been started, so no late mail will come; call start() first."
            )
        if not late.wait(count, timeout):
            raise SandboxError(
                f"Only {late.written} of {count} late messages were written within "
                f"{timeout:g} s ({late.pending} still pending); wait longer, or call "
                "flush_mail() to write them at once."
            )
        return late.written

    # --- display ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = f"running on {self._address()}" if self.running else "stopped"
        return (
            f"<Sandbox {state} tls={self.tls} auth={self.auth} world={self.world!r} "
            f"deliveries={len(self._recorder.deliveries)}>"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("state", "running" if self.running else "stopped"),
            ("address", self._address() if self.running else "-"),
            ("TLS", "STARTTLS" if self.tls else "off"),
            ("AUTH", f"PLAIN/LOGIN as {self.username}" if self.auth else "off"),
            ("world", repr(self.world)),
            ("deliveries", str(len(self._recorder.deliveries))),
            ("late mail written / pending", f"{self.mail_written} / {self.mail_pending}"),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return f"<table><caption>smtpkit Sandbox</caption>{body}</table>"
