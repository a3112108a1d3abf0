"""Where each message goes, and the pool of open SMTP connections that carries it.

A *route* is an ordered list of servers for a message: the relays (round robin, skipping one
that failed recently: failover), or the recipient domain's MX hosts in preference order
(``MXDelivery``, looked up through ``dns.Resolver``). The pool keeps idle connections per route
and reuses them, one message at a time per connection; a connection that broke (421, a drop, a
timeout) is closed and replaced by a new one on the next message.

Direct MX delivery connects to each MX host's addresses and checks the TLS certificate against
the MX host *name* (a :class:`Hop` carries both). When one MX host cannot be reached or its TLS
fails, the next one is tried; a host whose TLS failed is not asked again in the same run (its
messages would all meet the same certificate), and when no MX host of a domain offers usable
TLS the rows are ``deferred`` (the engine's decision), to be tried again by a later run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Sequence
from typing import NamedTuple

from .config import MXDelivery, SMTPConfig
from .dns import Resolver, default_resolver
from .transport import SMTPConnection, SMTPReply, TransportError

__all__ = ["TLS_REASONS", "Hop", "Pool", "Route", "Router"]

#: Reasons of a failed connection that are about the server's TLS (a certificate that does not
#: name the host, no STARTTLS offered, STARTTLS refused).
TLS_REASONS: frozenset[str] = frozenset({"tls_failed", "tls_unavailable", "tls_refused"})
# Seconds a relay that could not be reached is skipped while others work.
_RELAY_COOLDOWN = 30.0
_CLOSE_TIMEOUT = 2.0


class Hop(NamedTuple):
    """One server of a route: how to reach it, and the name its TLS certificate must carry
    (the MX host name; None for a relay, whose certificate is checked against its host)."""

    config: SMTPConfig
    server_name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """Servers to try for a message, best first; ``key`` groups connections that may be shared."""

    key: str
    hops: tuple[Hop, ...]


class Router:
    """Turns a recipient domain into a Route (or a failure reply when it has no mail server)."""

    def __init__(self, config: Sequence[SMTPConfig] | MXDelivery) -> None:
        if isinstance(config, MXDelivery):
            self.mx: MXDelivery | None = config
            self.relays: tuple[SMTPConfig, ...] = ()
            self.resolver: Resolver = config.resolver or default_resolver()
        else:
            self.mx = None
            self.relays = tuple(config)
            self.resolver = default_resolver()
        self._turn = itertools.count()
        self._down_until: dict[str, float] = {}
        self._routes: dict[str, Route | SMTPReply] = {}
        self._single = Route("relay", (Hop(self.relays[0]),)) if len(self.relays) == 1 else None

    @property
    def direct(self) -> bool:
        """True for direct delivery to MX hosts."""
        return self.mx is not None

    def relay_route(self) -> Route:
        """The relays, starting with the next one in turn and with the ones down last."""
        if self._single is not None:
            return self._single
        relays = self.relays
        start = next(self._turn) % len(relays)
        order = relays[start:] + relays[:start]
        now = time.monotonic()
        up = tuple(c for c in order if self._down_until.get(c.server, 0.0) <= now)
        down = tuple(c for c in order if c not in up)
        return Route("relay", tuple(Hop(c) for c in up + down))

    def mark_down(self, config: SMTPConfig) -> None:
        """Skip this relay for a while (others first)."""
        self._down_until[config.server] = time.monotonic() + _RELAY_COOLDOWN

    async def route(self, domain: str) -> Route | SMTPReply:
        """Where mail for ``domain`` goes, or why it cannot go anywhere."""
        if self.mx is None:
            return self.relay_route()
        cached = self._routes.get(domain)
        if cached is not None:
            return cached
        result = await self._mx_route(domain)
        if isinstance(result, Route) or result.kind == "permanent":
            self._routes[domain] = result  # a DNS timeout is asked again next time
        return result

    async def _mx_route(self, domain: str) -> Route | SMTPReply:
        assert self.mx is not None
        answer = await self.resolver.mx(domain)
        if answer.accepts_mail is None:
            return SMTPReply(None, None, f"DNS lookup failed for {domain}: {answer.detail}",
                             "transient", "dns_error", "connect")
        if not answer.accepts_mail:
            reason = "null_mx" if answer.status == "null_mx" else "domain_not_found"
            detail = answer.detail or f"The domain {domain} does not accept email."
            return SMTPReply(None, None, detail, "permanent", reason, "connect")
        hops: list[Hop] = []
        for host in answer.exchanges:
            for address in await self.resolver.addresses(host):
                # connect to the address, check the certificate against the MX host name
                hops.append(Hop(self.mx.config_for(address), host))
        if not hops:
            return SMTPReply(None, None, f"No address found for the MX hosts of {domain}.",
                             "transient", "dns_error", "connect")
        key = "mx:" + ",".join(answer.exchanges)
        return Route(key, tuple(hops))


class Pool:
    """Idle connections per route key; opens new ones on demand (one per worker at most)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._idle: dict[str, list[SMTPConnection]] = {}
        self._all: set[SMTPConnection] = set()
        self._closing: set[asyncio.Task[None]] = set()
        # MX hosts (address, certificate name) whose TLS failed in this run, with the failure
        self._tls_failed: dict[tuple[str, str | None], TransportError] = {}
        self.opened = 0

    async def acquire(self, route: Route) -> SMTPConnection | TransportError:
        """An open connection for ``route``: an idle one, or a new one (failing over along the
        route's servers). Returns a TransportError when no server could be reached (the last
        one; for MX hosts the last one not about TLS, if any); raises nothing else.

        Relays: a failure that concerns the account or its TLS ends the search (every relay
        of the campaign would be asked the same way). MX hosts: every host is tried in turn,
        except those whose TLS already failed in this run.
        """
        idle = self._idle.get(route.key)
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
            self._discard(conn)
        direct = self.router.direct
        failure: TransportError | None = None
        reachable: TransportError | None = None  # MX: the last failure not about TLS
        for config, server_name in route.hops:
            if direct:
                known = self._tls_failed.get((config.server, server_name))
                if known is not None:
                    failure = known
                    continue
            try:
                conn = await SMTPConnection.open(config, server_name=server_name)
            except TransportError as exc:
                failure = exc
                if direct:
                    if exc.reply.reason in TLS_REASONS:
                        self._tls_failed[(config.server, server_name)] = exc
                    else:
                        reachable = exc
                    continue  # the next MX host (RFC 5321 5.1)
                if exc.reply.stops_campaign:
                    return exc  # no point trying further: the account or TLS is at fault
                self.router.mark_down(config)
                continue
            self.opened += 1
            self._all.add(conn)
            return conn
        assert failure is not None
        # MX: a host that may come back (refused, timed out) makes the message worth a retry;
        # only when every host failed at TLS is the failure about TLS
        return reachable or failure

    def adopt(self, conn: SMTPConnection, key: str) -> None:
        """Take a connection opened elsewhere (the pre-flight check) as idle for ``key``."""
        self._all.add(conn)
        self.opened += 1
        self._idle.setdefault(key, []).append(conn)

    def release(self, conn: SMTPConnection, key: str) -> None:
        """Give a connection back after a message; a broken one is closed."""
        if conn.usable:
            self._idle.setdefault(key, []).append(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: SMTPConnection) -> None:
        self._all.discard(conn)
        task = asyncio.ensure_future(self._close(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(conn: SMTPConnection) -> None:
        try:
            await asyncio.wait_for(conn.close(), _CLOSE_TIMEOUT)
        except (TimeoutError, OSError):
            conn.abort()

    async def close(self) -> None:
        """Say QUIT on every connection (briefly) and close them."""
        conns = list(self._all)
        self._all.clear()
        self._idle.clear()
        await asyncio.gather(*(self._close(c) for c in conns), *self._closing,
                             return_exceptions=True)

    def abort(self) -> None:
        """Drop every connection at once (Ctrl-C)."""
        for conn in list(self._all):
            conn.abort()
        self._all.clear()
        self._idle.clear()
        for task in list(self._closing):
            task.cancel()
        self._closing.clear()
