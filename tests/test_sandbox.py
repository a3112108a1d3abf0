"""The Sandbox SMTP server, driven by a stdlib smtplib client over 127.0.0.1.

Every behaviour of the World (refusals, greylisting, throttling, drops, greeting), every
server-wide option (STARTTLS, AUTH, SIZE, SMTPUTF8, PIPELINING, recipient limit) and the protocol
abuse a strict server must refuse are asserted by exact reply codes and by what ``deliveries()``
and ``events()`` recorded. Late mail (DSN, ARF, auto-reply) is in ``test_sandbox_mail.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from conftest import default_sigint

from smtpkit import _portal
from smtpkit._sample import (
    COMPANY_DOMAINS,
    DISPOSABLE_DOMAINS,
    IDN_DOMAINS,
    PROVIDER_DOMAINS,
    TYPO_DOMAINS,
    make_contacts,
)
from smtpkit.config import MXDelivery, SMTPConfig
from smtpkit.errors import ConfigError, SandboxError
from smtpkit.sandbox import DELIVERY_COLUMNS, EVENT_COLUMNS, Domain, Rule, Sandbox, World

SENDER = "news@example.com"


def message(message_id: str, *, subject: str = "Hello", extra: str = "") -> str:
    return (
        f"From: {SENDER}\r\nMessage-ID: <{message_id}@example.com>\r\nSubject: {subject}\r\n"
        f"{extra}\r\nHello there.\r\n"
    )


@contextlib.contextmanager
def client(box: Sandbox, *, ehlo: bool = True) -> Iterator[smtplib.SMTP]:
    smtp = smtplib.SMTP(box.host, box.port, timeout=10)
    try:
        if ehlo:
            smtp.ehlo()
        yield smtp
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.close()


def tls_context(box: Sandbox) -> ssl.SSLContext:
    assert box.ca_file is not None
    return ssl.create_default_context(cafile=box.ca_file)


def rows_for(box: Sandbox, recipient: str) -> list[dict[str, object]]:
    frame = box.deliveries()
    return frame[frame["recipient"] == recipient].to_dict("records")  # type: ignore[return-value]


def events_named(box: Sandbox, event: str) -> list[dict[str, object]]:
    frame = box.events()
    return frame[frame["event"] == event].to_dict("records")  # type: ignore[return-value]


# --- one shared box for the stateless per-recipient behaviours --------------------------------

SCRIPTED = World(
    addresses={
        "unknown@example.com": "user_unknown",
        "full@example.com": "mailbox_full",
        "blocked@example.com": "policy",
        "busy@example.com": "tempfail",
    },
    domains={
        "typo.example": Domain(dns="nxdomain"),
        "nullmx.example": Domain(dns="null_mx"),
        "dns-down.example": Domain(dns="servfail"),
    },
)


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(SCRIPTED, tls=True) as sandbox:
        yield sandbox


@pytest.mark.parametrize(
    ("recipient", "code", "status", "event"),
    [
        pytest.param("accepted@example.com", 250, "2.1.5", "accepted", id="accept"),
        pytest.param("unknown@example.com", 550, "5.1.1", "user_unknown", id="user-unknown"),
        pytest.param("full@example.com", 552, "5.2.2", "mailbox_full", id="mailbox-full"),
        pytest.param("blocked@example.com", 554, "5.7.1", "policy", id="policy-rejection"),
        pytest.param("busy@example.com", 451, "4.3.0", "tempfail", id="temporary-failure"),
        pytest.param("x@typo.example", 550, "5.1.2", "domain_not_found", id="nxdomain"),
        pytest.param("x@nullmx.example", 556, "5.1.10", "null_mx", id="null-mx"),
        pytest.param("x@dns-down.example", 451, "4.4.3", "dns_failure", id="dns-failure"),
        pytest.param("x@unlisted.example", 250, "2.1.5", "accepted", id="unlisted-domain-accepted"),
        pytest.param("UNKNOWN@Example.COM", 550, "5.1.1", "user_unknown", id="case-insensitive"),
    ],
)
def test_rcpt_outcomes(box: Sandbox, recipient: str, code: int, status: str, event: str) -> None:
    with client(box) as smtp:
        assert smtp.mail(SENDER)[0] == 250
        reply_code, reply_text = smtp.rcpt(recipient)
        assert (reply_code, reply_text.split()[0].decode()) == (code, status)
        if code == 250:
            assert smtp.data(message(f"outcome-{recipient}"))[0] == 250
        else:
            smtp.rset()
    rcpt_events = box.events().query("command == 'RCPT'")
    mine = rcpt_events[rcpt_events["argument"] == f"TO:<{recipient}>"]
    assert list(mine["event"])[-1] == event
    assert list(mine["code"])[-1] == code
    delivered = rows_for(box, recipient)
    assert len(delivered) == (1 if code == 250 else 0)
    if delivered:
        assert delivered[0]["message_id"] == f"<outcome-{recipient}@example.com>"
        assert delivered[0]["delivery_count"] == 1
        assert delivered[0]["domain"] == recipient.rpartition("@")[2]


def test_sendmail_reports_refused_recipients_and_delivers_the_rest(box: Sandbox) -> None:
    with client(box) as smtp:
        refused = smtp.sendmail(
            SENDER,
            ["carol@example.com", "unknown@example.com", "dave@example.com"],
            message("mixed"),
        )
    assert refused == {
        "unknown@example.com": (
            550,
            b"5.1.1 <unknown@example.com>: Recipient address rejected: User unknown",
        )
    }
    frame = box.deliveries()
    mixed = frame[frame["message_id"] == "<mixed@example.com>"]
    assert list(mixed["recipient"]) == ["carol@example.com", "dave@example.com"]
    assert mixed["envelope_sender"].eq(SENDER).all()
    assert mixed["domain"].eq("example.com").all()
    assert mixed["acknowledged"].all()
    assert not mixed["tls"].any()  # this client never sent STARTTLS
    assert mixed["size"].eq(len(message("mixed").encode())).all()


def test_frames_have_stable_columns_and_dtypes(box: Sandbox) -> None:
    deliveries, events = box.deliveries(), box.events()
    assert tuple(deliveries.columns) == DELIVERY_COLUMNS
    assert tuple(events.columns) == EVENT_COLUMNS
    assert str(deliveries["received_at"].dtype) == "datetime64[us, UTC]"
    assert str(deliveries["delivery_count"].dtype) == "Int64"
    assert str(deliveries["tls"].dtype) == "bool"
    assert str(events["code"].dtype) == "Int64"
    empty = Sandbox(tls=False)
    assert tuple(empty.deliveries().columns) == DELIVERY_COLUMNS
    assert len(empty.events()) == 0


def test_delivery_count_counts_repeats_of_one_message_id(box: Sandbox) -> None:
    with client(box) as smtp:
        for _ in range(3):
            smtp.sendmail(SENDER, ["repeat@example.com"], message("repeat"))
        smtp.sendmail(SENDER, ["repeat@example.com"], message("other"))
    rows = rows_for(box, "repeat@example.com")
    assert [(r["message_id"], r["delivery_count"]) for r in rows] == [
        ("<repeat@example.com>", 1),
        ("<repeat@example.com>", 2),
        ("<repeat@example.com>", 3),
        ("<other@example.com>", 1),
    ]
    assert box.raw_messages("repeat@example.com")[0] == message("repeat").encode()
    parsed = box.messages("repeat@example.com")[-1]
    assert parsed["Message-ID"] == "<other@example.com>"


def test_concurrent_clients_each_delivered_exactly_once(box: Sandbox) -> None:
    def worker(n: int) -> None:
        with client(box) as smtp:
            for i in range(5):
                smtp.sendmail(SENDER, [f"w{n}@example.com"], message(f"conc-{n}-{i}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    frame = box.deliveries()
    mine = frame[frame["message_id"].str.startswith("<conc-")]
    assert len(mine) == 30
    assert mine["delivery_count"].eq(1).all()
    assert mine["connection_id"].nunique() == 6
    assert events_named(box, "internal_error") == []


# --- the World: pure decisions -------------------------------------------------------------


def test_world_outcomes_are_deterministic_for_a_seed_and_follow_the_rates() -> None:
    policy = Domain(user_unknown=0.3, mailbox_full=0.1)
    addresses = [f"user{i}@example.com" for i in range(3000)]
    first = [World(default_domain=policy, seed=5).outcome(a) for a in addresses]
    again = [World(default_domain=policy, seed=5).outcome(a) for a in addresses]
    other = [World(default_domain=policy, seed=6).outcome(a) for a in addresses]
    assert first == again
    assert first != other
    assert 0.27 < first.count("user_unknown") / 3000 < 0.33
    assert 0.08 < first.count("mailbox_full") / 3000 < 0.12
    assert first.count("accept") + first.count("user_unknown") + first.count("mailbox_full") == 3000


def test_per_address_outcomes_stay_and_per_attempt_outcomes_vary() -> None:
    world = World(default_domain=Domain(user_unknown=0.5, drop_after_dot=0.5), seed=1)
    for i in range(50):
        address = f"u{i}@example.com"
        per_attempt = {world.outcome(address, attempt=n) for n in range(12)}
        if world.outcome(address) == "user_unknown":
            assert per_attempt == {"user_unknown"}
        else:
            assert per_attempt == {"accept", "drop_after_dot"}


def test_scripted_rule_applies_for_its_first_attempts_only() -> None:
    world = World(addresses={"a@example.com": Rule("tempfail", times=2), "b@example.com": "policy"})
    assert [world.outcome("a@example.com", attempt=n) for n in range(4)] == [
        "tempfail",
        "tempfail",
        "accept",
        "accept",
    ]
    assert {world.outcome("b@example.com", attempt=n) for n in range(4)} == {"policy"}


def test_latency_is_a_seeded_lognormal_around_the_median() -> None:
    fixed = World(default_domain=Domain(latency_ms=150))
    assert fixed.latency("a@example.com") == pytest.approx(0.15)
    spread = World(default_domain=Domain(latency_ms=20, latency_spread=0.5), seed=3)
    samples = sorted(spread.latency(f"a{i}@example.com") for i in range(2001))
    assert samples[1000] == pytest.approx(0.020, rel=0.15)
    assert samples[0] < 0.015 < 0.027 < samples[-1]
    assert spread.latency("a1@example.com") == spread.latency("a1@example.com")


def test_idn_domains_are_known_in_unicode_and_idna_form() -> None:
    world = World(domains={"bücher.example.de": Domain(user_unknown=1.0)}, unknown_domains="reject")
    assert world.outcome("anna@bücher.example.de") == "user_unknown"
    assert world.outcome("anna@xn--bcher-kva.example.de") == "user_unknown"
    assert world.outcome("anna@elsewhere.example") == "domain_not_found"
    assert world.outcome("anna@example.org") == "accept"  # example domains are always known


def test_default_world_covers_the_sample_domains_with_a_realistic_mix() -> None:
    world = World.default()
    for domain in (*PROVIDER_DOMAINS, *COMPANY_DOMAINS, *DISPOSABLE_DOMAINS, *IDN_DOMAINS):
        assert world.policy_for(domain) is not None, domain
        assert world.outcome(f"someone@{domain}") != "domain_not_found", domain
    for domain in TYPO_DOMAINS:
        assert world.outcome(f"someone@{domain}") == "domain_not_found"
    assert world.outcome("x@nullmx.example") == "null_mx"
    assert world.outcome("x@dns-down.example") == "dns_failure"
    assert world.policy_for("gmail.com").greylist_seconds == 1.0  # type: ignore[union-attr]
    assert world.policy_for("yahoo.com").max_per_connection == 25  # type: ignore[union-attr]

    contacts = make_contacts(5000)
    addresses = [
        str(a).strip().lower()
        for a in contacts["email"]
        if isinstance(a, str) and re.fullmatch(r"\s*[a-z0-9._+]+@[a-z0-9.-]+\.[a-z]+\s*", a, re.I)
    ]
    outcomes = [world.outcome(a) for a in addresses]
    share = {name: outcomes.count(name) / len(outcomes) for name in set(outcomes)}
    assert 0.015 < share["user_unknown"] < 0.045
    assert 0.005 < share["bounce_later"] < 0.02
    assert 0.0005 < share["complain_later"] < 0.006
    assert 0.002 < share["auto_reply"] < 0.012
    assert 0.0 < share["mailbox_full"] < 0.01
    assert share["accept"] > 0.85


@pytest.mark.parametrize(
    ("build", "message_part"),
    [
        pytest.param(lambda: Domain(user_unknown=1.5), "share from 0 to 1", id="rate-above-one"),
        pytest.param(lambda: Domain(user_unknown=0.6, policy=0.6), "add up to 1.2", id="rates-sum"),
        pytest.param(lambda: Domain(max_per_connection=0), "positive whole", id="zero-limit"),
        pytest.param(lambda: Domain(dns="bogus"), "Domain dns must be one of", id="bad-dns"),
        pytest.param(lambda: Rule("vanish"), "Unknown sandbox outcome 'vanish'", id="bad-rule"),
        pytest.param(lambda: Rule("greylist", times=1), "leave times out", id="greylist-times"),
        pytest.param(lambda: World(addresses={"nobody": "accept"}), "has no '@'", id="no-at"),
        pytest.param(lambda: World(late_delay=(3, 1)), "lowest <= highest", id="late-delay"),
        pytest.param(
            lambda: World(domains={"a.example": "accept"}), "maps to str", id="domain-not-policy"
        ),
    ],
)
def test_world_validation_errors(build: object, message_part: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message_part)):
        build()  # type: ignore[operator]


# --- stateful per-domain behaviour ------------------------------------------------------------


def test_greylisting_refuses_until_the_window_has_passed() -> None:
    world = World(domains={"grey.example": Domain(greylist_seconds=0.3)})
    with Sandbox(world, tls=False) as box, client(box) as smtp:
        smtp.mail(SENDER)
        first = smtp.rcpt("x@grey.example")
        again = smtp.rcpt("x@grey.example")
        smtp.rset()
        assert first[0] == again[0] == 451
        assert first[1].startswith(
            b"4.7.1 <x@grey.example>: Recipient address rejected: Greylisted"
        )
        time.sleep(0.35)
        smtp.mail(SENDER)
        assert smtp.rcpt("x@grey.example")[0] == 250
        assert smtp.data(message("grey"))[0] == 250
        smtp.mail("other@example.com")  # a new (sender, recipient) pair is greylisted afresh
        assert smtp.rcpt("x@grey.example")[0] == 451
        smtp.rset()
        assert len(events_named(box, "greylisted")) == 3
        assert [r["delivery_count"] for r in rows_for(box, "x@grey.example")] == [1]


def test_greylist_rate_picks_a_stable_share_of_pairs() -> None:
    world = World(default_domain=Domain(greylist_seconds=1.0, greylist_rate=0.25), seed=9)
    picked = [world.greylist_seconds(SENDER, f"r{i}@example.com") for i in range(2000)]
    assert set(picked) == {0.0, 1.0}
    assert 0.21 < picked.count(1.0) / 2000 < 0.29
    assert picked == [world.greylist_seconds(SENDER, f"r{i}@example.com") for i in range(2000)]


def test_throttling_per_connection_answers_421_and_closes() -> None:
    world = World(domains={"busy.example": Domain(max_per_connection=2)})
    with Sandbox(world, tls=False) as box:
        with client(box) as smtp:
            assert smtp.sendmail(SENDER, ["a@busy.example"], message("t1")) == {}
            assert smtp.sendmail(SENDER, ["b@busy.example"], message("t2")) == {}
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                smtp.sendmail(SENDER, ["c@busy.example"], message("t3"))
            code, text = refused.value.recipients["c@busy.example"]
            assert (code, text.split()[0]) == (421, b"4.7.0")
            with pytest.raises(smtplib.SMTPServerDisconnected):
                smtp.noop()
        with client(box) as smtp:  # a new connection starts a new count
            assert smtp.sendmail(SENDER, ["c@busy.example"], message("t3")) == {}
        assert len(box.deliveries()) == 3
        assert len(events_named(box, "throttled_connection")) == 1


def test_throttling_per_window_answers_452_until_the_window_slides() -> None:
    world = World(domains={"rate.example": Domain(max_per_window=2, window_seconds=0.4)})
    with Sandbox(world, tls=False) as box:
        with client(box) as smtp:
            smtp.sendmail(SENDER, ["a@rate.example", "b@rate.example"], message("w1"))
        with client(box) as smtp:
            smtp.mail(SENDER)
            code, text = smtp.rcpt("c@rate.example")
            assert (code, text.split()[0]) == (452, b"4.7.0")
            smtp.rset()
            assert smtp.noop()[0] == 250  # 452 keeps the connection
            time.sleep(0.45)
            assert smtp.sendmail(SENDER, ["c@rate.example"], message("w2")) == {}
        assert len(events_named(box, "throttled_rate")) == 1
        assert len(box.deliveries()) == 3


def test_latency_delays_the_reply_to_the_final_dot() -> None:
    world = World(domains={"slow.example": Domain(latency_ms=150)})
    with Sandbox(world, tls=False) as box, client(box) as smtp:
        smtp.mail(SENDER)
        smtp.rcpt("a@slow.example")
        started = time.monotonic()
        assert smtp.data(message("slow"))[0] == 250
        assert time.monotonic() - started >= 0.14  # never earlier than the simulated delay


@pytest.mark.parametrize(
    ("outcome", "acknowledged_first"),
    [
        pytest.param("drop_before_dot", None, id="drop-before-final-dot"),
        pytest.param("drop_after_dot", False, id="drop-after-final-dot"),
    ],
)
def test_dropped_connections_during_data(outcome: str, acknowledged_first: bool | None) -> None:
    world = World(addresses={"drop@example.com": Rule(outcome, times=1)})
    with Sandbox(world, tls=False) as box:
        with client(box) as smtp:
            assert smtp.mail(SENDER)[0] == 250
            assert smtp.rcpt("drop@example.com")[0] == 250
            with pytest.raises(smtplib.SMTPServerDisconnected):
                smtp.data(message("drop"))
        first = rows_for(box, "drop@example.com")
        if acknowledged_first is None:
            assert first == []  # the client never sent the final "."
        else:
            assert [(r["acknowledged"], r["delivery_count"]) for r in first] == [(False, 1)]
        assert len(events_named(box, outcome.replace("drop", "dropped"))) == 1
        with client(box) as smtp:  # the retry goes through
            assert smtp.sendmail(SENDER, ["drop@example.com"], message("drop")) == {}
        rows = rows_for(box, "drop@example.com")
        assert rows[-1]["acknowledged"] is True
        # After a drop past the final ".", a resend is a duplicate: the count shows it.
        assert rows[-1]["delivery_count"] == (1 if acknowledged_first is None else 2)


def test_drop_rate_on_a_domain_cuts_data_off() -> None:
    world = World(domains={"flaky.example": Domain(drop_before_dot=1.0)})
    with Sandbox(world, tls=False) as box, client(box) as smtp:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.sendmail(SENDER, ["a@flaky.example"], message("flaky"))
        assert len(box.deliveries()) == 0


def test_greeting_421_for_chosen_connections() -> None:
    with Sandbox(World(refuse_connections={1}), tls=False) as box:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP(box.host, box.port, timeout=10)
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error.startswith(b"4.3.2")
        with client(box) as smtp:
            assert smtp.noop()[0] == 250
        assert len(events_named(box, "greeting_refused")) == 1


def test_greeting_failure_rate_refuses_connections() -> None:
    with Sandbox(World(greeting_failure_rate=1.0), tls=False) as box:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPConnectError):
                smtplib.SMTP(box.host, box.port, timeout=10)
        assert len(events_named(box, "greeting_refused")) == 2


# --- server-wide options ----------------------------------------------------------------------


def test_starttls_with_the_exposed_ca_then_auth_plain() -> None:
    with Sandbox(auth=True) as box, client(box) as smtp:
        assert "starttls" in smtp.esmtp_features
        assert "auth" not in smtp.esmtp_features  # AUTH is offered only after STARTTLS
        assert smtp.starttls(context=tls_context(box))[0] == 220
        smtp.ehlo()
        assert smtp.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        assert box.username is not None and box.password is not None
        assert smtp.login(box.username, box.password.reveal())[0] == 235
        assert smtp.sendmail(SENDER, ["ann@example.com"], message("tls-auth")) == {}
        row = rows_for(box, "ann@example.com")[0]
        assert row["tls"] is True
        assert events_named(box, "auth_ok")[0]["argument"] == "PLAIN"


def test_auth_login_and_certificate_for_localhost() -> None:
    with Sandbox(auth=True) as box:
        smtp = smtplib.SMTP("localhost", box.port, timeout=10)
        try:
            smtp.starttls(context=tls_context(box))  # verified against the SAN "localhost"
            smtp.ehlo()
            assert box.username is not None and box.password is not None
            smtp.user, smtp.password = box.username, box.password.reveal()
            assert smtp.auth("LOGIN", smtp.auth_login)[0] == 235
        finally:
            smtp.close()


@pytest.mark.parametrize(
    ("steps", "code", "status", "event"),
    [
        pytest.param(["auth-before-tls"], 538, "5.7.11", "auth_needs_tls", id="auth-before-tls"),
        pytest.param(["tls", "wrong-password"], 535, "5.7.8", "auth_failed", id="bad-password"),
        pytest.param(["tls", "mail"], 530, "5.7.0", "auth_required", id="mail-without-auth"),
        pytest.param(["mail"], 530, "5.7.0", "auth_required", id="mail-plaintext"),
    ],
)
def test_auth_refusals(steps: list[str], code: int, status: str, event: str) -> None:
    with Sandbox(auth=True) as box, client(box) as smtp:
        reply: tuple[int, bytes] = (0, b"")
        for step in steps:
            if step == "tls":
                smtp.starttls(context=tls_context(box))
                smtp.ehlo()
            elif step == "auth-before-tls":
                reply = smtp.docmd("AUTH", "PLAIN AHNhbmRib3gAd3Jvbmc=")
            elif step == "wrong-password":
                with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
                    smtp.login(box.username or "", "not-the-password")
                reply = (failed.value.smtp_code, failed.value.smtp_error)
            elif step == "mail":
                reply = smtp.mail(SENDER)
        assert (reply[0], reply[1].split()[0].decode()) == (code, status)
        assert events_named(box, event)
        assert len(box.deliveries()) == 0


def test_client_that_does_not_trust_the_ca_fails_and_the_server_carries_on() -> None:
    with Sandbox() as box:
        with client(box) as smtp, pytest.raises(ssl.SSLCertVerificationError):
            smtp.starttls(context=ssl.create_default_context())  # system store only
        with client(box) as smtp:
            assert smtp.starttls(context=tls_context(box))[0] == 220


def test_require_tls_refuses_mail_before_starttls() -> None:
    with Sandbox(require_tls=True) as box, client(box) as smtp:
        assert smtp.mail(SENDER)[0] == 530
        smtp.starttls(context=tls_context(box))
        smtp.ehlo()
        assert smtp.mail(SENDER)[0] == 250


def test_size_limit_is_advertised_and_enforced() -> None:
    with Sandbox(tls=False, size_limit=2000) as box, client(box) as smtp:
        assert smtp.esmtp_features["size"] == "2000"
        assert smtp.mail(SENDER, ["SIZE=5000"])[0] == 552
        smtp.rset()
        smtp.mail(SENDER)
        smtp.rcpt("ann@example.com")
        code, text = smtp.data(message("big", extra="X-Pad: " + "x" * 900 + "\r\n") * 3)
        assert (code, text) == (552, b"Error: Too much mail data")
        assert len(box.deliveries()) == 0
        assert len(events_named(box, "too_big")) == 2


def test_smtputf8_on_accepts_internationalized_addresses() -> None:
    with Sandbox(tls=False) as box, client(box) as smtp:
        assert "smtputf8" in smtp.esmtp_features
        body = message("intl", subject="Grüße").encode("utf-8")
        refused = smtp.sendmail(SENDER, ["用户@example.com"], body, mail_options=["SMTPUTF8"])
        assert refused == {}
        assert [r["recipient"] for r in box.deliveries().to_dict("records")] == ["用户@example.com"]
        # Without the SMTPUTF8 parameter a non-ASCII address is refused (RFC 6531).
        smtp.mail(SENDER)
        smtp.send("RCPT TO:<zoë@example.com>\r\n".encode())
        code, text = smtp.getreply()
        assert (code, text.split()[0]) == (553, b"5.6.7")


def test_smtputf8_off_refuses_non_ascii() -> None:
    with Sandbox(tls=False, smtputf8=False) as box, client(box) as smtp:
        assert "smtputf8" not in smtp.esmtp_features
        assert smtp.docmd("MAIL FROM:<news@example.com> SMTPUTF8") == (
            501,
            b"Error: SMTPUTF8 disabled",
        )
        smtp.send("MAIL FROM:<zoë@example.com>\r\n".encode())
        assert smtp.getreply() == (500, b"Error: strict ASCII mode")
        assert len(events_named(box, "needs_smtputf8")) == 2


def test_pipelining_is_advertised_and_replies_come_in_order() -> None:
    world = World(addresses={"unknown@example.com": "user_unknown"})
    with Sandbox(world, tls=False) as box, client(box) as smtp:
        assert "pipelining" in smtp.esmtp_features
        smtp.send(
            b"MAIL FROM:<news@example.com>\r\nRCPT TO:<ann@example.com>\r\n"
            b"RCPT TO:<unknown@example.com>\r\nDATA\r\n"
        )
        assert [smtp.getreply()[0] for _ in range(4)] == [250, 250, 550, 354]
        smtp.send(message("piped").encode() + b".\r\n")
        assert smtp.getreply()[0] == 250
        assert list(box.deliveries()["recipient"]) == ["ann@example.com"]
    with Sandbox(tls=False, pipelining=False) as box, client(box) as smtp:
        assert "pipelining" not in smtp.esmtp_features


def test_max_recipients_per_message() -> None:
    with Sandbox(tls=False, max_recipients=2) as box, client(box) as smtp:
        smtp.mail(SENDER)
        assert smtp.rcpt("a@example.com")[0] == 250
        assert smtp.rcpt("b@example.com")[0] == 250
        code, text = smtp.rcpt("c@example.com")
        assert (code, text.split()[0]) == (452, b"4.5.3")
        assert smtp.data(message("two"))[0] == 250
        assert sorted(box.deliveries()["recipient"]) == ["a@example.com", "b@example.com"]


# --- protocol abuse ---------------------------------------------------------------------------

_SMUGGLE = (
    b"Subject: hi\r\n\r\nhello\n.\nMAIL FROM:<evil@example.com>\r\n"
    b"RCPT TO:<victim@example.com>\r\nDATA\r\nforged\r\n.\r\n"
)


@pytest.mark.parametrize(
    ("command", "data", "code", "event", "closes"),
    [
        pytest.param(b"MAIL FROM:<a@example.com>\n", None, 521, "bare_lf", True, id="bare-lf-cmd"),
        pytest.param(
            b"RCPT TO:<a\rb@example.com>\r\n", None, 521, "bare_cr", True, id="bare-cr-cmd"
        ),
        pytest.param(
            b"RCPT TO:<a\x01b@example.com>\r\n", None, 501, "bad_address", False, id="control-char"
        ),
        pytest.param(
            b"NOOP " + b"x" * 600 + b"\r\n", None, 500, "line_too_long", False, id="long-cmd"
        ),
        pytest.param(b"\xff\xfe\x00\r\n", None, 500, "syntax_error", False, id="binary-junk"),
        pytest.param(b"XHACK\r\n", None, 500, "unknown_command", False, id="unknown-command"),
        pytest.param(
            None, b"Subject: a\r\n\r\none\ntwo\r\n.\r\n", 521, "bare_lf", True, id="bare-lf-data"
        ),
        pytest.param(
            None, b"Subject: a\r\n\r\none\rtwo\r\n.\r\n", 521, "bare_cr", True, id="bare-cr-data"
        ),
        pytest.param(None, _SMUGGLE, 521, "smuggling", True, id="lf-dot-lf-smuggling"),
        pytest.param(
            None,
            _SMUGGLE.replace(b"hello\n.\n", b"hello\r\n.\n"),
            521,
            "smuggling",
            True,
            id="crlf-dot-lf-smuggling",
        ),
        pytest.param(
            None,
            b"Subject: a\r\n" + b"X-Long: " + b"y" * 1200 + b"\r\n\r\nbody\r\n.\r\n",
            500,
            "line_too_long",
            False,
            id="long-data-line",
        ),
        pytest.param(
            None,
            b"To: ann@example.com\r\nSubject: hi\r\nBcc: victim@example.com\r\n"
            b"Subject: injected\r\n\r\nbody\r\n.\r\n",
            554,
            "duplicate_header",
            False,
            id="header-injection-duplicate",
        ),
        pytest.param(
            None,
            b"Subject: hi\r\nthis line is not a header\r\n\r\nbody\r\n.\r\n",
            554,
            "malformed_header",
            False,
            id="header-injection-garbage",
        ),
    ],
)
def test_protocol_abuse_is_refused_recorded_and_survived(
    command: bytes | None, data: bytes | None, code: int, event: str, closes: bool
) -> None:
    with Sandbox(tls=False) as box:
        with client(box) as smtp:
            smtp.mail(SENDER)
            if command is not None:
                smtp.send(command)
                reply = smtp.getreply()
            else:
                assert smtp.rcpt("ann@example.com")[0] == 250
                assert smtp.docmd("DATA")[0] == 354
                smtp.send(data)
                reply = smtp.getreply()
            assert reply[0] == code
            if closes:
                with pytest.raises(smtplib.SMTPServerDisconnected):
                    smtp.noop()
            else:
                assert smtp.noop()[0] == 250
        assert len(box.deliveries()) == 0  # nothing smuggled or refused was delivered
        assert [e["code"] for e in events_named(box, event)] == [code]
        assert events_named(box, "internal_error") == []
        with client(box) as smtp:  # the server is still there for the next client
            assert smtp.sendmail(SENDER, ["ann@example.com"], message("after-abuse")) == {}


def test_a_message_without_any_header_is_a_body_and_accepted() -> None:
    with Sandbox(tls=False) as box, client(box) as smtp:
        assert smtp.sendmail(SENDER, ["ann@example.com"], "just a line of text\r\n") == {}
        row = box.deliveries().iloc[0]
        assert row["message_id"] is pd_na() and row["delivery_count"] == 1


def pd_na() -> object:
    import pandas as pd

    return pd.NA


# --- configuration values, DNS, lifecycle -----------------------------------------------------


def test_config_points_at_the_sandbox_and_hides_the_password() -> None:
    with Sandbox(auth=True) as box:
        config = box.config
        assert isinstance(config, SMTPConfig)
        assert (config.host, config.port, config.tls) == ("127.0.0.1", box.port, "starttls")
        assert config.ca_file == box.ca_file and os.path.isfile(config.ca_file or "")
        assert config.username == box.username
        assert box.password is not None and config.password is not None
        secret = box.password.reveal()
        assert config.password.reveal() == secret
        for shown in (repr(config), repr(box), box._repr_html_(), str(box.password)):
            assert secret not in shown
    with Sandbox(tls=False) as box:
        assert (box.config.tls, box.config.ca_file, box.config.username) == ("none", None, None)
        assert box.ca_file is None and box.password is None


def test_mx_delivery_uses_the_resolver_port_and_ca() -> None:
    with Sandbox(World.default()) as box:
        mx = box.mx
        assert isinstance(mx, MXDelivery)
        assert (mx.port, mx.tls, mx.ca_file) == (box.port, "starttls", box.ca_file)
        assert mx.resolver is box.resolver
        hosts = _portal.run(box.resolver.mx("gmail.com")).exchanges
        address = _portal.run(box.resolver.addresses(hosts[0]))[0]
        target = mx.config_for(address)
        smtp = smtplib.SMTP(target.host, target.port, timeout=10)
        try:  # the certificate is verified against the address the resolver gave
            smtp.starttls(context=ssl.create_default_context(cafile=target.ca_file))
            assert smtp.ehlo()[0] == 250
        finally:
            smtp.close()
    with Sandbox(tls=False) as box:
        assert (box.mx.tls, box.mx.ca_file) == ("none", None)


@pytest.mark.parametrize(
    ("domain", "status", "hosts"),
    [
        pytest.param("gmail.com", "ok", ((10, "mx1.gmail.com"),), id="provider"),
        pytest.param("Acme-Logistics.COM", "ok", ((10, "mx1.acme-logistics.com"),), id="company"),
        pytest.param(
            "xn--bcher-kva.example.de", "ok", ((10, "mx1.xn--bcher-kva.example.de"),), id="idn"
        ),
        pytest.param("example.com", "ok", ((10, "mx1.example.com"),), id="example"),
        pytest.param("gmial.com", "nxdomain", (), id="typo-nxdomain"),
        pytest.param("no-such-place.example", "nxdomain", (), id="unknown-nxdomain"),
        pytest.param("nullmx.example", "null_mx", (), id="null-mx"),
        pytest.param("dns-down.example", "error", (), id="failing-dns"),
    ],
)
def test_resolver_answers_for_the_world(
    domain: str, status: str, hosts: tuple[object, ...]
) -> None:
    box = Sandbox(World.default())  # the resolver needs no running server
    answer = _portal.run(box.resolver.mx(domain))
    assert (answer.status, answer.hosts) == (status, hosts)
    if hosts:
        assert _portal.run(box.resolver.addresses(answer.exchanges[0])) == ("127.0.0.1",)


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("0.0.0.0", id="any-ipv4"),
        pytest.param("::", id="any-ipv6"),
        pytest.param("192.168.1.10", id="private"),
        pytest.param("8.8.8.8", id="public"),
        pytest.param("mail.example.com", id="hostname"),
    ],
)
def test_non_loopback_bind_is_refused(host: str) -> None:
    with pytest.raises(SandboxError, match=r"listens only on a loopback address .* never on"):
        Sandbox(host=host)


@pytest.mark.parametrize(
    ("options", "message_part"),
    [
        pytest.param({"tls": False, "auth": True}, "auth=True needs tls=True", id="auth-no-tls"),
        pytest.param({"port": 70000}, "port must be 0", id="bad-port"),
        pytest.param({"size_limit": 0}, "size_limit must be", id="bad-size"),
        pytest.param({"max_recipients": 0}, "max_recipients must be", id="bad-max-rcpt"),
        pytest.param({"world": "default"}, "needs a smtpkit.sandbox.World", id="bad-world"),
    ],
)
def test_bad_options_are_refused_before_start(
    options: dict[str, object], message_part: str
) -> None:
    with pytest.raises(SandboxError, match=re.escape(message_part)):
        Sandbox(**options)  # type: ignore[arg-type]


def ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_ipv6_loopback_serves_tls_and_resolves_to_itself() -> None:
    if not ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    with Sandbox(World.default(), host="::1") as box:
        assert box.config.server == f"[::1]:{box.port}"
        answer = _portal.run(box.resolver.mx("gmail.com"))
        assert _portal.run(box.resolver.addresses(answer.exchanges[0])) == ("::1",)
        with smtplib.SMTP("::1", box.port, timeout=10) as smtp:
            smtp.starttls(context=tls_context(box))  # the certificate carries the ::1 SAN
            assert smtp.sendmail(SENDER, ["ann@example.com"], message("v6")) == {}
        assert rows_for(box, "ann@example.com")[0]["tls"] is True


def sandbox_threads() -> int:
    return sum(t.name == "smtpkit-sandbox" and t.is_alive() for t in threading.enumerate())


def test_start_and_stop_twice_and_restart() -> None:
    before = sandbox_threads()
    box = Sandbox(tls=True)
    with pytest.raises(SandboxError, match="not running"):
        _ = box.config
    assert box.start() is box
    ca_file = box.ca_file
    with pytest.raises(SandboxError, match="already running"):
        box.start()
    with client(box) as smtp:
        smtp.sendmail(SENDER, ["ann@example.com"], message("first-run"))
    box.stop()
    box.stop()  # a second stop does nothing
    assert not box.running and sandbox_threads() == before
    assert ca_file is not None and not os.path.exists(ca_file)
    with box:  # a stopped sandbox starts again, with its records kept
        with client(box) as smtp:
            smtp.sendmail(SENDER, ["ann@example.com"], message("second-run"))
        assert list(box.deliveries()["message_id"]) == [
            "<first-run@example.com>",
            "<second-run@example.com>",
        ]
    assert sandbox_threads() == before


def test_busy_port_gives_a_clear_error() -> None:
    with Sandbox(tls=False) as first:
        with pytest.raises(SandboxError, match=rf"could not listen on 127.0.0.1 port {first.port}"):
            Sandbox(tls=False, port=first.port).start()


def test_stop_closes_open_client_connections() -> None:
    box = Sandbox(tls=False).start()
    smtp = smtplib.SMTP(box.host, box.port, timeout=10)
    smtp.ehlo()
    box.stop()
    with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
        smtp.noop()
    smtp.close()


async def test_used_from_inside_a_running_event_loop() -> None:
    import aiosmtplib

    with Sandbox(World.default()) as box:  # start() and stop() block only briefly
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = SENDER, "ann@example.com", "From a loop"
        mail["Message-ID"] = "<in-loop@example.com>"
        mail.set_content("hello")
        errors, _ = await aiosmtplib.send(
            mail,
            hostname=box.host,
            port=box.port,
            start_tls=True,
            tls_context=tls_context(box),
        )
        assert errors == {}
        assert (await box.resolver.mx("yahoo.com")).status == "ok"
        assert _portal.run(box.resolver.mx("gmail.com")).status == "ok"  # sync face, too
        with client(box) as smtp:  # a blocking client in the loop's own thread
            smtp.sendmail(SENDER, ["bob@example.com"], message("blocking-in-loop"))
        assert sorted(box.deliveries()["recipient"]) == ["ann@example.com", "bob@example.com"]
        await asyncio.sleep(0)


def test_cli_runs_standalone_until_ctrl_c() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "smtpkit.cli", "sandbox"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=default_sigint,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(lines)
        port = int(re.search(r"listening on 127\.0\.0\.1 port (\d+)", text).group(1))  # type: ignore[union-attr]
        ca_file = re.search(r"CA file:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        username = re.search(r"username:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        password = re.search(r"password:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=10)
        try:
            smtp.starttls(context=ssl.create_default_context(cafile=ca_file))
            smtp.login(username, password)
            assert smtp.sendmail(SENDER, ["ann@example.com"], message("cli")) == {}
            smtp.quit()
        finally:
            smtp.close()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped after 1 deliveries." in out
    assert not os.path.exists(ca_file)
