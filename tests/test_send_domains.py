"""The send engine and slow domains: one throttled domain must not hold up the others, a 421
"too many messages on this connection" means reconnect (not slow down), and the hourly cap
counts earlier runs. Real SMTP against the Sandbox on 127.0.0.1; assertions are on the order
of events the Sandbox and the journal recorded, never on wall-clock thresholds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import smtpkit
from smtpkit.sandbox import Domain, Sandbox, World
from smtpkit.send import Limit, RetryPolicy, send

TEMPLATE = smtpkit.Template(subject="Hello {first_name}", text="Hi {first_name}, news inside.",
                            sender="Shop News <news@shop.example>")
FAST = RetryPolicy(attempts=5, backoff=0.2, factor=1.5, jitter=0.0)


def mixed(slow: int, other: int, *, slow_domain: str = "slow.example",
          every: int = 2) -> pd.DataFrame:
    """``slow`` rows to ``slow_domain`` spread evenly through ``other`` rows to two other
    domains (one in ``every`` rows is slow while both kinds last)."""
    addresses: list[str] = []
    s = o = 0
    while s < slow or o < other:
        if s < slow and (o >= other or len(addresses) % every == 0):
            addresses.append(f"s{s}@{slow_domain}")
            s += 1
        else:
            addresses.append(f"o{o}@example.{'org' if o % 2 else 'net'}")
            o += 1
    return pd.DataFrame({"email": addresses,
                         "first_name": [f"N{i}" for i in range(len(addresses))]})


def _deliveries_by_kind(box: Sandbox, slow_domain: str) -> tuple[pd.Series, pd.Series]:
    deliveries = box.deliveries().sort_values("received_at")
    is_slow = deliveries["domain"] == slow_domain
    return deliveries.loc[is_slow, "received_at"], deliveries.loc[~is_slow, "received_at"]


@pytest.mark.parametrize(
    ("world", "per_domain"),
    [
        pytest.param(World(domains={"slow.example": Domain(max_per_window=10,
                                                           window_seconds=0.5)}),
                     None, id="server-throttles-452"),
        pytest.param(World(), {"slow.example": Limit(per_second=30)}, id="per-domain-pace"),
        pytest.param(World(domains={"slow.example": Domain(latency_ms=40)}),
                     {"slow.example": Limit(concurrency=1)}, id="one-connection-slow-server"),
    ],
)
def test_a_slow_domain_does_not_hold_up_the_others(tmp_path: Path, world: World,
                                                   per_domain: dict[str, Limit] | None) -> None:
    frame = mixed(slow=60, other=120)
    with Sandbox(world, tls=False) as box:
        result = send(frame, TEMPLATE, box.config, campaign="mixed", journal=tmp_path / "j.db",
                      concurrency=2, per_domain=per_domain, retries=FAST, progress=False)
        slow, others = _deliveries_by_kind(box, "slow.example")
    assert (result["status"] == "sent").all()
    assert len(slow) == 60 and len(others) == 120
    # the other domains are not limited at all: most of their messages go through before
    # the slow domain has a quarter of its own, and all before it has half. (Before the
    # change they waited behind a buffer full of messages for the slow domain.)
    assert others.median() < slow.quantile(0.25)
    assert others.max() < slow.quantile(0.5)


def test_421_after_some_messages_per_connection_reconnects_without_slowing_down(
        tmp_path: Path) -> None:
    # the server says 421 ("too many messages on one connection; closing") to the 4th message
    # to capped.example on any connection: a new connection takes the next 3
    world = World(domains={"capped.example": Domain(max_per_connection=3)})
    frame = pd.DataFrame({"email": [f"u{i}@{'capped.example' if i % 2 == 0 else 'example.net'}"
                                    for i in range(60)]})
    frame["first_name"] = "N"
    journal = tmp_path / "j.db"
    with Sandbox(world, tls=False) as box:
        # one attempt only: reconnecting after such a 421 must not use it up
        result = send(frame, TEMPLATE, box.config, campaign="cap", journal=journal,
                      concurrency=1, retries=RetryPolicy(attempts=1, backoff=30.0),
                      progress=False)
        deliveries = box.deliveries().sort_values("received_at")
        events = box.events()
    assert (result["status"] == "sent").all()
    assert (deliveries["delivery_count"] == 1).all()
    capped = deliveries[deliveries["domain"] == "capped.example"]
    assert capped.groupby("connection_id").size().max() == 3
    attempts = smtpkit.attempts(journal, "cap")
    refused = attempts[attempts["smtp_code"] == 421]
    assert len(refused) == (events["event"] == "throttled_connection").sum() >= 9
    assert set(refused["reason"]) == {"connection_closed"}
    assert set(refused["status"]) == {"deferred"}
    # not slowed down: with one connection, the domains keep taking turns message by message
    # (after a throttling reply capped.example would pause while example.net ran on ahead)
    domains = deliveries["domain"].tolist()
    longest = max(len(run) for run in "".join(
        "c" if d == "capped.example" else "n" for d in domains).replace("c", " ").split())
    assert longest <= 2


def test_421_on_every_new_connection_slows_the_domain_down(tmp_path: Path) -> None:
    from test_send_servers import ScriptedHandler, SMTPServer

    closing = "421 4.3.2 Service shutting down, closing transmission channel"
    # a@closing.example's first try meets a 421 on a connection that had carried nothing yet:
    # reconnecting would not help, so its domain waits (as after a throttling reply) while the
    # other domain goes on
    handler = ScriptedHandler({"a@closing.example": [closing, closing, None]}, pipelining=True)
    frame = pd.DataFrame({"email": ["a@closing.example"] + [f"u{i}@example.net"
                                                            for i in range(20)]})
    frame["first_name"] = "N"
    journal = tmp_path / "j.db"
    with SMTPServer(handler) as server:
        result = send(frame, TEMPLATE, server.config(), campaign="closing", journal=journal,
                      concurrency=1, retries=RetryPolicy(attempts=1), progress=False)
    assert (result["status"] == "sent").all()
    attempts = smtpkit.attempts(journal, "closing").loc[0]
    assert attempts["reason"].tolist() == ["connection_closed", "connection_closed", "accepted"]
    # slowed down, not retried at once: every other message went out before it
    order = [r for d in handler.deliveries for r in d.rcpt_tos]
    assert order[-1] == "a@closing.example" and len(order) == 21


def test_rows_set_aside_for_a_held_back_domain_keep_their_order(tmp_path: Path) -> None:
    # slow.example takes one message at a time, at most 100/s: most of its rows wait unrendered
    # (parked) while the others go, and are rendered when their turn comes
    frame = mixed(slow=100, other=100)
    bad = frame.index[frame["email"] == "s90@slow.example"][0]
    frame.loc[bad, "first_name"] = None  # cannot be rendered: found out when its turn comes
    with Sandbox(tls=False) as box:
        result = send(frame, TEMPLATE, box.config, campaign="park", journal=tmp_path / "j.db",
                      concurrency=2, retries=FAST, progress=False,
                      per_domain={"slow.example": Limit(per_second=100, concurrency=1)})
        slow, others = _deliveries_by_kind(box, "slow.example")
        order = box.deliveries().sort_values("received_at")["recipient"]
    assert tuple(result.loc[bad, ["status", "reason"]]) == ("failed", "missing_field")
    assert (result.drop(index=bad)["status"] == "sent").all()
    assert order[order.str.endswith("@slow.example")].tolist() == [
        f"s{i}@slow.example" for i in range(100) if i != 90]
    assert others.max() < slow.quantile(0.5)
    assert smtpkit.outcomes(tmp_path / "j.db", "park")["status"].value_counts().to_dict() == {
        "sent": 199, "failed": 1}


def test_a_stopped_campaign_mails_its_summary_and_still_raises(tmp_path: Path) -> None:
    from smtpkit.errors import CampaignAborted
    from smtpkit.send import CircuitBreaker

    world = World(domains={"example.com": Domain(user_unknown=1.0)})  # every row fails
    frame = pd.DataFrame({"email": [f"u{i}@example.com" for i in range(60)],
                          "first_name": "N"})
    with Sandbox(world, tls=False) as box:
        with pytest.raises(CampaignAborted, match="circuit breaker stopped") as caught:
            send(frame, TEMPLATE, box.config, campaign="stop", journal=tmp_path / "j.db",
                 concurrency=2, retries=FAST, progress=False, notify="ops@example.net",
                 breaker=CircuitBreaker(window=10, min_attempts=10, max_error_rate=0.5))
        summaries = box.messages("ops@example.net")
    assert len(summaries) == 1
    tried = len(smtpkit.outcomes(tmp_path / "j.db", "stop"))
    assert 10 <= tried < 60
    assert str(summaries[0]["Subject"]) == "smtpkit campaign stop: stopped early, 60 rows not sent"
    body = summaries[0].get_body().get_content()
    assert str(caught.value) in body
    assert f"failed     {tried:>9,}" in body and f"not tried  {60 - tried:>9,}" in body
    assert f"failed, user_unknown, 550: {tried}" in body


def test_a_summary_that_cannot_be_mailed_does_not_hide_why_the_campaign_stopped(
        tmp_path: Path) -> None:
    from test_send_servers import RawServer, greeting_only

    from smtpkit.config import SMTPConfig
    from smtpkit.errors import CampaignAborted

    frame = pd.DataFrame({"email": ["a@example.com"], "first_name": "N"})
    with RawServer(greeting_only(b"554 5.7.1 mx.test does not accept mail from you")) as server:
        config = SMTPConfig(server.host, server.port, tls="none", timeout=2)
        with pytest.raises(CampaignAborted, match="did not start"), \
                pytest.warns(RuntimeWarning, match="summary could not be mailed"):
            send(frame, TEMPLATE, config, campaign="x", journal=tmp_path / "j.db",
                 progress=False, notify="ops@example.net")


@pytest.mark.parametrize(
    "cap",
    [
        pytest.param({"rate": Limit(per_hour=10)}, id="campaign-rate"),
        pytest.param({"per_domain": {"example.com": Limit(per_hour=10)}}, id="per-domain"),
    ],
)
async def test_the_hourly_cap_counts_attempts_of_earlier_runs(
        tmp_path: Path, cap: dict[str, object]) -> None:
    import asyncio

    from smtpkit.sandbox import Rule

    # run 1 (no cap): 8 attempts, 3 of them deferred (tried once, refused for now)
    world = World(addresses={f"u{i}@example.com": Rule("tempfail", times=1) for i in (1, 4, 6)})
    frame = pd.DataFrame({"email": [f"u{i}@example.com" for i in range(8)], "first_name": "N"})
    journal = tmp_path / "j.db"
    with Sandbox(world, tls=False) as box:
        first = await smtpkit.asend(frame, TEMPLATE, box.config, campaign="hourly",
                                    journal=journal, retries=RetryPolicy(attempts=1),
                                    progress=False)
        assert first["status"].value_counts().to_dict() == {"sent": 5, "deferred": 3}
        # run 2, at most 10 attempts an hour: only 2 more may go now, the third waits
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                smtpkit.asend(frame, TEMPLATE, box.config, campaign="hourly", journal=journal,
                              retries=RetryPolicy(attempts=1), progress=False, **cap),
                timeout=2.0)
        delivered = box.deliveries()
    attempts = smtpkit.attempts(journal, "hourly")
    assert len(attempts) == 10
    assert len(delivered) == 7
    assert (smtpkit.outcomes(journal, "hourly")["status"] == "deferred").sum() == 1


async def test_throttling_doubles_the_spacing_and_a_few_accepted_messages_undo_it() -> None:
    from smtpkit._send_sched import Item, Scheduler
    from smtpkit.journal import RecipientRecord

    now = [0.0]
    items = [Item(RecipientRecord(i, str(i), f"u{i}@slow.example", f"u{i}@slow.example"),
                  "slow.example", f"u{i}@slow.example", "s@shop.example", b"x", False)
             for i in range(3)]

    class Rows:  # the scheduler's source interface over ready items
        def __init__(self) -> None:
            self.i = 0

        def peek(self) -> str | None:
            return items[self.i].domain if self.i < len(items) else None

        def take(self) -> Item:
            self.i += 1
            return items[self.i - 1]

        def skip(self) -> int:
            self.i += 1
            return self.i - 1

        def render(self, positions: object) -> list[Item]:
            return [items[p] for p in positions]  # type: ignore[attr-defined]

    scheduler = Scheduler(Rows(), pace=None, limits=lambda domain: (None, None), buffer=8,
                          clock=lambda: now[0])
    spacing = []
    # the engine's turn for each reply: take the message, record the reply, hand it back
    for at in (0.0, 0.3, 0.9, 2.0, 4.1):
        now[0] = at
        item = scheduler.try_get()
        assert item is items[0]  # the throttled message goes first again
        spacing.append(scheduler.throttle(item))
        scheduler.done(item)
        now[0] = at + 0.1
        assert scheduler.try_get() is None  # the domain waits; the others' turn
    assert spacing == [0.25, 0.5, 1.0, 2.0, 4.0]
    now[0] = 8.2
    accepted = [scheduler.try_get()]
    assert accepted[0] is items[0]
    scheduler.succeeded("slow.example")
    scheduler.done(items[0])
    # 1/4 msg/s + 2 per accepted message: the next may go 0.44 s later, not 4 s later
    now[0] = 8.2 + 0.45
    accepted.append(scheduler.try_get())
    scheduler.succeeded("slow.example")
    now[0] += 0.25
    accepted.append(scheduler.try_get())
    assert accepted == items
