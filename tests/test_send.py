"""The send engine against the Sandbox (real SMTP on 127.0.0.1): the issue's reliability list."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import smtpkit
from smtpkit.config import SMTPConfig
from smtpkit.errors import (
    CampaignAborted,
    ConfigError,
    InputError,
    JournalError,
    MissingColumnError,
)
from smtpkit.outcomes import OUTCOME_COLUMNS
from smtpkit.sandbox import Domain, Rule, Sandbox, World
from smtpkit.send import CircuitBreaker, Limit, RetryPolicy, send

FAST = RetryPolicy(attempts=5, backoff=0.2, factor=1.5, jitter=0.0)
TEMPLATE = smtpkit.Template(subject="Hello {first_name}", text="Hi {first_name}, news inside.",
                            sender="Shop News <news@shop.example>")


def contacts(*addresses: str) -> pd.DataFrame:
    return pd.DataFrame({
        "email": list(addresses),
        "first_name": [f"Name{i}" for i in range(len(addresses))],
    }, index=pd.Index([f"row{i}" for i in range(len(addresses))], name="contact"))


def many(n: int, domain: str = "example.com") -> pd.DataFrame:
    return contacts(*(f"user{i}@{domain}" for i in range(n)))


def run(frame: pd.DataFrame, config: object, journal: Path | None, **options: object
        ) -> pd.DataFrame:
    options.setdefault("campaign", "spring")
    options.setdefault("progress", False)
    options.setdefault("retries", FAST)
    return send(frame, TEMPLATE, config, journal=journal, **options)  # type: ignore[arg-type]


def delivered(box: Sandbox) -> dict[str, int]:
    frame = box.deliveries()
    return frame.groupby("recipient")["delivery_count"].max().astype(int).to_dict()


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


def test_all_sent_once_with_the_outcome_frame(journal: Path) -> None:
    frame = many(30)
    with Sandbox(tls=True) as box:
        result = run(frame, box.config, journal)
        deliveries = box.deliveries()
        server = box.config.server
    assert list(result.columns) == list(OUTCOME_COLUMNS)
    assert result.index.equals(frame.index)
    assert (result["status"] == "sent").all() and (result["smtp_code"] == 250).all()
    assert result["envelope_sender"].str.fullmatch(r"bounces\+[0-9a-f]{16}@shop\.example").all()
    assert result["envelope_sender"].is_unique
    assert (result["server"] == server).all() and server.startswith("127.0.0.1:")
    assert (result["attempts"] == 1).all() and result["latency_ms"].notna().all()
    assert len(deliveries) == 30 and deliveries["tls"].all()
    assert (deliveries["delivery_count"] == 1).all()
    # the journal holds the same, readable from anywhere
    back = smtpkit.outcomes(journal, "spring")
    assert back["status"].tolist() == result["status"].tolist()
    assert list(back.index) == list(frame.index)
    # the message ids the journal recorded are the ones the server received
    assert set(deliveries["message_id"]) == set(result["message_id"])


def test_rerunning_the_same_cell_sends_nothing_new(journal: Path) -> None:
    frame = contacts(*(f"user{i}@example.com" for i in range(10)), "user1@example.com", "",
                     "gone@example.com", "x@example.com")
    frame.loc["row13", "first_name"] = None  # cannot be rendered
    world = World(addresses={"gone@example.com": "user_unknown"})
    with Sandbox(world, tls=False) as box:
        first = run(frame, box.config, journal)  # built from the run's own records
        second = run(frame, box.config, journal)  # read back from the journal
        deliveries = box.deliveries()
    assert first["status"].value_counts().to_dict() == {"sent": 10, "skipped": 2, "failed": 2}
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(smtpkit.outcomes(journal, "spring"), first)
    assert len(deliveries) == 10
    assert len(smtpkit.attempts(journal, "spring")) == 11


def test_greylisting_then_success(journal: Path) -> None:
    world = World(domains={"example.com": Domain(greylist_seconds=0.5)})
    with Sandbox(world, tls=False) as box:
        result = run(many(5), box.config, journal)
        events = box.events()
    assert (result["status"] == "sent").all()
    assert (result["attempts"] >= 2).all()
    attempts = smtpkit.attempts(journal, "spring")
    assert set(attempts.loc[attempts["status"] == "deferred", "reason"]) == {"greylisted"}
    assert (events["event"] == "greylisted").sum() >= 5
    assert delivered(box) == {f"user{i}@example.com": 1 for i in range(5)}


def test_throttling_slows_down_and_completes(journal: Path) -> None:
    # 452 4.7.0 beyond 4 messages per second to the domain, all connections together
    world = World(domains={"example.com": Domain(max_per_window=4, window_seconds=1.0)})
    with Sandbox(world, tls=False) as box:
        # one attempt only: a throttling reply must not use it up
        result = run(many(12), box.config, journal, concurrency=4,
                     retries=RetryPolicy(attempts=1))
        events = box.events()
    assert (result["status"] == "sent").all()
    attempts = smtpkit.attempts(journal, "spring")
    throttled = attempts[attempts["reason"] == "throttled"]
    assert len(throttled) >= 1 and set(throttled["smtp_code"]) == {452}
    assert (result.loc[throttled.index.unique(), "attempts"] >= 2).all()
    assert (events["event"] == "throttled_rate").sum() == len(throttled)
    assert delivered(box) == {f"user{i}@example.com": 1 for i in range(12)}


def test_421_mid_batch_reconnects(journal: Path) -> None:
    world = World(domains={"example.com": Domain(max_per_connection=3)})
    with Sandbox(world, tls=False) as box:
        result = run(many(10), box.config, journal, concurrency=1)
        deliveries = box.deliveries()
    assert (result["status"] == "sent").all()
    assert deliveries["connection_id"].nunique() >= 4  # 3 per connection, then 421
    assert (deliveries["delivery_count"] == 1).all()
    codes = smtpkit.attempts(journal, "spring")["smtp_code"].dropna().tolist()
    assert 421 in codes


def test_partial_and_permanent_refusals_are_per_row(journal: Path) -> None:
    world = World(addresses={"gone@example.com": "user_unknown", "full@example.com":
                             "mailbox_full", "blocked@example.com": "policy"})
    frame = contacts("ann@example.com", "gone@example.com", "full@example.com",
                     "blocked@example.com", "bob@example.com")
    with Sandbox(world, tls=False) as box:
        result = run(frame, box.config, journal)
    by = result.set_index("recipient")
    assert by.loc["ann@example.com", "status"] == "sent"
    assert by.loc["bob@example.com", "status"] == "sent"
    assert tuple(by.loc["gone@example.com", ["status", "reason", "smtp_code", "smtp_status"]]) \
        == ("failed", "user_unknown", 550, "5.1.1")
    assert tuple(by.loc["full@example.com", ["status", "reason", "smtp_code"]]) == (
        "failed", "mailbox_full", 552)
    assert tuple(by.loc["blocked@example.com", ["status", "reason", "smtp_code"]]) == (
        "failed", "policy", 554)
    assert (by["attempts"] == 1).all()  # permanent: never retried
    assert set(delivered(box)) == {"ann@example.com", "bob@example.com"}


def test_all_refused(journal: Path) -> None:
    world = World(default_domain=Domain(user_unknown=1.0))
    with Sandbox(world, tls=False) as box:
        result = run(many(8), box.config, journal)
        assert box.deliveries().empty
    assert (result["status"] == "failed").all()
    assert (result["reason"] == "user_unknown").all()


def test_disconnect_before_data_is_retried(journal: Path) -> None:
    world = World(addresses={"user1@example.com": Rule("drop_before_dot", times=1),
                             "user3@example.com": Rule("drop_before_dot", times=2)})
    with Sandbox(world, tls=False) as box:
        result = run(many(5), box.config, journal)
    assert (result["status"] == "sent").all()
    assert result.loc["row1", "attempts"] == 2 and result.loc["row3", "attempts"] == 3
    attempts = smtpkit.attempts(journal, "spring")
    assert set(attempts.loc[attempts["status"] == "deferred", "reason"]) == {"connection_lost"}
    assert delivered(box) == {f"user{i}@example.com": 1 for i in range(5)}


def test_disconnect_after_the_final_dot_is_unknown_and_never_resent(journal: Path) -> None:
    world = World(addresses={"user2@example.com": Rule("drop_after_dot", times=1)})
    with Sandbox(world, tls=False) as box:
        result = run(many(4), box.config, journal)
        again = run(many(4), box.config, journal)
        deliveries = box.deliveries()
    assert tuple(result.loc["row2", ["status", "reason", "attempts"]]) == (
        "unknown", "connection_lost_after_data", 1)
    assert again.loc["row2", "status"] == "unknown"
    mine = deliveries[deliveries["recipient"] == "user2@example.com"]
    assert len(mine) == 1 and not mine["acknowledged"].iloc[0]  # it did arrive, once


def test_dns_failures_in_mx_mode(journal: Path) -> None:
    world = World(domains={
        "example.com": Domain(),
        "gone.example": Domain(dns="nxdomain"),
        "nullmx.example": Domain(dns="null_mx"),
        "dnsdown.example": Domain(dns="servfail"),
    })
    frame = contacts("ann@example.com", "bob@gone.example", "cat@nullmx.example",
                     "dan@dnsdown.example", "eve@example.com")
    with Sandbox(world, tls=True) as box:
        result = run(frame, box.mx, journal, retries=RetryPolicy(attempts=2, backoff=0.1))
        assert delivered(box) == {"ann@example.com": 1, "eve@example.com": 1}
        server = box.config.server
    by = result.set_index("recipient")
    assert tuple(by.loc["bob@gone.example", ["status", "reason"]]) == (
        "failed", "domain_not_found")
    assert tuple(by.loc["cat@nullmx.example", ["status", "reason"]]) == ("failed", "null_mx")
    assert tuple(by.loc["dan@dnsdown.example", ["status", "reason", "attempts"]]) == (
        "deferred", "dns_error", 2)
    assert by.loc["ann@example.com", "server"] == server


def test_wrong_password_sends_nothing(journal: Path) -> None:
    with Sandbox(tls=True, auth=True) as box:
        config = box.config.replace(password="not-the-password")
        with pytest.raises(CampaignAborted) as caught:
            run(many(3), config, journal)
        assert box.deliveries().empty
    message = str(caught.value)
    assert message.startswith("Campaign 'spring' did not start: SMTP auth step failed at ")
    assert message.endswith("Check the username and password; nothing was sent. Nothing was "
                            "sent.")
    assert "not-the-password" not in message
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM settled").fetchone()[0] == 0


def test_starttls_stripped_is_an_error_and_no_auth_is_sent(journal: Path) -> None:
    with Sandbox(tls=False) as box:  # a server (or a man in the middle) offering no STARTTLS
        config = SMTPConfig(box.host, box.port, tls="starttls", username="ann",
                            password="s3cret-pw", timeout=5)
        with pytest.raises(CampaignAborted, match="did not offer STARTTLS") as caught:
            run(many(2), config, journal)
        events = box.events()
        assert box.deliveries().empty
    assert not events["event"].astype(str).str.startswith("auth").any()
    assert not events["command"].astype(str).str.upper().str.startswith("AUTH").any()
    assert "s3cret-pw" not in str(caught.value)


def test_smtputf8_row_fails_on_a_server_without_it_others_go(journal: Path) -> None:
    frame = contacts("ann@example.com", "jörg@example.com", "bob@example.com")
    with Sandbox(tls=False, smtputf8=False) as box:
        result = run(frame, box.config, journal)
        assert set(delivered(box)) == {"ann@example.com", "bob@example.com"}
    assert tuple(result.loc["row1", ["status", "reason"]]) == ("failed", "smtputf8_required")
    assert (result.drop(index="row1")["status"] == "sent").all()


def test_duplicate_rows_are_sent_once(journal: Path) -> None:
    frame = contacts("ann@example.com", " ANN@example.com", "bob@example.com", "ann@example.com")
    with Sandbox(tls=False) as box:
        result = run(frame, box.config, journal)
        assert delivered(box) == {"ann@example.com": 1, "bob@example.com": 1}
    assert result["status"].tolist() == ["sent", "skipped", "sent", "skipped"]
    assert result["reason"].tolist()[1::2] == ["duplicate", "duplicate"]


def test_cleaned_frame_sends_only_sendable_rows(journal: Path) -> None:
    frame = contacts("ann@example.com", "info@example.com", "bob@example.com", "x@typo.example")
    frame["sendable"] = [True, False, True, False]
    frame["reason"] = [pd.NA, "role_account", pd.NA, "typo_domain"]
    with Sandbox(tls=False) as box:
        result = run(frame, box.config, journal)
        assert set(delivered(box)) == {"ann@example.com", "bob@example.com"}
    assert result["status"].tolist() == ["sent", "skipped", "sent", "skipped"]
    assert result["reason"].tolist()[1::2] == ["role_account", "typo_domain"]


def test_rows_without_a_usable_address_or_field(journal: Path) -> None:
    frame = contacts("ann@example.com", "not an address", "", "bob@example.com")
    frame.loc["row3", "first_name"] = None
    with Sandbox(tls=False) as box:
        result = run(frame, box.config, journal)
        assert set(delivered(box)) == {"ann@example.com"}
    assert result["status"].tolist() == ["sent", "skipped", "skipped", "failed"]
    assert result["reason"].tolist() == ["accepted", "invalid_address", "missing_address",
                                         "missing_field"]
    assert "first_name" in result.loc["row3", "smtp_message"]


def test_a_changed_frame_on_resume_is_refused(journal: Path) -> None:
    with Sandbox(tls=False) as box:
        run(many(3), box.config, journal)
        with pytest.raises(JournalError) as caught:
            run(many(4), box.config, journal)
        assert len(box.deliveries()) == 3
    assert str(caught.value) == (
        f"Campaign 'spring' in {str(journal)!r} was started with a different list (3 rows to "
        "send out of 3); this frame has 4 out of 4, or other addresses or order. Pass the same "
        "frame to resume it, or choose a new campaign name to send this one."
    )


def test_segments_send_in_order_with_their_templates(journal: Path) -> None:
    frame = smtpkit.segment(many(6), by="first_name")
    frame["segment"] = ["B", "A", "B", "A", "B", "A"]
    templates = {
        "A": smtpkit.Template(subject="A for {first_name}", text="a", sender="a@shop.example"),
        "*": smtpkit.Template(subject="Other for {first_name}", text="b",
                              sender="b@other.example"),
    }
    with Sandbox(tls=False) as box:
        result = send(frame, templates, box.config, campaign="seg", journal=journal,
                      segment="segment", concurrency=1, progress=False)
        deliveries = box.deliveries()
        subjects = {
            m["To"]: str(m["Subject"]) for m in box.messages()
        }
    assert result["segment"].tolist() == ["B", "A", "B", "A", "B", "A"]
    assert subjects["user0@example.com"] == "Other for Name0"
    assert subjects["user1@example.com"] == "A for Name1"
    # the first segment to appear (B) goes out first, then A
    order = deliveries["recipient"].tolist()
    assert order == ["user0@example.com", "user2@example.com", "user4@example.com",
                     "user1@example.com", "user3@example.com", "user5@example.com"]
    b_senders = result.loc[result["segment"] == "B", "envelope_sender"]
    assert b_senders.str.endswith("@other.example").all()


def test_circuit_breaker_stops_a_failing_campaign(journal: Path) -> None:
    world = World(default_domain=Domain(user_unknown=1.0))
    breaker = CircuitBreaker(window=10, min_attempts=10, max_error_rate=0.5)
    with Sandbox(world, tls=False) as box:
        with pytest.raises(CampaignAborted) as caught:
            run(many(60), box.config, journal, breaker=breaker, concurrency=2)
    assert str(caught.value).startswith(
        "The circuit breaker stopped campaign 'spring': 10 of the last 10 attempts failed: "
        "user_unknown (10).")
    recorded = smtpkit.outcomes(journal, "spring")
    assert 10 <= len(recorded) < 20  # stopped early: most of the list was not burnt
    assert (recorded["status"] == "failed").all()


def test_failover_to_the_next_relay(journal: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = SMTPConfig("127.0.0.1", sock.getsockname()[1], tls="none", timeout=2)
    with Sandbox(tls=False) as box:
        result = run(many(6), [dead, box.config], journal)
        server = box.config.server
    assert (result["status"] == "sent").all()
    assert (result["server"] == server).all()


def test_round_robin_over_two_relays(journal: Path) -> None:
    with Sandbox(tls=False) as one, Sandbox(tls=False) as two:
        result = run(many(20), [one.config, two.config], journal, concurrency=4)
        counts = (len(one.deliveries()), len(two.deliveries()))
    assert (result["status"] == "sent").all()
    assert sum(counts) == 20 and min(counts) > 0


def test_rate_and_domain_limits_space_the_messages(journal: Path) -> None:
    frame = contacts(*[f"u{i}@example.com" for i in range(6)],
                     *[f"v{i}@example.org" for i in range(6)])
    with Sandbox(tls=False) as box:
        result = run(frame, box.config, journal, concurrency=4,
                     per_domain={"example.com": Limit(per_second=10)})
    starts = result.groupby(result["recipient"].str.rpartition("@")[2])["first_attempt_at"]
    spread = (starts.max() - starts.min()).dt.total_seconds()
    assert spread["example.com"] >= 0.4  # 6 messages at 10/s: at least 0.5 s apart in total
    with Sandbox(tls=False) as box:
        result = run(many(6), box.config, None, rate=10.0)
    assert (result["first_attempt_at"].max() - result["first_attempt_at"].min()
            ).total_seconds() >= 0.4


def test_dry_run_sends_nothing_and_writes_no_journal(journal: Path) -> None:
    frame = contacts("ann@example.com", "bob@example.com", "bad", "ann@example.com")
    frame.loc["row1", "first_name"] = None
    with Sandbox(tls=False) as box:
        result = run(frame, box.config, journal, dry_run=True)
        assert box.deliveries().empty
    assert not journal.exists()
    assert (result["status"] == "skipped").all()
    assert result["would"].tolist() == ["send", "fail", "skip", "skip"]
    assert result["reason"].tolist() == ["dry_run", "missing_field", "invalid_address",
                                         "duplicate"]
    assert result.loc["row0", "size"] > 100 and pd.isna(result.loc["row1", "size"])
    assert "first_name" in result.loc["row1", "detail"]


def test_dry_run_after_a_send_says_what_is_done(journal: Path) -> None:
    with Sandbox(tls=False) as box:
        run(many(2), box.config, journal)
        result = run(many(2), box.config, journal, dry_run=True)
    assert result["would"].tolist() == ["done", "done"]
    assert result["reason"].tolist() == ["already_sent", "already_sent"]


def test_notify_mails_a_summary_when_rows_fail(journal: Path) -> None:
    world = World(addresses={"gone@example.com": "user_unknown"})
    frame = contacts("ann@example.com", "gone@example.com")
    with Sandbox(world, tls=False) as box:
        run(frame, box.config, journal, notify="ops@example.com")
        summaries = box.messages("ops@example.com")
    assert len(summaries) == 1
    summary = summaries[0]
    assert str(summary["Subject"]) == "smtpkit campaign spring: 1 rows not sent"
    body = summary.get_body().get_content()
    assert "failed, user_unknown, 550: 1" in body and "sent               1" in body


def test_keep_columns_adds_the_input(journal: Path) -> None:
    frame = many(2)
    frame["status"] = ["vip", "regular"]  # clashes with an outcome column
    with Sandbox(tls=False) as box:
        result = run(frame, box.config, journal, keep_columns=True)
    assert list(result.columns)[-3:] == ["email", "first_name", "status_input"]
    assert result["status_input"].tolist() == ["vip", "regular"]


def test_password_never_reaches_the_frame_or_the_journal(journal: Path) -> None:
    with Sandbox(tls=True, auth=True) as box:
        password = box.password.reveal() if box.password is not None else ""
        result = run(many(3), box.config, journal, notify=None)
    assert (result["status"] == "sent").all()
    assert password and password.encode() not in journal.read_bytes()
    assert password not in result.to_string() and password not in result.to_csv()
    wal = journal.with_name(journal.name + "-wal")
    if wal.exists():
        assert password.encode() not in wal.read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        pytest.param({"campaign": ""}, ConfigError, "campaign must be a short name",
                     id="empty-campaign"),
        pytest.param({"concurrency": 0}, ConfigError,
                     "concurrency must be a whole number from 1 to 1000; got 0.", id="concurrency"),
        pytest.param({"rate": "fast"}, ConfigError, "rate must be messages per second",
                     id="rate"),
        pytest.param({"per_domain": {"x.com": "slow"}}, ConfigError,
                     "per_domain['x.com'] must be messages per second", id="per-domain"),
        pytest.param({"notify": "ops"}, ConfigError, "notify address 'ops' is not an address",
                     id="notify"),
        pytest.param({"verp": "bad address"}, ConfigError, "verp must be True, False, or an",
                     id="verp"),
        pytest.param({"segment": "tier"}, MissingColumnError,
                     "segment='tier' names no column of the frame", id="segment-column"),
        pytest.param({"journal": 42}, ConfigError, "journal must be a file path", id="journal"),
    ],
)
def test_bad_arguments_raise_before_sending(kwargs: dict[str, object], error: type[Exception],
                                            message: str, journal: Path) -> None:
    with Sandbox(tls=False) as box:
        options: dict[str, object] = {"campaign": "spring", "journal": journal,
                                      "progress": False}
        options.update(kwargs)
        with pytest.raises(error) as caught:
            send(many(2), TEMPLATE, box.config, **options)  # type: ignore[arg-type]
        assert box.deliveries().empty
    assert str(caught.value).startswith(message) or message in str(caught.value)


def test_wrong_kinds_of_input(journal: Path) -> None:
    with pytest.raises(InputError, match="takes a pandas DataFrame first, not list"):
        send([1, 2], TEMPLATE, SMTPConfig("127.0.0.1", 25, tls="none"),  # type: ignore[arg-type]
             campaign="x")
    with pytest.raises(ConfigError, match="config must be an SMTPConfig"):
        send(many(1), TEMPLATE, "smtp.example.com", campaign="x")  # type: ignore[arg-type]
    template = smtpkit.Template(subject="Hi {nickname}", text="x", sender="a@shop.example")
    with pytest.raises(MissingColumnError, match="'nickname'"):
        send(many(1), template, SMTPConfig("127.0.0.1", 25, tls="none"), campaign="x")
    with pytest.raises(InputError, match="needs segment='<column>'"):
        send(many(1), {"A": TEMPLATE}, SMTPConfig("127.0.0.1", 25, tls="none"), campaign="x")
    frame = many(2)
    frame["segment"] = ["A", "B"]
    with pytest.raises(InputError, match="No template for segment"):
        send(frame, {"A": TEMPLATE}, SMTPConfig("127.0.0.1", 25, tls="none"), campaign="x",
             segment="segment")


async def test_asend_from_a_running_loop(journal: Path) -> None:
    with Sandbox(tls=False) as box:
        result = await smtpkit.asend(many(3), TEMPLATE, box.config, campaign="async",
                                     journal=journal, progress=False)
    assert (result["status"] == "sent").all()


def test_the_journal_records_every_attempt(journal: Path) -> None:
    world = World(addresses={"user0@example.com": Rule("tempfail", times=2)})
    with Sandbox(tls=False, world=world) as box:
        run(many(2), box.config, journal)
    attempts = smtpkit.attempts(journal, "spring")
    mine = attempts.loc["row0"]
    assert mine["attempt"].tolist() == [1, 2, 3]
    assert mine["status"].tolist() == ["deferred", "deferred", "sent"]
    assert mine["smtp_code"].tolist() == [451, 451, 250]
    assert (mine["message_id"].nunique(), mine["message_id"].iloc[0]) == (
        1, smtpkit.outcomes(journal, "spring").loc["row0", "message_id"])


def test_messages_carry_the_verp_sender_and_message_id(journal: Path) -> None:
    with Sandbox(tls=False) as box:
        result = run(many(1), box.config, journal)
        raw = box.raw_messages("user0@example.com")[0]
        deliveries = box.deliveries()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Message-ID"] == result.loc["row0", "message_id"]
    assert deliveries.loc[0, "envelope_sender"] == result.loc["row0", "envelope_sender"]
    assert str(message["Subject"]) == "Hello Name0"


def test_a_row_fixed_after_failing_to_render_is_sent_on_the_next_run(journal: Path) -> None:
    frame = many(3)
    frame.loc["row1", "first_name"] = None
    with Sandbox(tls=False) as box:
        first = run(frame, box.config, journal)
        frame.loc["row1", "first_name"] = "Fixed"
        second = run(frame, box.config, journal)
        assert delivered(box) == {f"user{i}@example.com": 1 for i in range(3)}
    assert first["status"].tolist() == ["sent", "failed", "sent"]
    assert second["status"].tolist() == ["sent", "sent", "sent"]


def test_hard_bounces_are_suppressed_in_later_campaigns(journal: Path) -> None:
    frame = many(3)
    with Sandbox(tls=False) as box:
        first = run(frame, box.config, journal, campaign="spring")
        smtpkit.Journal(journal).record_bounces("spring", pd.DataFrame([{
            "recipient": None, "original_message_id": None, "kind": "bounce",
            "status": "5.1.1", "reason": "user_unknown", "hard": True,
            "arrived_at": pd.Timestamp.now(tz="UTC"),
            "bounce_to": first.loc["row1", "envelope_sender"], "diagnostic": "550 5.1.1",
        }]))
        later = run(frame, box.config, journal, campaign="summer")
        assert len(box.deliveries()) == 5
    assert smtpkit.outcomes(journal, "spring").loc["row1", "status"] == "bounced"
    assert tuple(later.loc["row1", ["status", "reason"]]) == ("skipped", "suppressed")
    assert (later.drop(index="row1")["status"] == "sent").all()


def test_synchronous_full_journal(tmp_path: Path) -> None:
    with Sandbox(tls=False) as box:
        result = run(many(4), box.config, smtpkit.Journal(tmp_path / "j.db",
                                                          synchronous="full"))
    assert (result["status"] == "sent").all()


def test_sender_refused_stops_the_campaign_with_rows_kept_retryable(journal: Path) -> None:
    from test_send_servers import ScriptedHandler, SMTPServer

    handler = ScriptedHandler(mail_reply="553 5.7.1 Sender address rejected: not owned by you",
                              pipelining=True)
    with SMTPServer(handler) as server, pytest.raises(CampaignAborted) as caught:
        run(many(5), server.config(), journal, concurrency=1)
    assert str(caught.value).startswith(
        "Campaign 'spring' stopped: the server at 127.0.0.1:")
    assert "refused the envelope sender (553 5.7.1 Sender address rejected" in str(caught.value)
    assert str(caught.value).endswith("run the same send again to resume.")
    assert handler.deliveries == []
    recorded = smtpkit.outcomes(journal, "spring")
    assert len(recorded) == 1 and recorded["status"].tolist() == ["deferred"]  # retryable
    assert smtpkit.Journal(journal).campaigns().loc[0, "state"] == "aborted"


def test_a_554_greeting_stops_the_campaign_before_anything(journal: Path) -> None:
    from test_send_servers import RawServer, greeting_only

    with RawServer(greeting_only(b"554 5.7.1 mx.test does not accept mail from you")) as server:
        config = SMTPConfig(server.host, server.port, tls="none", timeout=2)
        with pytest.raises(CampaignAborted, match="did not start: SMTP greeting step failed"):
            run(many(3), config, journal)
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0


def test_per_domain_concurrency(journal: Path) -> None:
    with Sandbox(World(domains={"example.com": Domain(latency_ms=20)}), tls=False) as box:
        result = run(many(12), box.config, journal, concurrency=4,
                     per_domain={"example.com": Limit(concurrency=1)})
        deliveries = box.deliveries()
    assert (result["status"] == "sent").all()
    assert deliveries["connection_id"].nunique() == 1  # one at a time: one connection is enough


def test_circuit_breaker_pause_goes_on(journal: Path) -> None:
    addresses = {f"user{i}@example.com": "user_unknown" for i in range(8)}
    breaker = CircuitBreaker(window=4, min_attempts=4, max_error_rate=0.5, pause=0.2)
    with Sandbox(World(addresses=addresses), tls=False) as box, \
            pytest.warns(RuntimeWarning, match="paused for 0.2 s: 4 of the last 4 attempts"):
        result = run(many(20), box.config, journal, breaker=breaker, concurrency=1)
    assert result["status"].value_counts().to_dict() == {"sent": 12, "failed": 8}


def test_progress_bar_runs(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = smtpkit.segment(many(30), split={"A": 0.5, "B": 0.5})
    with Sandbox(tls=False) as box:
        result = send(frame, TEMPLATE, box.config, campaign="bar", journal=journal,
                      segment="segment", retries=FAST)
    assert (result["status"] == "sent").all()
    shown = capsys.readouterr().err
    assert "campaign bar" in shown and "sent 30" in shown and "/" in shown


def test_pace_per_second_and_per_hour() -> None:
    from smtpkit._send_sched import Pace

    pace = Pace(per_second=10)
    pace.take(0.0)
    assert pace.wait(0.0) == pytest.approx(0.1)
    assert pace.wait(0.1) == 0.0
    hourly = Pace(per_hour=2)
    hourly.take(0.0)
    hourly.take(10.0)
    assert hourly.wait(20.0) == pytest.approx(3580.0)  # the oldest leaves the hour at 3600
    assert hourly.wait(3600.0) == 0.0


def test_retry_delays_grow_with_bounded_jitter() -> None:
    import random

    policy = RetryPolicy(backoff=2.0, factor=3.0, max_backoff=30.0, jitter=0.25)
    rng = random.Random(1)
    for retry, base in ((1, 2.0), (2, 6.0), (3, 18.0), (4, 30.0), (9, 30.0)):
        delays = [policy.delay(retry, rng=rng) for _ in range(50)]
        assert base * 0.75 <= min(delays) and max(delays) <= base * 1.25
        assert max(delays) - min(delays) > 0  # jittered
    with pytest.raises(ConfigError, match="RetryPolicy attempts must be a whole number"):
        RetryPolicy(attempts=0)
