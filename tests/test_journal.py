"""journal.py: real SQLite files; group commit; resume after a killed process; bounces."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from smtpkit.errors import JournalError, MissingColumnError
from smtpkit.journal import (
    BOUNCE_COLUMNS,
    STATUS_CODES,
    CampaignLog,
    Journal,
    RecipientRecord,
    fingerprint,
    inflight_path,
    read_attempts,
    read_outcomes,
    recipient_token,
)
from smtpkit.outcomes import ATTEMPT_COLUMNS, OUTCOME_COLUMNS

ROOT = Path(__file__).resolve().parent.parent


def _rec(position: int, label: object = None, campaign: str = "c1") -> RecipientRecord:
    address = f"user{position}@example.com"
    token = recipient_token(campaign, address)
    return RecipientRecord(
        position=position,
        row_label=__import__("json").dumps(position if label is None else label),
        recipient=address,
        rkey=address,
        token=token,
        envelope_sender=f"bounces+{token}@shop.example",
        segment="A",
        message_id=f"<m{position}@shop.example>",
    )


def _open(path: Path, campaign: str = "c1", rows: int = 4, identity: str = "id-1",
          **options: Any) -> tuple[CampaignLog, Any]:
    return CampaignLog.open(path, campaign, identity=identity, rows=rows, to_send=rows,
                            sender="shop@shop.example", options={"concurrency": 2}, **options)


def _outcome(log: CampaignLog, rec: RecipientRecord, status: str = "sent", *, attempt: int = 1,
             code: int | None = 250, reason: str | None = "accepted") -> None:
    now = time.time()
    log.outcome(rec, attempt=attempt, status=status, reason=reason, code=code,
                enhanced="2.0.0" if code == 250 else None, message="OK", started_at=now - 0.01,
                finished_at=now, latency_ms=10.0, server="127.0.0.1:25",
                first_attempt_at=now - 0.01)


@pytest.mark.parametrize("window", [pytest.param(3, id="several-windows"),
                                    pytest.param(20_000, id="one-window")])
async def test_latest_attempt_per_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      window: int) -> None:
    import smtpkit.journal as journal_module

    monkeypatch.setattr(journal_module, "_WINDOW", window)
    path = tmp_path / "j.db"
    log, _ = _open(path, rows=4)
    tries = {0: ["deferred", "deferred", "sent"], 1: ["sent"], 2: ["deferred", "failed"],
             3: ["deferred"] * 4}
    for position, statuses in tries.items():
        for attempt, status in enumerate(statuses, start=1):
            _outcome(log, _rec(position), status, attempt=attempt,
                     code=250 if status == "sent" else 451)
    log.finish("finished")
    frame = read_outcomes(path, "c1")
    assert frame["status"].tolist() == ["sent", "sent", "failed", "deferred"]
    assert frame["attempts"].tolist() == [3, 1, 2, 4]
    assert str(frame["first_attempt_at"].dtype) == "datetime64[us, UTC]"
    assert (frame["first_attempt_at"] <= frame["last_attempt_at"]).all()
    assert len(read_attempts(path, "c1")) == 10


def test_verp_token_is_stable_and_case_insensitive() -> None:
    token = recipient_token("spring", "Ann@Example.com")
    assert token == recipient_token("spring", "ann@example.com")
    assert token != recipient_token("autumn", "ann@example.com")
    assert len(token) == 16 and token.isalnum() and token == token.lower()


def test_missing_journal_and_campaign_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with pytest.raises(JournalError, match="There is no journal at"):
        read_outcomes(path, "spring")
    assert not path.exists()  # reading never creates the file
    Journal(path).record_bounces(None, pd.DataFrame(columns=list(BOUNCE_COLUMNS)))  # writing does
    with pytest.raises(JournalError) as caught:
        read_outcomes(path, "spring")
    assert str(caught.value) == f"The journal {str(path)!r} has no campaign 'spring'; it has: none."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"hello, I am a text file\n" * 20, "cannot be used as a journal",
                     id="text-file"),
        pytest.param(None, "is an SQLite file but not a smtpkit journal", id="other-sqlite"),
    ],
)
def test_foreign_files_are_refused(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "other.db"
    if content is None:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE things (x)")
        conn.commit()
        conn.close()
    else:
        path.write_bytes(content)
    with pytest.raises(JournalError, match=message):
        Journal(path).campaigns()


async def test_outcomes_and_attempts_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    log, state = _open(path)
    assert not state.resumed
    labels = [10, "row-b", ("x", 2), 13]
    recs = [_rec(i, label) for i, label in enumerate(labels)]
    assert log.intent(recs[0], 1, time.time(), "127.0.0.1:25").done()  # safe already
    _outcome(log, recs[0])
    _outcome(log, recs[1], "deferred", code=451, reason="greylisted")
    _outcome(log, recs[1], "sent", attempt=2)
    log.record_final(recs[2], "skipped", "duplicate")
    _outcome(log, recs[3], "failed", code=550, reason="user_unknown")
    log.finish("finished")

    frame = read_outcomes(path, "c1")
    assert list(frame.columns) == list(OUTCOME_COLUMNS)
    assert list(frame.index) == [10, "row-b", ("x", 2), 13]
    assert list(frame["status"]) == ["sent", "sent", "skipped", "failed"]
    assert list(frame["attempts"]) == [1, 2, 0, 1]
    assert str(frame["first_attempt_at"].dtype) == "datetime64[us, UTC]"
    assert frame["smtp_code"].dtype == "Int64"
    assert frame.loc[13, "reason"] == "user_unknown"

    attempts = read_attempts(path, "c1")
    assert list(attempts.columns) == list(ATTEMPT_COLUMNS)
    assert list(attempts["status"]) == ["sent", "deferred", "sent", "failed"]
    assert list(attempts["attempt"]) == [1, 1, 2, 1]
    summary = Journal(path).campaigns()
    assert summary.loc[0, "state"] == "finished" and summary.loc[0, "sent"] == 2


async def test_intents_are_immediate_and_outcomes_commit_in_groups(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    log, _ = _open(path, rows=200)
    recs = [_rec(i) for i in range(200)]
    for r in recs:
        assert log.intent(r, 1, time.time(), "s:25").done()
    # visible to any reader at once, as messages whose data may be on the wire
    flying = read_attempts(path, "c1")
    assert len(flying) == 200 and set(flying["reason"]) == {"in_flight"}
    assert log.commits == 0
    for r in recs:
        _outcome(log, r)
    await asyncio.sleep(0.1)  # outcomes commit lazily, together
    assert log.commits == 1
    inflight = inflight_path(str(path), "c1")
    assert os.path.exists(inflight)  # noqa: ASYNC240  (a test: blocking is fine)
    log.finish("finished")
    assert not os.path.exists(inflight)  # noqa: ASYNC240  (every intent settled)
    assert (read_outcomes(path, "c1")["status"] == "sent").all()
    assert set(read_attempts(path, "c1")["status"]) == {"sent"}


async def test_synchronous_full_syncs_intents_before_the_data(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    log, _ = CampaignLog.open(path, "c1", identity="id-1", rows=3, to_send=3, sender=None,
                              options={}, synchronous="full")
    waits = [log.intent(_rec(i), 1, time.time(), "s:25") for i in range(3)]
    assert not any(w.done() for w in waits)  # waiting for the disk
    await asyncio.gather(*waits)
    for i in range(3):
        _outcome(log, _rec(i))
    log.finish("finished")
    assert (read_outcomes(path, "c1")["status"] == "sent").all()


async def test_resume_checks_the_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    log, _ = _open(path, identity="aaa")
    _outcome(log, _rec(0))
    log.finish("interrupted")
    with pytest.raises(JournalError) as caught:
        _open(path, identity="bbb", rows=5)
    assert str(caught.value) == (
        f"Campaign 'c1' in {str(path)!r} was started with a different list (4 rows to send out "
        "of 4); this frame has 5 out of 5, or other addresses or order. Pass the same frame to "
        "resume it, or choose a new campaign name to send this one."
    )
    log, state = _open(path, identity="aaa")
    assert state.resumed
    assert list(state.status) == [STATUS_CODES["sent"], 0, 0, 0]
    log.finish("finished")


def test_fingerprint_depends_on_positions_and_addresses() -> None:
    base = fingerprint(np.array([0, 1]), ["a@x.com", "b@x.com"])
    assert base == fingerprint(np.array([0, 1]), ["a@x.com", "b@x.com"])
    assert base != fingerprint(np.array([0, 2]), ["a@x.com", "b@x.com"])
    assert base != fingerprint(np.array([0, 1]), ["b@x.com", "a@x.com"])


async def test_same_campaign_twice_in_one_process_is_refused(tmp_path: Path) -> None:
    log, _ = _open(tmp_path / "j.db")
    with pytest.raises(JournalError, match="already being sent by this Python process"):
        _open(tmp_path / "j.db")
    log.finish("finished")
    other, _ = _open(tmp_path / "j.db")  # free again
    other.finish("finished")


_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, time
    from smtpkit.journal import CampaignLog, RecipientRecord
    path, mode = sys.argv[1], sys.argv[2]
    async def main():
        rows = 300 if mode == "handover" else 4
        log, _ = CampaignLog.open(path, "c1", identity="id-1", rows=rows, to_send=rows,
                                  sender="s@x.com", options={})
        rec = RecipientRecord(0, json.dumps(0), "user0@example.com", "user0@example.com",
                              "tok", "bounces+tok@x.com", "A", "<m0@x.com>")
        log.intent(rec, 1, time.time(), "127.0.0.1:25")
        if mode == "handover":  # 300 messages answered, handed to the writer, then killed
            for position in range(300):
                rec = RecipientRecord(position, json.dumps(position),
                                      f"user{position}@example.com",
                                      f"user{position}@example.com", "tok", "bounces+tok@x.com",
                                      "A", f"<m{position}@x.com>")
                log.intent(rec, 1, time.time(), "127.0.0.1:25")
                log.attempt(rec, 1, "sent", "accepted", 250, "2.0.0", "OK", time.time(),
                            time.time(), 1.0, "127.0.0.1:25")
            log.flush()
            print(type(log._writer).__name__, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        print("ready", flush=True)
        if mode == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
    asyncio.run(main())
    """
)


def _child(path: Path, mode: str, says: str = "ready") -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), mode],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == says
    return proc


def test_a_killed_sender_loses_nothing_it_handed_to_the_writer_process(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    # the sender hands 300 answered messages to its writer process and is killed at once
    # (before the writer, still starting, can have committed them)
    proc = _child(path, "handover", says="_WriterProcess")
    assert proc.wait(10) == -signal.SIGKILL
    # resuming waits for the writer to commit what it was given: nothing is left unknown
    log, state = _open(path, rows=300, describe=_rec)
    assert state.unknown_after_crash == 0
    assert (state.status == STATUS_CODES["sent"]).all()
    log.finish("finished")
    frame = read_outcomes(path, "c1")
    assert len(frame) == 300 and (frame["status"] == "sent").all()
    assert frame["message_id"].tolist() == [f"<m{i}@x.com>" for i in range(300)]
    assert not os.path.exists(inflight_path(str(path), "c1"))


@pytest.mark.parametrize("broken", ["ends", "closes its input"])
async def test_a_writer_process_that_does_not_start_leaves_the_log_committing_inline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    # an interpreter that ends at once (/bin/false), or that stops reading and never answers
    fake = tmp_path / "python3-broken"
    if broken == "ends":
        fake.symlink_to("/bin/false")
    else:
        fake.write_text("#!/bin/sh\nexec 0<&-\nexec sleep 30\n")
        fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    path = tmp_path / "j.db"
    log, _ = _open(path, rows=200)
    for position in range(200):
        _outcome(log, _rec(position))
        if position == 99:
            log.flush()  # handed to the process before it was known not to start
    log.finish("finished")
    assert log._writer._inline is not None  # type: ignore[union-attr]
    assert log._writer._proc.returncode is not None  # type: ignore[union-attr]  (stopped)
    frame = read_outcomes(path, "c1")
    assert len(frame) == 200 and (frame["status"] == "sent").all()


async def test_numpy_numbers_are_recorded_like_python_ones(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    log, _ = _open(path, rows=3)
    for position in np.arange(3):  # numpy integers (marshal takes Python numbers only)
        rec = _rec(int(position))
        rec = RecipientRecord(position, rec.row_label, rec.recipient, rec.rkey, rec.token,
                              rec.envelope_sender, rec.segment, rec.message_id)
        log.attempt(rec, np.int32(1), "sent", "accepted", np.int64(250), "2.0.0", "OK",
                    np.float64(time.time()), time.time(), np.float32(1.5), "127.0.0.1:25")
    log.finish("finished")
    frame = read_outcomes(path, "c1")
    assert frame["status"].tolist() == ["sent"] * 3
    assert frame["smtp_code"].tolist() == [250] * 3


async def test_recent_attempts_include_those_just_handed_over(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    log, _ = _open(path, rows=50)
    since = time.time() - 1
    for position in range(50):
        _outcome(log, _rec(position))
    # not committed yet (a group waits 20 ms): reading them waits for the writer
    recent = log.recent_attempts(since)
    assert [r for _, r in recent] == [f"user{i}@example.com" for i in range(50)]
    log.finish("finished")


def test_intent_without_reply_after_a_kill_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    proc = _child(path, "die")
    assert proc.wait(10) == -signal.SIGKILL
    # the engine resumes with the same frame, so it can say who row 0 is
    log, state = _open(path, describe=_rec)
    assert state.unknown_after_crash == 1
    assert state.status[0] == STATUS_CODES["unknown"]
    log.finish("finished")
    frame = read_outcomes(path, "c1")
    assert frame.loc[0, "status"] == "unknown"
    assert frame.loc[0, "reason"] == "interrupted_after_data"
    assert frame.loc[0, "envelope_sender"] == _rec(0).envelope_sender
    assert frame.loc[0, "server"] == "127.0.0.1:25"  # which server may have it
    assert read_attempts(path, "c1").loc[0, "status"] == "unknown"
    assert not os.path.exists(inflight_path(str(path), "c1"))


def test_a_live_sender_in_another_process_holds_the_campaign(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    proc = _child(path, "hold")
    try:
        # readable from here while the other process has it open
        attempts = read_attempts(path, "c1")
        assert (attempts["status"].tolist(), attempts["reason"].tolist()) == (
            ["unknown"], ["in_flight"])
        with pytest.raises(JournalError, match="being sent right now by another process"):
            _open(path)
    finally:
        proc.kill()
        proc.wait(10)
    log, state = _open(path)  # the holder is gone: taken over
    assert state.unknown_after_crash == 1
    log.finish("finished")


@pytest.mark.parametrize("writer", ["process", "inline"])
async def test_write_failure_raises_journal_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  writer: str) -> None:
    import smtpkit.journal as journal_module

    monkeypatch.setattr(journal_module, "_BUSY_TIMEOUT_MS", 200)
    if writer == "inline":  # no writer process can be started: the log commits inline
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such" / "python3"))
    path = tmp_path / "j.db"
    log, _ = _open(path)
    assert type(log._writer).__name__ == ("_WriterProcess" if writer == "process"
                                          else "_InlineWriter")
    _outcome(log, _rec(0))
    log.flush()  # committed (the writer process has started and opened the journal)
    assert log._writer.sync() is None
    # another program takes the file and does not let go
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        message = (r"Writing the journal .* failed \(.*database is locked\); the campaign "
                   r"stopped. Free disk space or fix the file, then run the same send again to "
                   r"resume.")
        # the writer meets the lock; the next write after it said so raises
        deadline = time.monotonic() + 10
        with pytest.raises(JournalError, match=message):
            for position in range(1, 1000):
                _outcome(log, _rec(position))
                log.flush()
                assert time.monotonic() < deadline, "the write failure was never reported"
                await asyncio.sleep(0.05)
        with pytest.raises(JournalError, match=message):
            log.intent(_rec(0), 2, time.time(), "s:25")
    finally:
        other.execute("ROLLBACK")
        other.close()
    log.finish("aborted")


def _bounce_frame(**rows: dict[str, object]) -> pd.DataFrame:
    base = {"recipient": None, "original_message_id": None, "kind": "bounce", "status": "5.1.1",
            "reason": "user_unknown", "hard": True,
            "arrived_at": pd.Timestamp("2026-01-01", tz="UTC"), "bounce_to": None,
            "diagnostic": "550 5.1.1 no such user"}
    return pd.DataFrame([{**base, **row} for row in rows.values()])


async def test_recorded_bounces_show_in_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    log, _ = _open(path, rows=6)
    recs = [_rec(i) for i in range(6)]
    for rec in recs[:5]:
        _outcome(log, rec)
    _outcome(log, recs[5], "failed", code=550, reason="user_unknown")
    log.finish("finished")
    bounces = _bounce_frame(
        by_verp={"bounce_to": recs[0].envelope_sender.upper(), "recipient": "someone@else"},
        by_message_id={"original_message_id": "m1@shop.example"},
        by_address={"recipient": "USER2@example.com"},
        complaint={"recipient": "user3@example.com", "kind": "complaint", "reason": "abuse",
                   "hard": False},
        soft={"recipient": "user4@example.com", "hard": False, "reason": "mailbox_full"},
        failed_row={"recipient": "user5@example.com"},
    )
    journal = Journal(path)
    assert journal.record_bounces("c1", bounces) == 6
    assert journal.record_bounces("c1", bounces) == 0  # idempotent
    frame = read_outcomes(path, "c1")
    # a soft failure report bounced too (the message was not delivered); "hard" only decides
    # suppression, and a failed row stays failed
    assert list(frame["status"]) == ["bounced", "bounced", "bounced", "complained", "bounced",
                                     "failed"]
    assert frame.loc[3, "reason"] == "abuse" and frame.loc[4, "reason"] == "mailbox_full"
    stored = journal.bounces("c1")
    assert len(stored) == 6 and stored["hard"].dtype == "boolean"
    assert str(stored["arrived_at"].dtype).startswith("datetime64")
    with pytest.raises(MissingColumnError, match="lacks bounce_to"):
        journal.record_bounces("c1", bounces.drop(columns=["bounce_to"]))


async def test_bounces_without_verp_match_their_own_row_only(tmp_path: Path) -> None:
    # verp=False: every row has the template's sender as envelope sender, so a report sent
    # back to it names its row only by Message-ID or recipient
    import dataclasses

    path = tmp_path / "j.db"
    log, _ = _open(path, rows=3)
    recs = [dataclasses.replace(_rec(i), token=None, envelope_sender="news@shop.example")
            for i in range(3)]
    for rec in recs:
        _outcome(log, rec)
    log.finish("finished")
    Journal(path).record_bounces("c1", _bounce_frame(
        plain={"bounce_to": "news@shop.example", "recipient": "user1@example.com"},
        delay={"bounce_to": "news@shop.example", "original_message_id": "<m2@shop.example>",
               "kind": "delay", "hard": False, "reason": "mailbox_full"},
    ))
    assert list(read_outcomes(path, "c1")["status"]) == ["sent", "bounced", "sent"]


async def test_a_settled_row_outranks_its_attempts_until_it_is_tried_again(
        tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    log, _ = _open(path, rows=2)
    _outcome(log, _rec(0), "deferred", code=451, reason="greylisted")
    log.record_final(_rec(0), "skipped", "suppressed")
    log.record_final(_rec(1), "failed", "missing_field", detail="Column 'x' is empty.")
    log.finish("interrupted")
    frame = read_outcomes(path, "c1")
    assert frame["status"].tolist() == ["skipped", "failed"]
    assert frame["attempts"].tolist() == [1, 0]  # the earlier attempt still counts
    assert frame.loc[1, "smtp_message"] == "Column 'x' is empty."
    log, state = _open(path, rows=2)
    assert list(state.status) == [STATUS_CODES["skipped"], STATUS_CODES["failed"]]
    _outcome(log, _rec(1), "sent")  # fixed and sent on this run
    log.finish("finished")
    assert read_outcomes(path, "c1")["status"].tolist() == ["skipped", "sent"]


def test_a_record_cut_short_in_the_inflight_file_is_ignored(tmp_path: Path) -> None:
    import struct

    path = tmp_path / "j.db"
    log, _ = _open(path)
    log.finish("finished")
    name = b"127.0.0.1:25"
    whole = struct.pack("<cHB", b"S", 0, len(name)) + name
    whole += struct.pack("<cqiHd", b"I", 2, 1, 0, time.time())
    torn = struct.pack("<cqiHd", b"I", 3, 1, 0, time.time())[:9]  # a power cut mid-write
    Path(inflight_path(str(path), "c1")).write_bytes(whole + torn)
    log, state = _open(path, describe=_rec)
    log.finish("finished")
    assert state.unknown_after_crash == 1  # row 2 only: row 3's write never completed
    frame = read_outcomes(path, "c1")
    assert frame["recipient"].tolist() == ["user2@example.com"]
    assert frame["server"].tolist() == ["127.0.0.1:25"]


async def test_suppressed_addresses_from_bounces(tmp_path: Path) -> None:
    from smtpkit.journal import suppressed_addresses

    path = tmp_path / "j.db"
    log, _ = _open(path, rows=3)
    for i in range(3):
        _outcome(log, _rec(i))
    log.finish("finished")
    Journal(path).record_bounces("c1", _bounce_frame(
        named={"recipient": "USER0@example.com"},
        by_verp={"bounce_to": _rec(1).envelope_sender},
        soft={"recipient": "user2@example.com", "hard": False},
    ))
    assert suppressed_addresses(path) == {"user0@example.com", "user1@example.com"}


async def test_a_hard_bounce_to_a_plain_sender_suppresses_its_recipient_only(
        tmp_path: Path) -> None:
    import dataclasses

    from smtpkit.journal import suppressed_addresses

    path = tmp_path / "j.db"
    log, _ = _open(path, rows=3)
    for i in range(3):  # verp=False: the same envelope sender on every row
        _outcome(log, dataclasses.replace(_rec(i), token=None,
                                          envelope_sender="news@shop.example"))
    log.finish("finished")
    Journal(path).record_bounces("c1", _bounce_frame(
        plain={"bounce_to": "news@shop.example", "recipient": "user1@example.com"}))
    assert suppressed_addresses(path) == {"user1@example.com"}


def test_campaigns_lists_counts(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def run() -> None:
        log, _ = _open(path, rows=3)
        _outcome(log, _rec(0))
        _outcome(log, _rec(1), "failed", code=550, reason="user_unknown")
        log.record_final(_rec(2), "skipped", "duplicate")
        log.finish("finished")

    asyncio.run(run())
    frame = Journal(path).campaigns()
    row = frame.iloc[0]
    assert (row["campaign"], row["state"], row["runs"]) == ("c1", "finished", 1)
    assert (row["sent"], row["failed"], row["skipped"]) == (1, 1, 1)
    assert "<b>Journal</b>" in Journal(path)._repr_html_()
