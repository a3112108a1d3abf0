"""Summaries and the HTML report: exact on hand-checkable frames, consistent on a whole campaign.

``make_campaign`` builds a seeded, realistic campaign (the sample contact list, cleaned, sent with
greylisting, throttling, unknown users and dropped connections, then bounces and complaints) and
keeps the ground truth of what it did, so the summaries are checked against independent counts.
``tests/test_plot.py`` uses it too.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import html.parser
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import smtpkit
from smtpkit import report
from smtpkit._sample import make_contacts
from smtpkit.errors import InputError, MissingColumnError
from smtpkit.outcomes import STATUSES, Attempt, Outcome, attempts_frame, outcomes_frame

T0 = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
RATE = 40.0  # first attempts per second
RETRY_AFTER = 5.0  # seconds between attempts of one recipient

# fate -> the status of each attempt, (reply code, enhanced code, server text) per status
FATES: dict[str, list[str]] = {
    "accepted": ["sent"],
    "greylisted": ["deferred", "sent"],
    "user_unknown": ["failed"],
    "throttled": ["deferred", "deferred", "deferred"],
    "lost": ["unknown"],
}
REPLIES: dict[tuple[str, str], tuple[int | None, str | None, str | None]] = {
    ("accepted", "sent"): (250, "2.0.0", "2.0.0 Ok: queued as 4Q1"),
    ("greylisted", "deferred"): (451, "4.7.1", "4.7.1 Greylisted, please try again later"),
    ("greylisted", "sent"): (250, "2.0.0", "2.0.0 Ok: queued as 4Q2"),
    ("user_unknown", "failed"): (550, "5.1.1", "5.1.1 <x>: Recipient rejected: User unknown"),
    ("throttled", "deferred"): (421, "4.7.0", "4.7.0 Too many connections, slow down"),
    ("lost", "unknown"): (None, None, None),
}
REASONS = {"accepted": "accepted", "greylisted": "accepted", "user_unknown": "user_unknown",
           "throttled": "throttled", "lost": "connection_lost_after_data"}


@dataclasses.dataclass
class Campaign:
    cleaned: pd.DataFrame
    outcomes: pd.DataFrame  # as send returns it
    attempts: pd.DataFrame
    bounces: pd.DataFrame  # as read_bounces returns it
    applied: pd.DataFrame  # outcomes after apply_bounces
    fates: collections.Counter[str]
    bounce_kinds: collections.Counter[str]


def make_campaign(n: int = 600, *, seed: int = 11) -> Campaign:
    """A seeded campaign over the sample contacts, with its ground truth."""
    rng = random.Random(seed)
    contacts = make_contacts(n, seed=seed)
    address = contacts["email"].astype("string").str.strip().str.lower()
    valid = (
        address.str.fullmatch(r"[a-z0-9._+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}")
        .fillna(False)
        .astype(bool)
    )
    duplicate = valid & address.duplicated()
    sendable = valid & ~duplicate
    cleaned = pd.DataFrame(
        {
            "email": contacts["email"],
            "email_normalized": address.where(valid),
            "domain": address.str.extract(r"@([^@]+)$", expand=False),
            "valid": valid,
            "duplicate": duplicate,
            "suppressed": False,
            "sendable": sendable,
            "reason": np.select([sendable, duplicate], ["ok", "duplicate"], "invalid_syntax"),
            "plan": contacts["plan"],
        },
        index=contacts.index,
    )
    outcomes: list[Outcome] = []
    attempts: list[Attempt] = []
    bounces: list[dict[str, Any]] = []
    fates: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    order = 0
    for index, row in cleaned.iterrows():
        segment = str(row["plan"])
        if not row["sendable"]:
            outcomes.append(Outcome(recipient=str(row["email"] or "").strip(), status="skipped",
                                    reason=str(row["reason"]), segment=segment))
            continue
        recipient = str(row["email_normalized"])
        slow = str(row["domain"]) == "yahoo.com"  # one provider throttles more than the rest
        fate = rng.choices(list(FATES), [80, 8, 6, 14 if slow else 3, 2])[0]
        fates[fate] += 1
        start = T0 + order / RATE
        order += 1
        for number, status in enumerate(FATES[fate], 1):
            began = start + (number - 1) * RETRY_AFTER
            took = rng.lognormvariate(3.4, 0.45) * (2.0 if slow else 1.0)
            code, enhanced, text = REPLIES[(fate, status)]
            attempts.append(Attempt(recipient=recipient, attempt=number, status=status,  # type: ignore[arg-type]
                                    smtp_code=code, smtp_status=enhanced, smtp_message=text,
                                    started_at=began, finished_at=began + took / 1000,
                                    latency_ms=took, segment=segment, server="127.0.0.1:2525"))
        final = FATES[fate][-1]
        outcomes.append(Outcome(
            recipient=recipient, status=final, reason=REASONS[fate],  # type: ignore[arg-type]
            smtp_code=code, smtp_status=enhanced, smtp_message=text, attempts=len(FATES[fate]),
            first_attempt_at=start, last_attempt_at=began + took / 1000,
            latency_ms=None if final == "unknown" else took, message_id=f"<{index}@example.com>",
            segment=segment, server="127.0.0.1:2525",
            envelope_sender=f"bounces+t{index}@example.com",
        ))
        if final != "sent":
            continue
        draw = rng.random()
        for kind, reason, status_code, hard, below in (
            ("bounce", "user_unknown", "5.1.1", True, 0.04),
            ("bounce", "mailbox_full", "4.2.2", False, 0.05),
            ("complaint", "abuse", None, True, 0.065),
            ("delay", "greylisted", "4.7.1", False, 0.075),
            ("auto_reply", "auto_reply", None, False, 0.085),
        ):
            if draw < below:
                kinds[f"{kind}:{reason}"] += 1
                bounces.append({
                    "recipient": recipient, "original_message_id": f"<{index}@example.com>",
                    "kind": kind, "status": status_code, "reason": reason, "hard": hard,
                    "arrived_at": pd.Timestamp(start + 60, unit="s", tz="UTC"),
                    "bounce_to": f"bounces+t{index}@example.com",
                })
                break
    outcome_frame = outcomes_frame(outcomes, index=cleaned.index)
    bounce_frame = pd.DataFrame(bounces)
    applied = outcome_frame.copy()
    for column in ("bounce_kind", "bounce_status", "bounce_reason"):
        applied[column] = pd.Series(pd.NA, index=applied.index, dtype="string")
    applied["hard"] = pd.Series(pd.NA, index=applied.index, dtype="boolean")
    sent = applied["status"] == "sent"
    position = {r: i for i, r in enumerate(applied["recipient"]) if sent.iat[i]}
    for bounce in bounces:
        if bounce["kind"] not in ("bounce", "complaint"):
            continue
        at = position[bounce["recipient"]]
        applied.iloc[at, applied.columns.get_loc("status")] = (
            "bounced" if bounce["kind"] == "bounce" else "complained")
        applied.iloc[at, applied.columns.get_loc("bounce_kind")] = bounce["kind"]
        applied.iloc[at, applied.columns.get_loc("bounce_status")] = bounce["status"]
        applied.iloc[at, applied.columns.get_loc("bounce_reason")] = bounce["reason"]
        applied.iloc[at, applied.columns.get_loc("hard")] = bounce["hard"]
    return Campaign(cleaned, outcome_frame, attempts_frame(attempts), bounce_frame, applied, fates,
                    kinds)


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return make_campaign()


def frame_of(*rows: dict[str, Any]) -> pd.DataFrame:
    return outcomes_frame(list(rows))


# --- summarize --------------------------------------------------------------------------------


def test_summarize_counts_every_status_in_order_with_rates() -> None:
    frame = frame_of(
        {"recipient": "a@x.com", "status": "sent"},
        {"recipient": "b@x.com", "status": "sent"},
        {"recipient": "c@x.com", "status": "failed"},
        {"recipient": "d@x.com", "status": "bounced"},
    )
    result = report.summarize(frame)
    assert list(result.index) == list(STATUSES)
    assert result.index.name == "status"
    assert result["count"].tolist() == [2, 0, 1, 0, 0, 1, 0]
    assert result["rate"].tolist() == [0.5, 0.0, 0.25, 0.0, 0.0, 0.25, 0.0]


def test_summarize_keeps_unexpected_and_missing_statuses_as_rows() -> None:
    frame = pd.DataFrame({"recipient": ["a@x.com", "b@x.com", "c@x.com"],
                          "status": ["sent", "queued", None]})
    result = report.summarize(frame)
    assert list(result.index[-2:]) == ["queued", "(none)"]
    assert result["count"].sum() == 3
    assert result.loc["queued", "count"] == 1 and result.loc["(none)", "count"] == 1


@pytest.mark.parametrize(
    ("rows", "by", "expected"),
    [
        pytest.param(
            [("a@x.com", "sent", "A"), ("b@x.com", "failed", "A"), ("c@y.com", "sent", "B")],
            "segment",
            {"A": {"total": 2, "sent": 1, "failed": 1}, "B": {"total": 1, "sent": 1, "failed": 0}},
            id="by-segment",
        ),
        pytest.param(
            [("a@X.COM", "sent", None), (" b@x.com ", "deferred", None), ("c@y.com", "sent", None),
             ("no-at-sign", "failed", None), (None, "skipped", None)],
            "domain",
            {"x.com": {"total": 2, "sent": 1, "deferred": 1}, "y.com": {"total": 1, "sent": 1},
             "(none)": {"total": 2, "failed": 1, "skipped": 1}},
            id="domain-from-recipient-case-folded",
        ),
        pytest.param(
            [("a@x.com", "sent", None), ("b@x.com", "sent", "A")],
            "segment",
            {"A": {"total": 1, "sent": 1}, "(none)": {"total": 1, "sent": 1}},
            id="missing-segment-is-a-group",
        ),
    ],
)
def test_summarize_by_group(rows: list[tuple[Any, ...]], by: str,
                            expected: dict[str, dict[str, int]]) -> None:
    frame = frame_of(*({"recipient": r, "status": s, "segment": g} for r, s, g in rows))
    result = report.summarize(frame, by=by)
    assert list(result.index) == list(expected)  # largest first, "(none)" last
    assert result.index.name == by
    assert list(result.columns) == ["total", *STATUSES, *(f"{s}_rate" for s in STATUSES)]
    for group, counts in expected.items():
        for column, value in counts.items():
            assert result.loc[group, column] == value, (group, column)
        assert result.loc[group, STATUSES].sum() == counts["total"]
        sent_rate = counts.get("sent", 0) / counts["total"]
        assert result.loc[group, "sent_rate"] == pytest.approx(sent_rate)


def test_summarize_top_pools_the_rest_without_losing_rows() -> None:
    rows = [{"recipient": f"u{i}@{d}", "status": "sent"}
            for i, d in enumerate(["a.com"] * 5 + ["b.com"] * 3 + ["c.com"] * 2 + ["d.com"])]
    result = report.summarize(frame_of(*rows), by="domain", top=2)
    assert result["total"].to_dict() == {"a.com": 5, "b.com": 3, "(2 others)": 3}


def test_summarize_by_a_missing_column_says_which_columns_exist() -> None:
    frame = frame_of({"recipient": "a@x.com", "status": "sent"}).drop(columns="segment")
    with pytest.raises(MissingColumnError, match=r"needs the column\(s\) 'segment' in the frame, "
                       r"which has: recipient, status,"):
        report.summarize(frame, by="segment")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: report.summarize([1, 2]),
                     "needs a pandas DataFrame as outcomes, not list", id="not-a-frame"),
        pytest.param(lambda: report.summarize(pd.DataFrame({"x": [1]})),
                     r"summarize\(\) needs the column\(s\) 'status'", id="no-status"),
        pytest.param(lambda: report.summarize(frame_of(), by="domain", top=0),
                     "top= as a whole number of at least 1", id="top-zero"),
        pytest.param(lambda: report.summarize(frame_of(), by=["segment"]),  # type: ignore[arg-type]
                     "one column name", id="by-list"),
    ],
)
def test_summarize_rejects_bad_calls_with_a_sentence(call: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()


def test_summarize_of_an_empty_frame() -> None:
    empty = frame_of()
    assert report.summarize(empty)["count"].sum() == 0
    assert report.summarize(empty)["rate"].isna().all()
    by_domain = report.summarize(empty, by="domain")
    assert by_domain.empty and "total" in by_domain.columns


def test_summarize_through_the_accessor_and_leaves_its_input_alone(campaign: Campaign) -> None:
    before = campaign.applied.copy()
    via_accessor = campaign.applied.smtpkit.summarize(by="segment")
    pd.testing.assert_frame_equal(via_accessor, smtpkit.summarize(campaign.applied, by="segment"))
    pd.testing.assert_frame_equal(campaign.applied, before)


def test_summarize_a_campaign_matches_what_happened(campaign: Campaign) -> None:
    result = report.summarize(campaign.applied)
    f, k = campaign.fates, campaign.bounce_kinds
    bounced = k["bounce:user_unknown"] + k["bounce:mailbox_full"]
    assert result.loc["bounced", "count"] == bounced
    assert result.loc["complained", "count"] == k["complaint:abuse"]
    sent = f["accepted"] + f["greylisted"]
    assert result.loc["sent", "count"] == sent - bounced - k["complaint:abuse"]
    assert result.loc["failed", "count"] == f["user_unknown"]
    assert result.loc["deferred", "count"] == f["throttled"]
    assert result.loc["unknown", "count"] == f["lost"]
    assert result.loc["skipped", "count"] == (~campaign.cleaned["sendable"]).sum()
    assert result["count"].sum() == len(campaign.applied)
    by_plan = report.summarize(campaign.applied, by="segment")
    assert set(by_plan.index) == {"free", "pro", "enterprise"}
    assert by_plan["total"].sum() == len(campaign.applied)
    # yahoo.com throttles more in this world, and the summary shows it
    by_domain = report.summarize(campaign.applied, by="domain")
    assert by_domain.loc["yahoo.com", "deferred_rate"] > by_domain.loc["gmail.com", "deferred_rate"]


# --- funnel -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cleaned", "statuses", "expected"),
    [
        pytest.param(
            {"valid": [True, True, True, False], "duplicate": [False, True, False, False],
             "sendable": [True, False, True, False]},
            ["sent", "bounced", "complained", "skipped"],
            {"contacts": 4, "valid": 3, "unique": 2, "sendable": 2, "sent": 3, "delivered": 2,
             "bounced": 1, "complained": 1},
            id="every-stage",
        ),
        pytest.param(
            {"valid": [True, None, True], "sendable": [True, False, pd.NA]},
            ["sent", "unknown", "deferred"],
            {"contacts": 3, "valid": 2, "unique": 2, "sendable": 1, "sent": 1, "delivered": 1,
             "bounced": 0, "complained": 0},
            id="no-duplicate-column-and-missing-flags-are-false",
        ),
    ],
)
def test_funnel_stages(cleaned: dict[str, list[Any]], statuses: list[str],
                       expected: dict[str, int]) -> None:
    outcomes = frame_of(*({"recipient": f"u{i}@x.com", "status": s}
                          for i, s in enumerate(statuses)))
    result = report.funnel(pd.DataFrame(cleaned), outcomes)
    assert result["count"].to_dict() == expected
    assert list(result.index) == list(report.FUNNEL_STAGES)
    assert result.loc["valid", "share"] == pytest.approx(expected["valid"] / expected["contacts"])
    assert result.loc["unique", "base"] == "valid"
    assert result.loc["bounced", "base"] == "sent"
    if expected["sent"]:
        assert result.loc["delivered", "conversion"] == pytest.approx(
            expected["delivered"] / expected["sent"])


def test_funnel_from_the_journal_alone_starts_at_the_recipients() -> None:
    outcomes = frame_of(*({"recipient": f"u{i}@x.com", "status": s}
                          for i, s in enumerate(["sent", "skipped", "failed", "bounced"])))
    result = report.funnel(None, outcomes)
    assert result["count"].to_dict() == {"recipients": 4, "attempted": 3, "sent": 2,
                                         "delivered": 1, "bounced": 1, "complained": 0}
    assert result.loc["sent", "conversion"] == pytest.approx(2 / 3)


def test_funnel_needs_a_cleaned_frame() -> None:
    with pytest.raises(MissingColumnError, match=r"funnel\(\) needs the column\(s\) 'valid', "
                       r"'sendable' in cleaned, which has: email"):
        report.funnel(pd.DataFrame({"email": ["a@x.com"]}), frame_of())
    with pytest.raises(InputError, match="True/False values in the column 'valid'"):
        report.funnel(pd.DataFrame({"valid": ["yes"], "sendable": [True]}), frame_of())


def test_funnel_of_a_campaign_matches_what_happened(campaign: Campaign) -> None:
    result = report.funnel(campaign.cleaned, campaign.applied)
    f, k = campaign.fates, campaign.bounce_kinds
    sent = f["accepted"] + f["greylisted"]
    bounced = k["bounce:user_unknown"] + k["bounce:mailbox_full"]
    assert result.loc["sendable", "count"] == sum(f.values())
    assert result.loc["sent", "count"] == sent
    assert result.loc["delivered", "count"] == sent - bounced
    assert result.loc["complained", "count"] == k["complaint:abuse"]
    assert result.loc["unique", "count"] == (campaign.cleaned["valid"]
                                             & ~campaign.cleaned["duplicate"]).sum()


# --- latency ----------------------------------------------------------------------------------


def test_latency_percentiles_interpolate_linearly() -> None:
    rows = [{"recipient": f"u{i}@x.com", "status": "sent", "latency_ms": float(i)}
            for i in range(1, 101)]
    rows += [{"recipient": "v@y.com", "status": "sent", "latency_ms": 7.0},
             {"recipient": "w@y.com", "status": "failed", "latency_ms": None}]
    result = report.latency(frame_of(*rows))
    assert list(result.columns) == ["count", "p50_ms", "p95_ms", "p99_ms", "max_ms"]
    assert list(result.index) == ["x.com", "y.com"]
    assert result.loc["x.com"].tolist() == pytest.approx([100, 50.5, 95.05, 99.01, 100.0])
    assert result.loc["y.com"].tolist() == pytest.approx([1, 7.0, 7.0, 7.0, 7.0])
    overall = report.latency(frame_of(*rows), by=None)
    assert list(overall.index) == ["all"] and overall.loc["all", "count"] == 101


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(frame_of(), id="empty"),
        pytest.param(frame_of({"recipient": "a@x.com", "status": "unknown"},
                              {"recipient": "b@x.com", "status": "skipped"}), id="all-na"),
    ],
)
def test_latency_without_measurements_is_an_empty_table(frame: pd.DataFrame) -> None:
    result = report.latency(frame)
    assert result.empty
    assert list(result.columns) == ["count", "p50_ms", "p95_ms", "p99_ms", "max_ms"]
    assert result.index.name == "domain"


def test_latency_of_a_campaign_shows_the_slow_provider(campaign: Campaign) -> None:
    result = report.latency(campaign.applied, top=5)
    measured = campaign.applied["latency_ms"].notna().sum()
    assert result["count"].sum() == measured
    assert len(result) == 6 and report._is_pooled(result.index[-1])
    assert result.loc["yahoo.com", "p50_ms"] > 1.5 * result.loc["gmail.com", "p50_ms"]
    assert (result["p50_ms"] <= result["p95_ms"]).all()
    assert (result["p95_ms"] <= result["p99_ms"]).all()
    assert (result["p99_ms"] <= result["max_ms"]).all()


# --- timeline ---------------------------------------------------------------------------------


def test_timeline_bins_attempts_and_tracks_each_recipients_latest_status() -> None:
    frame = attempts_frame([
        {"recipient": "a@x.com", "attempt": 1, "status": "deferred", "finished_at": 100.2},
        {"recipient": "b@x.com", "attempt": 1, "status": "sent", "finished_at": 100.7},
        {"recipient": "c@x.com", "attempt": 1, "status": "failed", "started_at": 101.1},
        {"recipient": "a@x.com", "attempt": 2, "status": "sent", "finished_at": 103.4},
        {"recipient": "d@x.com", "attempt": 1, "status": "sent"},  # no time at all
    ])
    result = report.timeline(frame)
    assert result.index.name == "time"
    assert str(result.index.tz) == "UTC"
    assert list(result.index) == [pd.Timestamp(t, unit="s", tz="UTC") for t in (100, 101, 102, 103)]
    assert result.columns.tolist() == [
        "attempts", "per_second", "retries", "sent", "deferred", "failed", "unknown",
        "recipients_sent", "recipients_deferred", "recipients_failed", "recipients_unknown",
    ]
    assert result["attempts"].tolist() == [2, 1, 0, 1]
    assert result["per_second"].tolist() == [2.0, 1.0, 0.0, 1.0]
    assert result["retries"].tolist() == [0, 0, 0, 1]
    assert result["sent"].tolist() == [1, 0, 0, 1]
    assert result["deferred"].tolist() == [1, 0, 0, 0]
    assert result["failed"].tolist() == [0, 1, 0, 0]
    assert result["recipients_sent"].tolist() == [1, 1, 1, 2]
    assert result["recipients_deferred"].tolist() == [1, 1, 1, 0]
    assert result["recipients_failed"].tolist() == [0, 1, 1, 1]
    assert result.attrs["untimed_attempts"] == 1


def test_timeline_with_wider_bins() -> None:
    frame = attempts_frame([
        {"recipient": f"u{i}@x.com", "attempt": 1, "status": "sent", "finished_at": 10.0 + i}
        for i in range(25)
    ])
    result = report.timeline(frame, freq="10s")
    assert result["attempts"].tolist() == [10, 10, 5]
    assert result["per_second"].tolist() == [1.0, 1.0, 0.5]
    assert result["recipients_sent"].tolist() == [10, 20, 25]


@pytest.mark.parametrize(
    ("freq", "message"),
    [
        pytest.param("soon", "freq= as a fixed duration such as '1s'", id="not-a-duration"),
        pytest.param("0s", "a positive freq=", id="zero"),
        pytest.param("1ms", "would need 3,000,000,001 bins", id="too-many-bins"),
    ],
)
def test_timeline_refuses_a_bad_freq(freq: str, message: str) -> None:
    frame = attempts_frame([
        {"recipient": "a@x.com", "attempt": 1, "status": "sent", "finished_at": 0.0},
        {"recipient": "b@x.com", "attempt": 1, "status": "sent", "finished_at": 3_000_000.0},
    ])
    with pytest.raises(InputError, match=message):
        report.timeline(frame, freq=freq)


def test_timeline_of_no_attempts() -> None:
    result = report.timeline(attempts_frame([]))
    assert result.empty and "recipients_sent" in result.columns
    assert result.attrs["untimed_attempts"] == 0


def test_timeline_of_a_campaign_matches_what_happened(campaign: Campaign) -> None:
    result = report.timeline(campaign.attempts)
    f = campaign.fates
    assert result["attempts"].sum() == len(campaign.attempts)
    assert result["retries"].sum() == f["greylisted"] + 2 * f["throttled"]
    last = result.iloc[-1]
    assert last["recipients_sent"] == f["accepted"] + f["greylisted"]
    assert last["recipients_deferred"] == f["throttled"]
    assert last["recipients_failed"] == f["user_unknown"]
    assert last["recipients_unknown"] == f["lost"]
    # while the campaign runs, greylisted recipients wait as deferred before they are sent
    assert result["recipients_deferred"].max() > last["recipients_deferred"]
    assert (result[[c for c in result.columns if c.startswith("recipients_")]].sum(axis=1)
            .is_monotonic_increasing)


# --- codes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "enhanced", "category", "meaning"),
    [
        pytest.param(250, "2.0.0", "success", "accepted", id="accepted"),
        pytest.param(550, "5.1.1", "permanent failure", "the mailbox does not exist (user unknown)",
                     id="user-unknown"),
        pytest.param(552, "5.2.2", "permanent failure", "the mailbox is full", id="mailbox-full"),
        pytest.param(451, "4.7.1", "temporary failure", "delivery not authorized; the message "
                     "was refused (often blocked or spam)", id="greylisted-4.7.1"),
        pytest.param(421, "4.7.0", "temporary failure", "refused by security or policy; the "
                     "server is not available right now and is closing the connection (often "
                     "throttling)", id="generic-detail-adds-the-reply-meaning"),
        pytest.param(554, None, "permanent failure",
                     "transaction failed (often refused as spam or by policy)", id="reply-only"),
        pytest.param(None, "5.1.10", "permanent failure",
                     "the recipient's domain accepts no mail (null MX)", id="enhanced-only"),
        pytest.param(550, "5.9.9", "permanent failure", "the mailbox is unavailable (does not "
                     "exist, no access, or refused by policy)", id="unknown-enhanced-falls-back"),
        pytest.param(599, None, "permanent failure", "reply code 599 is not a standard one",
                     id="non-standard"),
        pytest.param(None, None, "no reply", "no SMTP reply: the connection failed or nothing "
                     "was sent (see reason)", id="no-reply"),
        pytest.param(250, "junk", "success", "accepted", id="malformed-enhanced-ignored"),
    ],
)
def test_code_meaning(code: int | None, enhanced: str | None, category: str, meaning: str) -> None:
    assert report.code_meaning(code, enhanced) == (category, meaning)


def test_codes_counts_each_reply_most_frequent_first() -> None:
    frame = frame_of(
        {"recipient": "a@x.com", "status": "failed", "smtp_code": 550, "smtp_status": "5.1.1",
         "smtp_message": "5.1.1 User unknown"},
        {"recipient": "b@x.com", "status": "failed", "smtp_code": 550, "smtp_status": "5.1.1",
         "smtp_message": "5.1.1 User unknown"},
        {"recipient": "c@x.com", "status": "failed", "smtp_code": 550, "smtp_status": "5.1.1",
         "smtp_message": "5.1.1 No such user"},
        {"recipient": "d@x.com", "status": "sent", "smtp_code": 250, "smtp_status": "2.0.0"},
        {"recipient": "e@x.com", "status": "bounced", "smtp_code": 250, "smtp_status": "2.0.0"},
        {"recipient": "f@x.com", "status": "skipped", "reason": "invalid_syntax"},
    )
    result = report.codes(frame)
    assert result.columns.tolist() == ["smtp_code", "smtp_status", "count", "share", "category",
                                       "meaning", "statuses", "example"]
    assert result["count"].tolist() == [3, 2, 1]
    assert result["smtp_code"].tolist()[:2] == [550, 250] and pd.isna(result["smtp_code"].iloc[2])
    assert result.loc[0, "example"] == "5.1.1 User unknown"
    assert result.loc[1, "statuses"] == "sent, bounced"
    assert result.loc[2, "category"] == "no reply"
    assert result["share"].sum() == pytest.approx(1.0)


def test_codes_of_a_campaign(campaign: Campaign) -> None:
    result = report.codes(campaign.outcomes).set_index("smtp_status")
    f = campaign.fates
    assert result.loc["5.1.1", "count"] == f["user_unknown"]
    assert result.loc["4.7.0", "count"] == f["throttled"]
    assert result.loc["2.0.0", "count"] == f["accepted"] + f["greylisted"]
    assert report.codes(frame_of()).empty


# --- bounce reasons ---------------------------------------------------------------------------


def test_bounce_reasons_from_a_bounces_frame() -> None:
    frame = pd.DataFrame({
        "kind": ["bounce", "bounce", "bounce", "delay", "complaint", "auto_reply", "unparsed",
                 "bounce"],
        "reason": ["user_unknown", "user_unknown", "mailbox_full", "mailbox_full", "abuse", None,
                   None, "blocked"],
        "hard": [True, True, False, False, True, False, False, None],
        "status": ["5.1.1", "5.1.1", "4.2.2", "4.2.2", None, None, None, "5.7.1"],
    })
    result = report.bounce_reasons(frame)
    assert result.columns.tolist() == ["total", "hard bounce", "soft bounce", "delay", "complaint",
                                       "unparsed"]
    assert result.loc["user_unknown"].tolist() == [2, 2, 0, 0, 0, 0]
    assert result.loc["mailbox_full"].tolist() == [2, 0, 1, 1, 0, 0]
    assert result.loc["blocked", "hard bounce"] == 1  # no hard flag: the 5.x.x status decides
    assert result.loc["(none)", "unparsed"] == 1  # the auto-reply is not counted
    assert result["total"].sum() == 7


def test_bounce_reasons_from_outcomes_after_apply_bounces(campaign: Campaign) -> None:
    result = report.bounce_reasons(campaign.applied)
    k = campaign.bounce_kinds
    assert result.loc["user_unknown", "hard bounce"] == k["bounce:user_unknown"]
    assert result.loc["mailbox_full", "soft bounce"] == k["bounce:mailbox_full"]
    assert result.loc["abuse", "complaint"] == k["complaint:abuse"]
    with pytest.raises(MissingColumnError, match=r"a frame of smtpkit\.read_bounces"):
        report.bounce_reasons(campaign.outcomes)


# --- the HTML report --------------------------------------------------------------------------


class _Page(html.parser.HTMLParser):
    """Every tag with its attributes, the headings, and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.headings: list[str] = []
        self.text: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_heading = tag in ("h1", "h2", "h3")

    def handle_endtag(self, tag: str) -> None:
        self._in_heading = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_heading:
            self.headings.append(data)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def assert_self_contained(page: _Page) -> list[bytes]:
    """No resource is loaded from anywhere; returns the decoded images."""
    images = []
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href", "srcset", "action", "data", "poster"):
                assert value is not None and value.startswith("data:image/png;base64,"), (tag, name)
                images.append(base64.b64decode(value.removeprefix("data:image/png;base64,"),
                                               validate=True))
    return images


def test_report_html_is_one_self_contained_page(campaign: Campaign, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    page = report.report_html(campaign.cleaned, campaign.applied, attempts=campaign.attempts,
                              bounces=campaign.bounces, path=target, title="Spring campaign")
    assert target.read_text(encoding="utf-8") == page
    parsed = parse(page)
    images = assert_self_contained(parsed)
    assert len(images) == 6  # funnel, segment, domain, latency, timeline, bounce reasons
    for image in images:
        assert image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 5_000
    assert parsed.headings[:1] == ["Spring campaign"]
    for section in ("Funnel", "Outcomes", "By segment", "By domain", "Latency", "Timeline",
                    "SMTP reply codes", "Bounces and complaints"):
        assert section in parsed.headings
    text = " ".join(parsed.text)
    sent = campaign.fates["accepted"] + campaign.fates["greylisted"]
    assert f"{sent:,}" in text  # the sent card
    assert "the mailbox does not exist (user unknown)" in text
    assert "re-sent automatically" in text


def test_report_html_escapes_everything_from_the_data() -> None:
    evil = '<script>alert("x")</script><img src="http://evil.example/x.png">'
    frame = frame_of(
        {"recipient": "a@x.com", "status": "failed", "smtp_code": 550, "smtp_status": "5.7.1",
         "smtp_message": evil, "segment": evil, "reason": evil, "latency_ms": 10.0},
        {"recipient": 'b@"><marquee>.com', "status": "sent", "smtp_code": 250, "segment": "$5 plan",
         "latency_ms": 12.0},
    )
    page = report.report_html(None, frame, title="<marquee>Q2</marquee> & more")
    parsed = parse(page)
    assert_self_contained(parsed)
    assert not [t for t, _ in parsed.tags if t in ("marquee", "script")]
    assert [t for t, a in parsed.tags if t == "img" and "evil" in str(a.get("src"))] == []
    text = "".join(parsed.text)
    assert evil in text  # shown as text, whole
    assert "<marquee>Q2</marquee> & more" in text
    assert "$5 plan" in text


@pytest.mark.parametrize(
    "outcomes",
    [
        pytest.param(frame_of(), id="empty"),
        pytest.param(frame_of({"recipient": "a@x.com", "status": "skipped", "reason": "invalid"}),
                     id="nothing-attempted"),
        pytest.param(frame_of({"recipient": "a@x.com", "status": "unknown"}).drop(
            columns=["latency_ms", "smtp_code", "segment"]), id="few-columns"),
    ],
)
def test_report_html_of_little_data_says_so(outcomes: pd.DataFrame) -> None:
    page = report.report_html(None, outcomes)
    parsed = parse(page)
    assert_self_contained(parsed)
    text = " ".join(parsed.text)
    assert "No attempts were given" in text
    assert "No bounces were given" in text
    if "latency_ms" in outcomes.columns:
        assert "No latency was measured" in text


def test_report_html_from_the_smtpkit_namespace(campaign: Campaign) -> None:
    page = smtpkit.report_html(None, campaign.outcomes, attempts=campaign.attempts)
    parsed = parse(page)
    assert len(assert_self_contained(parsed)) == 5  # funnel, segment, domain, latency, timeline
    assert "No bounces were given" in " ".join(parsed.text)
    assert re.search(r"Attempts from 2026-05-28 20:26:40 to 2026-05-28 20:2\d:\d\d UTC", page)


# --- smtpkit report (the command) --------------------------------------------------------------


@dataclasses.dataclass
class SentCampaign:
    """A real campaign: sent through the Sandbox, bounces read back and recorded in the journal."""

    path: Path
    outcomes: pd.DataFrame


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> SentCampaign:
    import smtpkit
    from smtpkit.sandbox import Sandbox, World

    folder = tmp_path_factory.mktemp("journal")
    path = folder / "smtpkit.db"
    addresses = [f"user{i}@example.com" for i in range(40)]
    fates = {
        addresses[0]: "user_unknown",
        addresses[1]: "user_unknown",
        addresses[2]: "mailbox_full",
        addresses[3]: "bounce_later",
        addresses[4]: "bounce_later",
        addresses[5]: "complain_later",
        addresses[6]: "auto_reply",
    }
    frame = pd.DataFrame({"email": [*addresses, "not an address"],
                          "plan": ["free", "pro"] * 20 + ["free"]})
    template = smtpkit.Template(sender="news@shop.example", subject="Hi", text="Hello {plan}")
    world = World(addresses=fates, late_delay=(0.0, 0.05))
    with Sandbox(world, tls=False, mailbox=folder / "Maildir") as box:
        sent = smtpkit.send(smtpkit.segment(frame, by="plan"), template, box.config,
                            campaign="spring", journal=path, segment="segment", progress=False)
        box.wait_for_mail(3, timeout=10)
        box.flush_mail()
        reports = smtpkit.read_bounces(box.mailbox)
    smtpkit.apply_bounces(sent, reports, journal=path, campaign="spring")
    return SentCampaign(path, smtpkit.outcomes(path, "spring"))


def test_smtpkit_report_writes_the_html_and_the_dashboard(
    journal: SentCampaign, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from smtpkit.cli import main

    target, picture = tmp_path / "out" / "report.html", tmp_path / "dashboard.png"
    assert main(["report", str(journal.path), "--campaign", "spring", "-o", str(target),
                 "--dashboard", str(picture)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {target} ({len(journal.outcomes):,} recipients, " in printed
    assert f"wrote {picture}" in printed
    page = target.read_text(encoding="utf-8")
    parsed = parse(page)
    assert len(assert_self_contained(parsed)) >= 5
    assert parsed.headings[0] == "Campaign report: spring"
    counts = journal.outcomes["status"].value_counts()
    # what the journal says happened is what the report and the summary table say
    assert counts.get("failed", 0) == 3  # 2 unknown users, 1 mailbox full, refused at RCPT
    assert counts.get("skipped", 0) == 1  # "not an address"
    assert counts.get("complained", 0) == 1
    assert counts.get("bounced", 0) >= 1
    for status, n in counts.items():
        assert re.search(rf"<th class=\"text\">{status}</th><td>{n:,}</td>", page), status
        assert re.search(rf"{status}\s+{n}\s", printed), status
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_smtpkit_report_finds_the_only_campaign(journal: SentCampaign, tmp_path: Path) -> None:
    from smtpkit.cli import main

    target = tmp_path / "report.html"
    assert main(["report", str(journal.path), "-o", str(target)]) == 0
    assert "Campaign report: spring" in target.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(["missing.db"], "There is no journal at 'missing.db'", id="no-journal"),
        pytest.param(["missing.db", "--campaign", "x"], "There is no journal at 'missing.db'",
                     id="no-journal-named-campaign"),
        pytest.param(["{journal}", "--campaign", "autumn"], "has no campaign 'autumn'; it has: "
                     "'spring'", id="wrong-campaign"),
    ],
)
def test_smtpkit_report_explains_what_is_wrong(
    arguments: list[str], message: str, journal: SentCampaign, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from smtpkit.cli import main

    monkeypatch.chdir(tmp_path)
    argv = ["report", *(a.format(journal=journal.path) for a in arguments), "-o", "r.html"]
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
    assert not (tmp_path / "missing.db").exists()  # reading never creates a journal


def test_summaries_and_report_leave_their_inputs_alone(campaign: Campaign) -> None:
    import matplotlib.pyplot as plt

    frames = {name: getattr(campaign, name).copy()
              for name in ("cleaned", "outcomes", "attempts", "bounces", "applied")}
    figures = set(plt.get_fignums())
    report.summarize(campaign.applied, by="domain", top=3)
    report.funnel(campaign.cleaned, campaign.applied)
    report.latency(campaign.applied, by="segment")
    report.timeline(campaign.attempts, freq="5s")
    report.codes(campaign.applied)
    report.bounce_reasons(campaign.bounces, top=2)
    report.report_html(campaign.cleaned, campaign.applied, attempts=campaign.attempts,
                       bounces=campaign.bounces)
    assert set(plt.get_fignums()) == figures  # the report draws on figures pyplot never sees
    for name, before in frames.items():
        pd.testing.assert_frame_equal(getattr(campaign, name), before, obj=name)
