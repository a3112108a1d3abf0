"""Small real SMTP servers on 127.0.0.1 for the transport and send tests (no tests here).

Each server is aiosmtpd (or, for broken greetings, a raw socket server) running its own event
loop in a daemon thread, bound to port 0. Faults are injected by the server's handler from a
per-address script, never by patching the client:

* ``"550 5.1.1 no such user"`` (any reply text): that reply to RCPT, every time;
* ``["451 4.7.1 Greylisted", None]``: a list is consumed one item per attempt (None = accept);
* ``"drop_before_data"``: hang up when RCPT arrives; ``"drop_after_dot"``: hang up after the
  final "." without replying; ``"hang_after_dot"``: never reply to the message data.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP as AioSMTP
from aiosmtpd.smtp import AuthResult, LoginPassword

from smtpkit.config import SMTPConfig

Fate = str | list[str | None] | None


@dataclasses.dataclass
class Delivery:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    connection: int


class ScriptedHandler:
    """An aiosmtpd handler that records everything and answers from per-address scripts."""

    def __init__(
        self,
        fates: dict[str, Fate] | None = None,
        *,
        mail_reply: str | None = None,
        data_reply: str | None = None,
        pipelining: bool = False,
        strip_starttls: bool = False,
        throttle_after: int | None = None,
    ) -> None:
        self.fates: dict[str, Fate] = dict(fates or {})
        self.mail_reply = mail_reply
        self.data_reply = data_reply
        self.pipelining = pipelining
        self.strip_starttls = strip_starttls
        self.throttle_after = throttle_after  # 421 after this many messages on one connection
        self.deliveries: list[Delivery] = []
        self.commands: list[str] = []
        self.auth_attempts = 0
        self.connections = 0
        self.lock = threading.Lock()
        self._per_connection: collections.Counter[int] = collections.Counter()

    # --- helpers
    def _fate(self, address: str) -> str | None:
        fate = self.fates.get(address)
        if isinstance(fate, list):
            return fate.pop(0) if fate else None
        return fate

    def delivered_to(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(r for d in self.deliveries for r in d.rcpt_tos)

    # --- aiosmtpd hooks
    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        self.commands.append("EHLO")
        if self.strip_starttls:
            responses = [r for r in responses if "STARTTLS" not in r]
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.commands.append("MAIL")
        key = id(session)
        if self.throttle_after is not None and self._per_connection[key] >= self.throttle_after:
            return "421 4.7.0 Too many messages on this connection, slow down"
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.commands.append("RCPT")
        fate = self._fate(address)
        if fate == "drop_before_data":
            server.transport.abort()
            return "250 OK"
        if fate is not None and fate[:1].isdigit():
            return fate
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        if fate in ("drop_after_dot", "hang_after_dot"):
            envelope.__dict__.setdefault("after_dot", fate)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.commands.append("DATA")
        after = envelope.__dict__.get("after_dot")
        if after is not None:
            # the message arrived complete; the client never hears so (RFC 1047's window)
            with self.lock:
                self.deliveries.append(Delivery(envelope.mail_from, list(envelope.rcpt_tos),
                                                envelope.content, id(session)))
            if after == "drop_after_dot":
                server.transport.abort()
                return "250 OK"
            await asyncio.sleep(3600)
        if self.data_reply is not None:
            return self.data_reply
        with self.lock:
            self.deliveries.append(Delivery(envelope.mail_from, list(envelope.rcpt_tos),
                                            envelope.content, id(session)))
        self._per_connection[id(session)] += 1
        return "250 2.0.0 OK queued"


class _Authenticator:
    def __init__(self, handler: ScriptedHandler, username: str, password: str) -> None:
        self.handler, self.username, self.password = handler, username, password

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> AuthResult:
        self.handler.auth_attempts += 1
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class SMTPServer:
    """A scripted aiosmtpd server on 127.0.0.1 in its own thread; a context manager.

    ``tls``: None (plain), ``"starttls"`` or ``"implicit"`` with the given server context.
    ``auth``: (username, password) to require AUTH (offered only after TLS unless
    ``auth_over_plain`` simulates a man in the middle that also strips STARTTLS).
    """

    def __init__(
        self,
        handler: ScriptedHandler | None = None,
        *,
        tls: str | None = None,
        server_context: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
        auth_over_plain: bool = False,
        smtputf8: bool = True,
        size_limit: int | None = 10_000_000,
    ) -> None:
        self.handler = handler or ScriptedHandler()
        self.tls = tls
        self.server_context = server_context
        self.auth = auth
        self.auth_over_plain = auth_over_plain
        self.smtputf8 = smtputf8
        self.size_limit = size_limit
        self.host = "127.0.0.1"
        self.port = 0
        self._thread: _LoopThread | None = None
        self._server: asyncio.base_events.Server | None = None

    def _factory(self) -> AioSMTP:
        kwargs: dict[str, Any] = {}
        if self.auth is not None:
            kwargs["authenticator"] = _Authenticator(self.handler, *self.auth)
            kwargs["auth_require_tls"] = not self.auth_over_plain
            kwargs["auth_required"] = True
        self.handler.connections += 1
        return AioSMTP(
            self.handler,
            hostname="mx.test",
            enable_SMTPUTF8=self.smtputf8,
            data_size_limit=self.size_limit,
            tls_context=self.server_context if self.tls == "starttls" else None,
            loop=self._thread.loop if self._thread else None,
            **kwargs,
        )

    def start(self) -> SMTPServer:
        self._thread = _LoopThread()
        ssl_ctx = self.server_context if self.tls == "implicit" else None

        async def serve() -> asyncio.base_events.Server:
            return await asyncio.get_running_loop().create_server(
                self._factory, self.host, 0, ssl=ssl_ctx
            )

        self._server = self._thread.call(serve())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        server = self._server

        async def close() -> None:
            if server is not None:
                server.close()

        self._thread.call(close())
        self._thread.stop()
        self._thread = None

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def config(self, **options: Any) -> SMTPConfig:
        tls = {"starttls": "starttls", "implicit": "implicit", None: "none"}[self.tls]
        options.setdefault("tls", tls)
        options.setdefault("timeout", 5.0)
        return SMTPConfig(self.host, self.port, **options)


class RawServer:
    """A socket server that answers every connection with ``script(reader, writer)``."""

    def __init__(self, script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]) -> None:
        self.script = script
        self.host = "127.0.0.1"
        self.port = 0
        self._thread: _LoopThread | None = None

    def __enter__(self) -> RawServer:
        self._thread = _LoopThread()

        async def serve() -> asyncio.base_events.Server:
            return await asyncio.start_server(self.script, self.host, 0)

        server = self._thread.call(serve())
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._thread is not None
        server = self._server

        async def close() -> None:
            server.close()

        self._thread.call(close())
        self._thread.stop()


def greeting_only(line: bytes) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    """A script that greets with ``line`` and hangs up."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line + b"\r\n")
        await writer.drain()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readline(), 1)
        writer.close()

    return script


def silent() -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    """A script that accepts the connection and never says anything."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()
        writer.close()

    return script


@dataclasses.dataclass
class TLSFiles:
    ca_file: str
    server_context: ssl.SSLContext
    other_ca_file: str  # a CA that did not sign the server certificate


def make_tls(folder: Path) -> TLSFiles:
    """A CA and a server certificate for 127.0.0.1 / ::1 / localhost (trustme)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "::1", "localhost", "mx.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other = folder / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    return TLSFiles(str(ca_file), context, str(other))


def message(recipient: str = "ann@example.com", *, subject: str = "Hello", body: str = "Hi.\r\n",
            sender: str = "shop@example.com") -> bytes:
    """A small valid message with CRLF line endings."""
    return (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{abs(hash((recipient, subject)))}@example.com>\r\n\r\n{body}"
    ).encode()


@contextlib.contextmanager
def serving(handler: ScriptedHandler | None = None, **options: Any) -> Iterator[SMTPServer]:
    with SMTPServer(handler, **options) as server:
        yield server
