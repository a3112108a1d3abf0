"""Async MX lookups with one shared cache and an injectable backend.

``Resolver.mx(domain)`` answers "where does mail for this domain go?" with the same verdicts as
email-validator's deliverability check: MX hosts in preference order; a null MX (RFC 7505) or a
domain without MX, A and AAAA records does not accept mail; "no MX but a globally reachable A /
AAAA record" falls back to the domain itself (RFC 5321 section 5) unless its SPF record is
``v=spf1 -all``; NXDOMAIN does not exist; a timeout or failing name servers leave it unknown.

Where the answers come from is a *backend*: :class:`DNSPythonBackend` asks the system's name
servers through dnspython; :class:`StaticBackend` answers from a dict (the Sandbox's simulated
world, or answers recorded once with :class:`RecordingBackend` and replayed in tests).

Example:
    >>> from smtpkit._portal import run
    >>> from smtpkit.dns import Resolver, StaticBackend
    >>> zone = {"example.com": {"MX": ["10 mx1.example.com.", "20 mx2.example.com."]},
    ...         "nullmx.example": {"MX": ["0 ."]}}
    >>> resolver = Resolver(backend=StaticBackend(zone))
    >>> answers = run(resolve_mx(["example.com", "nullmx.example", "nope.example"],
    ...                          resolver=resolver, progress=False))
    >>> [(d, a.status, a.exchanges) for d, a in answers.items()]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('example.com', 'ok', ('mx1.example.com', 'mx2.example.com')),
     ('nullmx.example', 'null_mx', ()), ('nope.example', 'nxdomain', ())]
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_DNS_TIMEOUT",
    "DNSPythonBackend",
    "DNSReply",
    "MXAnswer",
    "RecordingBackend",
    "Resolver",
    "StaticBackend",
    "default_resolver",
    "resolve_mx",
]

#: Seconds one lookup (all retries included) may take before the answer is "timeout".
DEFAULT_DNS_TIMEOUT = 5.0
#: Lookups in flight at once in one ``resolve_mx`` call.
DEFAULT_CONCURRENCY = 32
#: Seconds a cached answer stays fresh.
DEFAULT_CACHE_SECONDS = 3600.0
# A backend gets this much longer than ``timeout`` to report its own timeout before it is cut off.
_TIMEOUT_GRACE = 0.5

RecordType = Literal["MX", "A", "AAAA", "TXT"]
ReplyStatus = Literal["ok", "nxdomain", "noanswer", "timeout", "servfail"]
MXStatus = Literal[
    "ok", "a_fallback", "null_mx", "no_mail", "no_send", "nxdomain", "timeout", "error"
]


@dataclasses.dataclass(frozen=True)
class DNSReply:
    """One raw answer from a backend: a status and the records as presentation strings.

    MX records read ``"10 mx.example.com."``, A/AAAA records are addresses, TXT records are the
    joined strings (``"v=spf1 -all"``).
    """

    status: ReplyStatus
    records: tuple[str, ...] = ()
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class MXAnswer:
    """Where mail for one domain goes, and whether it is accepted at all.

    ``status``:
        ``ok`` MX hosts found; ``a_fallback`` no MX, the domain's own A/AAAA is used;
        ``null_mx`` the domain says it accepts no mail (RFC 7505); ``no_mail`` no MX/A/AAAA;
        ``no_send`` no MX and SPF ``v=spf1 -all``; ``nxdomain`` the domain does not exist;
        ``timeout`` / ``error`` the name servers did not answer (deliverability unknown).
    ``hosts``: ``(preference, host)`` pairs in preference order (``(0, domain)`` on fallback).
    """

    domain: str
    status: MXStatus
    hosts: tuple[tuple[int, str], ...] = ()
    detail: str = ""

    @property
    def accepts_mail(self) -> bool | None:
        """True / False when the DNS says so; None when it could not be asked (timeout, error)."""
        if self.status in ("ok", "a_fallback"):
            return True
        if self.status in ("timeout", "error"):
            return None
        return False

    @property
    def exchanges(self) -> tuple[str, ...]:
        """The host names to try, best first."""
        return tuple(host for _, host in self.hosts)


class Backend(Protocol):
    """Answers one DNS question; never raises for DNS-level failures (they are statuses)."""

    async def query(self, name: str, rdtype: RecordType, /, *, timeout: float) -> DNSReply: ...  # noqa: ASYNC109


class DNSPythonBackend:
    """Ask the system's name servers through dnspython's async resolver."""

    def __init__(self, *, nameservers: Iterable[Any] | None = None) -> None:
        """``nameservers``: addresses, or ``dns.nameserver.Nameserver`` objects (for a port);
        default: the system's (``/etc/resolv.conf``)."""
        self._nameservers = list(nameservers) if nameservers is not None else None
        self._resolver: Any = None

    async def query(  # a backend enforces its own DNS timeout
        self, name: str, rdtype: RecordType, /, *, timeout: float  # noqa: ASYNC109
    ) -> DNSReply:
        import dns.asyncresolver
        import dns.exception
        import dns.resolver

        if self._resolver is None:
            # With explicit name servers the system configuration is neither needed nor read
            # (a machine without /etc/resolv.conf would otherwise fail here).
            resolver = dns.asyncresolver.Resolver(configure=self._nameservers is None)
            if self._nameservers is not None:
                resolver.nameservers = self._nameservers
            self._resolver = resolver
        try:
            answer = await self._resolver.resolve(name, rdtype, lifetime=timeout)
        except dns.resolver.NXDOMAIN:
            return DNSReply("nxdomain")
        except dns.resolver.NoAnswer:
            return DNSReply("noanswer")
        except dns.resolver.NoNameservers as exc:
            return DNSReply("servfail", detail=str(exc))
        except dns.exception.Timeout:
            return DNSReply("timeout", detail=f"no answer within {timeout:g} s")
        except dns.exception.DNSException as exc:
            return DNSReply("servfail", detail=str(exc))
        records: list[str] = []
        for rr in answer:
            if rdtype == "MX":
                records.append(f"{rr.preference} {rr.exchange}")
            elif rdtype == "TXT":
                records.append(b"".join(rr.strings).decode("utf-8", "replace"))
            else:
                records.append(rr.address)
        return DNSReply("ok", tuple(records))


class StaticBackend:
    """Answer from a dict: ``{domain: {"MX": [...], "A": [...], "AAAA": [...], "TXT": [...]}}``.

    A domain missing from the dict is NXDOMAIN; a present domain without the asked type is
    "no answer". A value may instead be the string ``"timeout"`` or ``"servfail"`` to simulate a
    failing name server for that domain. Names are compared case-insensitively, without the
    trailing dot.
    """

    def __init__(self, zone: Mapping[str, Mapping[str, Iterable[str]] | str], /) -> None:
        self._zone: dict[str, Mapping[str, Iterable[str]] | str] = {
            _key(name): records for name, records in zone.items()
        }

    @classmethod
    def from_json(cls, path: str | os.PathLike[str], /) -> StaticBackend:
        """Replay answers recorded by :class:`RecordingBackend`."""
        with open(path, encoding="utf-8") as fh:
            return cls(json.load(fh))

    async def query(  # a backend enforces its own DNS timeout
        self, name: str, rdtype: RecordType, /, *, timeout: float  # noqa: ASYNC109
    ) -> DNSReply:
        entry = self._zone.get(_key(name))
        if entry is None:
            return DNSReply("nxdomain")
        if entry == "timeout":
            return DNSReply("timeout", detail=f"no answer within {timeout:g} s")
        if entry == "servfail":
            return DNSReply("servfail", detail="all name servers failed to answer")
        assert not isinstance(entry, str)
        records = tuple(entry.get(rdtype, ()))
        return DNSReply("ok", records) if records else DNSReply("noanswer")


class RecordingBackend:
    """Pass queries to another backend and keep the answers, to replay them later offline.

    Example (records the public DNS once, by hand, never in tests):
        recorder = RecordingBackend(DNSPythonBackend())
        await resolve_mx(domains, resolver=Resolver(backend=recorder))
        recorder.save("tests/data/dns_answers.json")
    """

    def __init__(self, inner: Backend, /) -> None:
        self._inner = inner
        self.zone: dict[str, dict[str, list[str]] | str] = {}

    async def query(  # a backend enforces its own DNS timeout
        self, name: str, rdtype: RecordType, /, *, timeout: float  # noqa: ASYNC109
    ) -> DNSReply:
        reply = await self._inner.query(name, rdtype, timeout=timeout)
        key = _key(name)
        # An absent name replays as NXDOMAIN, so that status needs no entry.
        if reply.status in ("timeout", "servfail"):
            self.zone[key] = reply.status
        elif reply.status in ("ok", "noanswer"):
            entry = self.zone.setdefault(key, {})
            if isinstance(entry, dict) and reply.records:
                entry[rdtype] = list(reply.records)
        return reply

    def save(self, path: str | os.PathLike[str], /) -> None:
        """Write the recorded zone as JSON, readable by :meth:`StaticBackend.from_json`."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.zone, fh, indent=1, sort_keys=True)


def _key(name: str) -> str:
    return name.rstrip(".").lower()


def _is_global(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


class Resolver:
    """MX/A lookups with a cache shared by every call that uses this resolver.

    Parameters:
        backend: where answers come from (default: the system's name servers via dnspython).
        timeout: seconds per lookup before the answer is ``timeout``.
        cache_seconds: how long an answer is reused.

    Example:
        >>> from smtpkit._portal import run
        >>> r = Resolver(backend=StaticBackend({"example.com": {"MX": ["5 mx.example.com."]}}))
        >>> run(r.mx("Example.COM")).hosts
        ((5, 'mx.example.com'),)
    """

    def __init__(
        self,
        *,
        backend: Backend | None = None,
        timeout: float = DEFAULT_DNS_TIMEOUT,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> None:
        self.backend: Backend = backend if backend is not None else DNSPythonBackend()
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, MXAnswer]] = {}
        self._address_cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        # In-flight lookups per event loop, so concurrent callers share one query.
        self._inflight: dict[tuple[int, str], asyncio.Future[MXAnswer]] = {}

    def cached(self, domain: str, /) -> MXAnswer | None:
        """The cached answer for ``domain`` if it is still fresh, else None (no lookup)."""
        hit = self._cache.get(_key(domain))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def clear(self) -> None:
        """Forget every cached answer."""
        self._cache.clear()
        self._address_cache.clear()

    async def mx(self, domain: str, /) -> MXAnswer:
        """Where mail for ``domain`` (ASCII / IDNA form) goes; cached, one query per domain."""
        key = _key(domain)
        hit = self.cached(key)
        if hit is not None:
            return hit
        loop_key = (id(asyncio.get_running_loop()), key)
        pending = self._inflight.get(loop_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[MXAnswer] = asyncio.get_running_loop().create_future()
        self._inflight[loop_key] = future
        try:
            answer = await self._lookup(key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(answer)
            if answer.status not in ("timeout", "error"):
                self._cache[key] = (time.monotonic() + self.cache_seconds, answer)
            return answer
        finally:
            del self._inflight[loop_key]

    async def addresses(self, host: str, /) -> tuple[str, ...]:
        """Addresses to connect to for an MX host name.

        With the dnspython backend this returns the name itself, leaving the address lookup to
        the operating system at connect time (so TLS checks the certificate against the name).
        Other backends answer from their A/AAAA records; an empty tuple means "cannot reach".
        """
        if isinstance(self.backend, DNSPythonBackend):
            return (host,)
        key = _key(host)
        hit = self._address_cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            reply = await self._ask(key, rdtype)
            if reply.status == "ok":
                found.extend(reply.records)
        result = tuple(found)
        self._address_cache[key] = (time.monotonic() + self.cache_seconds, result)
        return result

    async def _ask(self, name: str, rdtype: RecordType) -> DNSReply:
        """One backend question, bounded by ``timeout`` even when the backend is not."""
        try:
            return await asyncio.wait_for(
                self.backend.query(name, rdtype, timeout=self.timeout),
                timeout=self.timeout + _TIMEOUT_GRACE,
            )
        except TimeoutError:
            return DNSReply("timeout", detail=f"no answer within {self.timeout:g} s")

    async def _lookup(self, domain: str) -> MXAnswer:
        q = self._ask
        mx = await q(domain, "MX")
        if mx.status == "nxdomain":
            return MXAnswer(domain, "nxdomain", detail=f"The domain name {domain} does not exist.")
        if mx.status == "timeout":
            return MXAnswer(domain, "timeout", detail=mx.detail or "DNS timeout")
        if mx.status == "servfail":
            return MXAnswer(domain, "error", detail=mx.detail or "name servers failed")
        if mx.status == "ok":
            hosts = sorted(_parse_mx(r) for r in mx.records)
            usable = tuple((pref, host) for pref, host in hosts if host != "")
            if not usable:
                return MXAnswer(
                    domain, "null_mx", detail=f"The domain name {domain} does not accept email."
                )
            return MXAnswer(domain, "ok", usable)
        # No MX record: fall back to a globally reachable A, then AAAA (RFC 5321 section 5).
        for rdtype in ("A", "AAAA"):
            reply = await q(domain, rdtype)
            if reply.status == "timeout":
                return MXAnswer(domain, "timeout", detail=reply.detail or "DNS timeout")
            if reply.status == "servfail":
                return MXAnswer(domain, "error", detail=reply.detail or "name servers failed")
            if reply.status == "ok" and any(_is_global(a) for a in reply.records):
                break
        else:
            return MXAnswer(
                domain, "no_mail", detail=f"The domain name {domain} does not accept email."
            )
        txt = await q(domain, "TXT")
        if txt.status == "ok" and any(r == "v=spf1 -all" for r in txt.records):
            return MXAnswer(
                domain, "no_send", detail=f"The domain name {domain} does not send email."
            )
        return MXAnswer(domain, "a_fallback", ((0, domain),))


def _parse_mx(record: str) -> tuple[int, str]:
    preference, _, exchange = record.strip().partition(" ")
    return int(preference), exchange.strip().rstrip(".").lower()


_default: Resolver | None = None


def default_resolver() -> Resolver:
    """The process-wide resolver (public DNS through dnspython), created on first use."""
    global _default
    if _default is None:
        _default = Resolver()
    return _default


async def resolve_mx(
    domains: Iterable[str],
    /,
    *,
    resolver: Resolver | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool = True,
) -> dict[str, MXAnswer]:
    """Look up every distinct domain once, ``concurrency`` at a time; answers in input order.

    A ``tqdm.auto`` bar is shown when ``progress`` is true and there are more than 50 domains.
    """
    resolver = resolver if resolver is not None else default_resolver()
    unique = list(dict.fromkeys(_key(d) for d in domains))
    limit = asyncio.Semaphore(max(1, concurrency))
    bar = None
    if progress and len(unique) > 50:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(unique), desc="MX lookups", unit="domain")

    async def one(domain: str) -> MXAnswer:
        async with limit:
            answer = await resolver.mx(domain)
        if bar is not None:
            bar.update(1)
        return answer

    try:
        answers = await asyncio.gather(*(one(d) for d in unique))
    finally:
        if bar is not None:
            bar.close()
    return dict(zip(unique, answers, strict=True))
