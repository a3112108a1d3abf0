"""The journal's table layout (version 2): compact attempt rows behind the ``attempts`` view,
older and newer files refused with a clear error, values stored and read back as given."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from smtpkit import _send_journal
from smtpkit.errors import JournalError
from smtpkit.journal import (
    _ATTEMPTS_PER_INSERT,
    SCHEMA_VERSION,
    CampaignLog,
    Journal,
    RecipientRecord,
    read_attempts,
    read_outcomes,
    recipient_token,
)

# the columns of version 1's attempts table, which the readers' SQL names
V1_ATTEMPT_COLUMNS = [
    "campaign", "position", "attempt", "state", "reason", "smtp_code", "smtp_status",
    "smtp_message", "started_at", "finished_at", "latency_ms", "message_id", "server", "segment",
    "recipient", "rkey", "token", "envelope_sender", "row_label",
]


def _rec(position: int, *, segment: str | None = "A", verp: bool = True,
         campaign: str = "c1") -> RecipientRecord:
    address = f"User{position}@Example.com"
    token = recipient_token(campaign, address)
    return RecipientRecord(
        position=position,
        row_label=json.dumps(position),
        recipient=address,
        rkey=address.lower(),
        token=token if verp else None,
        envelope_sender=f"bounces+{token}@shop.example" if verp else "shop@shop.example",
        segment=segment,
        message_id=f"<m{position}@shop.example>",
    )


def _open(path: Path, campaign: str = "c1", rows: int = 10) -> CampaignLog:
    log, _ = CampaignLog.open(path, campaign, identity="id", rows=rows, to_send=rows,
                              sender="shop@shop.example", options={})
    return log


def _write_v1_journal(path: Path, version: int) -> None:
    """A journal as smtpkit wrote it before this layout: attempts was a table."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE campaigns (campaign TEXT PRIMARY KEY, identity TEXT NOT NULL, "
        "rows INTEGER NOT NULL, to_send INTEGER NOT NULL, created_at REAL NOT NULL, "
        "updated_at REAL NOT NULL, state TEXT NOT NULL, runs INTEGER NOT NULL DEFAULT 0, "
        "sender TEXT, owner TEXT, heartbeat REAL, options TEXT);"
        f"CREATE TABLE attempts ({', '.join(V1_ATTEMPT_COLUMNS)}, "
        "PRIMARY KEY (campaign, position, attempt)) WITHOUT ROWID;"
        "INSERT INTO campaigns VALUES ('c1', 'id', 1, 1, 0, 0, 'finished', 1, NULL, NULL, "
        "NULL, NULL);"
        f"PRAGMA user_version = {version};"
    )
    conn.close()


@pytest.mark.parametrize("version", [pytest.param(1, id="layout-1"),
                                     pytest.param(0, id="before-versions")])
def test_an_older_journal_is_refused_with_a_clear_error(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    _write_v1_journal(path, version)
    message = (f"The journal {str(path)!r} was written by an older smtpkit (layout {version}; "
               f"this one reads layout {SCHEMA_VERSION}). Read or resume its campaigns with the "
               "smtpkit that wrote it, or pass a new journal file.")
    for attempt in (lambda: read_outcomes(path, "c1"), lambda: Journal(path).campaigns(),
                    lambda: _open(path)):
        with pytest.raises(JournalError) as caught:
            attempt()
        assert str(caught.value) == message
    # nothing was changed in the file
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    assert conn.execute("SELECT type FROM sqlite_master WHERE name = 'attempts'").fetchone() == (
        "table",)
    conn.close()


def test_a_newer_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    _open(path).finish("finished")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalError, match=r"written by a newer smtpkit \(layout 3\); upgrade"):
        read_outcomes(path, "c1")


def test_the_attempts_view_keeps_the_columns_readers_know(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    _open(path).finish("finished")
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(attempts)")]
    kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'attempts'").fetchone()
    conn.close()
    assert columns == V1_ATTEMPT_COLUMNS
    assert kind == ("view",)


# (segment, verp, code, enhanced, message, latency, server): values the engine passes, the
# missing ones included, which the writer binds as stand-ins and stores as NULL
CASES = [
    pytest.param("A", True, 250, "2.0.0", "Ok", 3.5, "mx:25", id="sent"),
    pytest.param(None, False, None, None, None, None, None, id="nothing-known"),
    pytest.param("", True, 451, None, "Try later", 12.0, "mx:25", id="empty-segment"),
    pytest.param("0", True, 550, "5.1.1", "No such user", 1.0, "mx:25", id="segment-zero-text"),
]


@pytest.mark.parametrize(("segment", "verp", "code", "enhanced", "message", "latency", "server"),
                         CASES)
async def test_attempt_values_read_back_as_given(
    tmp_path: Path, segment: str | None, verp: bool, code: int | None, enhanced: str | None,
    message: str | None, latency: float | None, server: str | None,
) -> None:
    path = tmp_path / "j.db"
    log = _open(path, rows=1)
    rec = _rec(0, segment=segment, verp=verp)
    log.attempt(rec, 1, "deferred", "greylisted", code, enhanced, message, 100.25, 101.5,
                latency, server)
    log.finish("finished")
    conn = sqlite3.connect(path)
    row = conn.execute(
        "SELECT campaign, position, attempt, state, reason, smtp_code, smtp_status, "
        "smtp_message, started_at, finished_at, latency_ms, message_id, server, segment, "
        "recipient, rkey, token, envelope_sender, row_label FROM attempts").fetchone()
    conn.close()
    assert row == ("c1", 0, 1, "deferred", "greylisted", code, enhanced, message, 100.25, 101.5,
                   latency, rec.message_id, server, segment, rec.recipient, rec.rkey, rec.token,
                   rec.envelope_sender, "0")
    frame = read_attempts(path, "c1")
    if segment is None:
        assert frame["segment"].isna().all()
    else:
        assert frame["segment"].tolist() == [segment]
    assert frame["smtp_code"].isna().all() if code is None else frame["smtp_code"].tolist() == [
        code]


@pytest.mark.parametrize("rows", [
    pytest.param(1, id="one"),
    pytest.param(_ATTEMPTS_PER_INSERT, id="one-insert"),
    pytest.param(2 * _ATTEMPTS_PER_INSERT + 5, id="inserts-and-rest"),
])
async def test_every_queued_attempt_is_written(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "j.db"
    log = _open(path, rows=rows)
    for position in range(rows):  # out of order, as replies come
        position = rows - 1 - position
        log.attempt(_rec(position), 1, "sent", "accepted", 250, "2.0.0", "Ok", 1.0, 2.0, 1.0,
                    "mx:25")
    log.finish("finished")
    frame = read_outcomes(path, "c1")
    assert list(frame.index) == list(range(rows))
    assert (frame["status"] == "sent").all()
    assert frame["recipient"].tolist() == [_rec(p).recipient for p in range(rows)]


async def test_kinds_go_on_across_runs_and_stay_apart_between_campaigns(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    first = _open(path, "spring", rows=4)
    other = _open(path, "autumn", rows=4)
    # the same outcome in both campaigns, others in one: each campaign has its own codes
    for log in (first, other):
        log.attempt(_rec(0, campaign=log.campaign), 1, "sent", "accepted", 250, "2.0.0", "Ok",
                    1.0, 2.0, 1.0, "mx:25")
    first.attempt(_rec(1, campaign="spring"), 1, "deferred", "greylisted", 451, "4.7.1",
                  "Later", 1.0, 2.0, 1.0, "mx:25")
    first.finish("interrupted")
    other.finish("finished")
    again = _open(path, "spring", rows=4)  # resumed: the codes written before are known
    again.attempt(_rec(1, campaign="spring"), 2, "sent", "accepted", 250, "2.0.0", "Ok", 3.0,
                  4.0, 1.0, "mx:25")
    again.attempt(_rec(2, campaign="spring"), 1, "failed", "user_unknown", 550, "5.1.1",
                  "No", 3.0, 4.0, 1.0, "mx2:25")
    again.finish("finished")
    spring = read_attempts(path, "spring")
    assert spring[["status", "reason", "smtp_code", "server"]].values.tolist() == [
        ["sent", "accepted", 250, "mx:25"],
        ["deferred", "greylisted", 451, "mx:25"],
        ["sent", "accepted", 250, "mx:25"],
        ["failed", "user_unknown", 550, "mx2:25"],
    ]
    assert read_attempts(path, "autumn")["status"].tolist() == ["sent"]
    conn = sqlite3.connect(path)
    kinds = conn.execute("SELECT c.campaign, COUNT(*) FROM attempt_kinds k JOIN campaigns c "
                         "ON c.id = k.campaign_id GROUP BY c.campaign ORDER BY 1").fetchall()
    conn.close()
    assert kinds == [("autumn", 1), ("spring", 3)]  # the resumed run reused "sent"


@pytest.mark.parametrize("writer", ["process", "inline"])
async def test_the_write_ahead_log_is_checkpointed_while_a_campaign_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str,
) -> None:
    if writer == "inline":  # no writer process: a thread checkpoints every few tenths of a s
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such" / "python3"))
        monkeypatch.setattr(_send_journal, "_CHECKPOINT_SECONDS", 0.02)
    else:  # the writer process: SQLite's own checkpoints, every so many pages of log
        monkeypatch.setattr(_send_journal, "_WAL_CHECKPOINT_PAGES", 16)
    path = tmp_path / "j.db"
    log = _open(path, rows=2000)
    assert type(log._writer).__name__ == ("_InlineWriter" if writer == "inline"
                                          else "_WriterProcess")
    before = path.stat().st_size
    for position in range(2000):
        log.attempt(_rec(position), 1, "sent", "accepted", 250, "2.0.0", "Ok", 1.0, 2.0, 1.0,
                    "mx:25")
    log.flush()
    # the rows reach the database file itself before the campaign ends
    assert await asyncio.to_thread(_grows, path, before)
    log.finish("finished")
    names: list[Any] = [t.name for t in threading.enumerate()]
    assert "smtpkit-journal-checkpoint" not in names
    assert len(read_outcomes(path, "c1")) == 2000


def _grows(path: Path, size: int) -> bool:
    """Whether the file at ``path`` gets larger than ``size`` bytes within 10 seconds."""
    deadline = time.monotonic() + 10
    while path.stat().st_size <= size:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
