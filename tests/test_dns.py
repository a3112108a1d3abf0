"""smtpkit.dns: MX verdicts, cache, concurrency, timeouts, record/replay, and dnspython on loopback.

Answers come from ``tests/data/dns_answers.json`` (RecordingBackend's format, written by hand:
public DNS is never asked in tests) and, for ``DNSPythonBackend``, from a small DNS server on
127.0.0.1 built with dnspython's own message code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from smtpkit.dns import (
    DNSPythonBackend,
    DNSReply,
    MXAnswer,
    RecordingBackend,
    Resolver,
    StaticBackend,
    resolve_mx,
)

ZONE_FILE = Path(__file__).parent / "data" / "dns_answers.json"


def replay(**options: Any) -> Resolver:
    return Resolver(backend=StaticBackend.from_json(ZONE_FILE), **options)


MX_CASES = [
    pytest.param("example.com", "ok", ((10, "mx1.example.com"), (20, "mx2.example.com")), True,
                 id="mx-in-preference-order"),
    pytest.param("EXAMPLE.com.", "ok", ((10, "mx1.example.com"), (20, "mx2.example.com")), True,
                 id="case-and-trailing-dot"),
    pytest.param("a-only.example", "a_fallback", ((0, "a-only.example"),), True,
                 id="no-mx-global-a"),
    pytest.param("aaaa-only.example", "a_fallback", ((0, "aaaa-only.example"),), True,
                 id="no-mx-global-aaaa"),
    pytest.param("private-a.example", "no_mail", (), False, id="only-private-addresses"),
    pytest.param("nothing.example", "no_mail", (), False, id="no-mx-a-aaaa"),
    pytest.param("spf-reject.example", "no_send", (), False, id="no-mx-spf-reject-all"),
    pytest.param("nullmx.example", "null_mx", (), False, id="null-mx-rfc7505"),
    pytest.param("missing.example", "nxdomain", (), False, id="nxdomain"),
    pytest.param("slow.example", "timeout", (), None, id="timeout"),
    pytest.param("broken.example", "error", (), None, id="servfail"),
]


@pytest.mark.parametrize(("domain", "status", "hosts", "accepts"), MX_CASES)
async def test_mx_verdicts(domain: str, status: str, hosts: tuple[Any, ...], accepts: Any) -> None:
    answer = await replay().mx(domain)
    assert (answer.status, answer.hosts, answer.accepts_mail) == (status, hosts, accepts)
    assert answer.exchanges == tuple(h for _, h in hosts)
    if accepts is False:
        assert answer.detail.startswith("The domain name ")


class Counting(StaticBackend):
    """The replayed zone, counting questions and the most asked at once; optionally slow."""

    def __init__(self, zone: dict[str, Any], delay: float = 0.0) -> None:
        super().__init__(zone)
        self.delay = delay
        self.asked: list[tuple[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def query(self, name: str, rdtype: Any, /, *, timeout: float) -> DNSReply:  # noqa: ASYNC109
        self.asked.append((name, rdtype))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return await super().query(name, rdtype, timeout=timeout)
        finally:
            self.in_flight -= 1


def zone() -> dict[str, Any]:
    return json.loads(ZONE_FILE.read_text(encoding="utf-8"))


async def test_cache_is_shared_and_failures_are_not_cached() -> None:
    backend = Counting(zone())
    resolver = Resolver(backend=backend)
    assert resolver.cached("example.com") is None
    first = await resolver.mx("example.com")
    assert await resolver.mx("Example.COM") is first
    assert resolver.cached("example.com") is first
    assert backend.asked == [("example.com", "MX")]
    await resolver.mx("slow.example")
    await resolver.mx("slow.example")
    assert backend.asked.count(("slow.example", "MX")) == 2  # a timeout is asked again
    resolver.clear()
    await resolver.mx("example.com")
    assert backend.asked.count(("example.com", "MX")) == 2


async def test_cache_expires() -> None:
    backend = Counting(zone())
    resolver = Resolver(backend=backend, cache_seconds=0.0)
    await resolver.mx("example.com")
    await resolver.mx("example.com")
    assert backend.asked.count(("example.com", "MX")) == 2


async def test_concurrent_callers_share_one_question() -> None:
    backend = Counting(zone(), delay=0.05)
    resolver = Resolver(backend=backend)
    answers = await asyncio.gather(*(resolver.mx("example.com") for _ in range(10)))
    assert len({id(a) for a in answers}) == 1
    assert backend.asked == [("example.com", "MX")]


async def test_resolve_mx_bounds_concurrency_and_keeps_order() -> None:
    names = [f"host{i}.example" for i in range(20)]
    backend = Counting({name: {"MX": [f"10 mx.{name}."]} for name in names}, delay=0.01)
    answers = await resolve_mx(
        [*names, "HOST0.example"], resolver=Resolver(backend=backend), concurrency=3,
        progress=False,
    )
    assert list(answers) == names  # distinct, lower-cased, in input order
    assert backend.most_in_flight == 3
    assert all(a.status == "ok" for a in answers.values())


async def test_resolve_mx_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    names = [f"host{i}.example" for i in range(60)]
    backend = StaticBackend({name: {"MX": ["10 mx.example."]} for name in names})
    await resolve_mx(names, resolver=Resolver(backend=backend), progress=True)
    assert "MX lookups" in capsys.readouterr().err


class Hanging:
    """A backend that never answers (a broken custom backend)."""

    async def query(self, name: str, rdtype: Any, /, *, timeout: float) -> DNSReply:  # noqa: ASYNC109
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_a_hanging_backend_is_cut_off_at_the_timeout() -> None:
    resolver = Resolver(backend=Hanging(), timeout=0.05)
    answer = await asyncio.wait_for(resolver.mx("example.com"), timeout=5)
    assert answer.status == "timeout" and answer.accepts_mail is None


async def test_addresses_of_mx_hosts() -> None:
    resolver = replay()
    assert await resolver.addresses("mx1.example.com") == ("192.0.2.10", "2001:db8::10")
    assert await resolver.addresses("missing.example") == ()
    assert await Resolver(backend=DNSPythonBackend()).addresses("mx.example") == ("mx.example",)


async def test_record_then_replay(tmp_path: Path) -> None:
    recorder = RecordingBackend(StaticBackend.from_json(ZONE_FILE))
    domains = ["example.com", "a-only.example", "nullmx.example", "spf-reject.example",
               "missing.example", "slow.example", "broken.example", "private-a.example"]
    live = await resolve_mx(domains, resolver=Resolver(backend=recorder), progress=False)
    path = tmp_path / "recorded.json"
    recorder.save(path)
    replayed = await resolve_mx(domains, resolver=Resolver(backend=StaticBackend.from_json(path)),
                                progress=False)
    assert {d: (a.status, a.hosts) for d, a in replayed.items()} == {
        d: (a.status, a.hosts) for d, a in live.items()
    }
    assert "missing.example" not in json.loads(path.read_text(encoding="utf-8"))


def test_mx_answer_properties() -> None:
    answer = MXAnswer("x.example", "ok", ((5, "a.x.example"), (10, "b.x.example")))
    assert answer.exchanges == ("a.x.example", "b.x.example") and answer.accepts_mail is True


# --- dnspython against a real DNS server on loopback ------------------------------------------


class _LoopbackDNS(asyncio.DatagramProtocol):
    """Answers from a zone dict: MX/A/TXT records, NXDOMAIN, SERVFAIL, or silence."""

    def __init__(self, records: dict[str, Any]) -> None:
        self.records = records
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        entry = self.records.get(name)
        if entry == "silent":
            return
        response = dns.message.make_response(query)
        if entry is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif entry == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        else:
            rdtype = dns.rdatatype.to_text(question.rdtype)
            values = entry.get(rdtype, [])
            if values:
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 60, "IN", rdtype, values)
                )
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def loopback_dns() -> AsyncIterator[DNSPythonBackend]:
    import dns.nameserver

    records = {
        "example.com": {"MX": ["10 mx1.example.com.", "20 mx2.example.com."]},
        "a-only.example": {"A": ["93.184.215.14"]},
        "spf.example": {"A": ["93.184.215.14"], "TXT": ['"v=spf1 -all"']},
        "broken.example": "servfail",
        "silent.example": "silent",
    }
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _LoopbackDNS(records), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        yield DNSPythonBackend(nameservers=[dns.nameserver.Do53Nameserver("127.0.0.1", port)])
    finally:
        transport.close()


@pytest.mark.timeout(30)
async def test_dnspython_backend_over_loopback(loopback_dns: DNSPythonBackend) -> None:
    resolver = Resolver(backend=loopback_dns, timeout=1.0)
    answers = await resolve_mx(
        ["example.com", "a-only.example", "spf.example", "missing.example", "broken.example",
         "silent.example"],
        resolver=resolver,
        progress=False,
    )
    assert {d: a.status for d, a in answers.items()} == {
        "example.com": "ok",
        "a-only.example": "a_fallback",
        "spf.example": "no_send",
        "missing.example": "nxdomain",
        "broken.example": "error",
        "silent.example": "timeout",
    }
    assert answers["example.com"].exchanges == ("mx1.example.com", "mx2.example.com")
