"""Crash safety: a campaign killed with SIGKILL (or stopped with Ctrl-C) resumes with every row
delivered at most once and every row ending with a final outcome.

The Sandbox runs in this test process; the campaign runs in a subprocess that is killed at
random moments (seeded, so a failure can be replayed) while messages are in flight.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import default_sigint

import smtpkit
from smtpkit.journal import inflight_path
from smtpkit.sandbox import Domain, Rule, Sandbox, World
from smtpkit.send import RetryPolicy

ROOT = Path(__file__).resolve().parent.parent
ROWS = 300
# connections of the campaign process: few, so a campaign lasts a couple of seconds
CONCURRENCY = 4
SEED = int(os.environ.get("SMTPKIT_CRASH_SEED", "20261128"))

_CHILD = textwrap.dedent(
    """
    import sys, time
    import smtpkit
    from smtpkit.config import SMTPConfig
    sys.path.insert(0, {tests!r})
    from test_send_crash import frame, template, CONCURRENCY, RETRIES
    port, journal = int(sys.argv[1]), sys.argv[2]
    config = SMTPConfig("127.0.0.1", port, tls="none", timeout=10)
    print("started", flush=True)
    started = time.monotonic()
    try:
        result = smtpkit.send(frame(), template(), config, campaign="crash", journal=journal,
                              concurrency=CONCURRENCY, retries=RETRIES, progress=False)
    except KeyboardInterrupt:
        print(f"interrupted {{time.monotonic() - started:.3f}}", flush=True)
        sys.exit(3)
    print("done", flush=True)
    """
)
RETRIES = RetryPolicy(attempts=6, backoff=0.05, factor=1.5, jitter=0.0)


def frame() -> pd.DataFrame:
    domains = ["example.com", "example.net", "example.org"]
    return pd.DataFrame({
        "email": [f"person{i}@{domains[i % 3]}" for i in range(ROWS)],
        "first_name": [f"P{i}" for i in range(ROWS)],
    })


def template() -> smtpkit.Template:
    return smtpkit.Template(subject="Hello {first_name}", text="Hi {first_name}.",
                            sender="news@shop.example")


def world() -> World:
    # slow replies keep messages in flight when the kill comes; a few drops and temporary
    # failures make retries and 'unknown' outcomes part of the story
    slow = Domain(latency_ms=30.0, latency_spread=0.5, tempfail=0.03, drop_before_dot=0.01)
    return World(
        domains={"example.com": slow, "example.net": slow, "example.org": slow},
        addresses={"person7@example.net": Rule("drop_after_dot", times=1)},
        seed=3,
    )


def _start(port: int, journal: Path) -> subprocess.Popen[str]:
    code = _CHILD.format(tests=str(Path(__file__).resolve().parent))
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), str(journal)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=default_sigint)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "started", f"the campaign process did not start: {line!r}"
    return proc


def _recorded(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        return len(smtpkit.outcomes(journal, "crash"))
    except smtpkit.JournalError:  # killed before the campaign was recorded
        return 0


def _check_settled(journal: Path) -> None:
    """No message is left in flight: every intent has its attempt, the in-flight file is gone."""
    assert "in_flight" not in set(smtpkit.attempts(journal, "crash")["reason"].dropna())
    assert not Path(inflight_path(str(journal), "crash")).exists()


def _check_final_state(box: Sandbox, result: pd.DataFrame, journal: Path) -> None:
    deliveries = box.deliveries()
    per_recipient = deliveries.groupby("recipient").size()
    # at most once: nobody received the campaign twice
    assert per_recipient.max() <= 1, per_recipient[per_recipient > 1]
    assert (deliveries["delivery_count"] <= 1).all()
    # every row has a final outcome
    assert len(result) == ROWS
    assert set(result["status"]) <= {"sent", "unknown", "failed"}, result["status"].value_counts()
    # what the journal says was sent really arrived; what arrived is sent or unknown
    sent = set(result.loc[result["status"] == "sent", "recipient"])
    arrived = set(per_recipient.index)
    assert sent <= arrived
    assert arrived <= sent | set(result.loc[result["status"] == "unknown", "recipient"])
    _check_settled(journal)
    pd.testing.assert_frame_equal(smtpkit.outcomes(journal, "crash").reset_index(drop=True),
                                  result.reset_index(drop=True))


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    journal = tmp_path / "crash.db"
    progress: list[int] = []
    with Sandbox(world(), tls=False) as box:
        for _ in range(4):
            proc = _start(box.port, journal)
            time.sleep(rng.uniform(0.2, 0.7))
            finished = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            assert proc.stdout is not None
            proc.stdout.close()
            progress.append(-1 if finished else _recorded(journal))
        result = smtpkit.send(frame(), template(), box.config, campaign="crash",
                              journal=journal, concurrency=8, retries=RETRIES, progress=False)
        _check_final_state(box, result, journal)
    # the kills really came while the campaign was under way
    assert sum(0 < n < ROWS for n in progress) >= 2, (SEED, progress)
    print(f"seed {SEED}: rows recorded after each kill {progress}; final "
          f"{result['status'].value_counts().to_dict()}")


@pytest.mark.slow
def test_ctrl_c_stops_promptly_with_a_consistent_journal(tmp_path: Path) -> None:
    journal = tmp_path / "crash.db"
    with Sandbox(world(), tls=False) as box:
        proc = _start(box.port, journal)
        time.sleep(0.6)
        interrupted_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        stopped_after = time.monotonic() - interrupted_at
        assert proc.returncode == 3, out
        assert out.strip().startswith("interrupted")
        # consistent at once: no attempt is left half-recorded, the campaign is released
        _check_settled(journal)
        with sqlite3.connect(journal) as conn:
            state = conn.execute("SELECT state, owner FROM campaigns").fetchone()
        assert state == ("interrupted", None)
        recorded = _recorded(journal)
        result = smtpkit.send(frame(), template(), box.config, campaign="crash",
                              journal=journal, concurrency=8, retries=RETRIES, progress=False)
        _check_final_state(box, result, journal)
    assert 0 < recorded < ROWS
    # "within a second" plus the time a loaded machine takes to exit Python
    assert stopped_after < 5.0, stopped_after
    print(f"Ctrl-C: stopped {stopped_after:.2f} s after SIGINT, {recorded} rows recorded")
