"""Commits a running campaign's journal writes: in a process of its own, or inline.

The send engine's event loop is the bottleneck of a fast campaign: every microsecond it spends
per message lowers the rate. Committing the attempt rows to SQLite costs it about 2.5 us a
message (binding 14 values, the B-tree insert, the commit) plus what SQLite's work evicts from
the core's caches. A thread does not help (binding holds the GIL, and GIL hand-offs cost more
than they save); a process of its own does: the engine hands each group of writes over as one
``marshal`` frame on a pipe (about 0.2 us a row) and the writer process commits it on the
other core. The engine measures it in ``bench/send_bench.py``.

This module is the writer's whole program: it imports only the standard library, so that the
process starts in about 15 ms (``python -I -S _journal_writer.py``), and it is also imported
by the engine, which applies the very same :class:`Applier` inline when no writer process can
be started (a frozen or embedded interpreter, an in-memory journal).

Protocol (stdin): frames of a 4-byte little-endian length then ``marshal`` data. The first
frame is the *hello* (a dict: the journal's path, its pragmas, the SQL statements, the
campaign); then ``("w", ops, attempts)`` (one transaction each) and ``("s", token)`` (answered
``S<token>`` on stdout once everything before it is committed). The process answers ``R`` once
it has opened the journal, ``E<text>`` when it fails (then it reads and drops the rest), and
``D`` at the end of its input, once it has committed every whole frame (a sending process that
is killed loses none of the outcomes it handed over); then it checkpoints the write-ahead log.
It keeps open (and so locked) the campaign's in-flight file that it inherited, so that a
resuming process waits until it is done.
"""

from __future__ import annotations

import contextlib
import itertools
import marshal
import sqlite3
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

FRAME = struct.Struct("<I")
# What the engine queues per attempt (CampaignLog.attempt), in this order.
ATTEMPT_FIELDS = (
    "position", "attempt", "status", "reason", "code", "enhanced", "message", "started_at",
    "finished_at", "latency_ms", "server", "segment", "message_id", "recipient", "rkey",
    "token", "envelope_sender", "row_label",
)


class Applier:
    """Writes groups of journal writes, one transaction each, through ``conn``.

    ``spec`` is the hello frame: ``campaign``, ``campaign_id`` and the statements
    ``put_attempts`` (``per_insert`` rows at once), ``put_attempt``, ``put_kind`` and
    ``heartbeat``. Attempts come as tuples of :data:`ATTEMPT_FIELDS`; what repeats (status,
    reason, reply code, enhanced code, server, segment) becomes a kind of the campaign
    (attempt_kinds), added in the transaction of the first row that uses it.
    """

    def __init__(self, conn: sqlite3.Connection, spec: dict[str, Any]) -> None:
        self.conn = conn
        self.spec = spec
        self.campaign_id = int(spec["campaign_id"])
        self.commits = 0
        self.kinds: dict[tuple[Any, ...], int] = {
            tuple(what): int(kind) for kind, *what in conn.execute(
                "SELECT kind, state, reason, smtp_code, smtp_status, server, segment "
                "FROM attempt_kinds WHERE campaign_id = ?", (self.campaign_id,))
        }
        self._next_kind = max(self.kinds.values(), default=0) + 1  # codes start at 1
        self._heartbeat = time.time()

    def rows(self, attempts: Sequence[Sequence[Any]]
             ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The attempt_log rows of ``attempts``, and the attempt_kinds rows they add."""
        kinds = self.kinds
        known = kinds.get
        campaign_id = self.campaign_id
        new: list[tuple[Any, ...]] = []
        rows: list[tuple[Any, ...]] = []
        add = rows.append
        for (position, attempt, status, reason, code, enhanced, message, started_at,
             finished_at, latency_ms, server, segment, message_id, recipient, rkey, token,
             envelope_sender, row_label) in attempts:
            what = (status, reason, code, enhanced, server, segment)
            kind = known(what)
            if kind is None:
                kind = kinds[what] = self._next_kind
                self._next_kind += 1
                new.append((campaign_id, kind, *what))
            add((campaign_id, position, attempt, kind, message, started_at, finished_at,
                 latency_ms, message_id, recipient, rkey, token, envelope_sender, row_label))
        return rows, new

    def apply(self, ops: Sequence[Sequence[Any]], attempts: Sequence[Sequence[Any]]) -> None:
        """Commit ``ops`` ((sql, params) pairs) and ``attempts`` in one transaction."""
        if not ops and not attempts:
            return
        spec = self.spec
        conn = self.conn
        rows, new = self.rows(attempts)
        # one executemany per statement: each writes one table and keeps its order; the tables
        # do not depend on each other within a transaction, which commits at once
        grouped: dict[str, list[Any]] = {}
        for sql, params in ops:
            grouped.setdefault(sql, []).append(params)
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if new:
                conn.executemany(spec["put_kind"], new)
            size = int(spec["per_insert"])
            whole = len(rows) - len(rows) % size
            flat = itertools.chain.from_iterable
            for start in range(0, whole, size):
                conn.execute(spec["put_attempts"], tuple(flat(rows[start : start + size])))
            if whole < len(rows):
                conn.executemany(spec["put_attempt"], rows[whole:])
            for sql, params_list in grouped.items():
                conn.executemany(sql, params_list)
            if now - self._heartbeat > float(spec["heartbeat_seconds"]):
                conn.execute(spec["heartbeat"], (now, now, spec["campaign"]))
                self._heartbeat = now
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            for row in new:  # not written: forget them (the next group adds them again)
                del self.kinds[tuple(row[2:])]
            raise
        self.commits += 1


def connect(spec: dict[str, Any]) -> sqlite3.Connection:
    """The writer's own connection to the journal (which the engine created)."""
    conn = sqlite3.connect(spec["path"], timeout=spec["busy_timeout_ms"] / 1000,
                           isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(spec['busy_timeout_ms'])}")
    conn.execute(f"PRAGMA synchronous = {'FULL' if spec['synchronous'] == 'full' else 'NORMAL'}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {int(spec['wal_pages'])}")
    return conn


def read_frame(stream: BinaryIO) -> Any:
    """The next frame's data, or None at the end (a frame cut short ends the input too)."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return marshal.loads(body)  # noqa: S302  (from the engine that started this process)


def _say(out: BinaryIO, kind: bytes, text: str = "") -> None:
    """Tell the engine; nobody hears it when the engine was killed (its end of the pipe is
    closed), and the writer goes on: what it was handed is committed all the same."""
    with contextlib.suppress(OSError):
        out.write(kind + text.replace("\n", " ").encode("utf-8", "replace") + b"\n")


def _fail(out: BinaryIO, stream: BinaryIO, error: BaseException) -> int:
    """Report ``error`` and read the rest of the input (the engine never blocks on a full
    pipe); the engine stops the campaign."""
    _say(out, b"E", f"{type(error).__name__}: {error}")
    with contextlib.suppress(OSError):
        while stream.read(1 << 16):
            pass
    return 1


def main() -> int:
    """The writer process: apply frames from stdin until it ends."""
    stream: BinaryIO = open(0, "rb", buffering=1 << 20, closefd=False)
    out: BinaryIO = open(1, "wb", buffering=0, closefd=False)
    try:
        spec = read_frame(stream)
        if spec is None:
            return 0
        conn = connect(spec)
        applier = Applier(conn, spec)
        _say(out, b"R")
    except Exception as exc:
        return _fail(out, stream, exc)
    try:
        # (SQLite checkpoints the write-ahead log itself every "wal_pages" pages, in this
        # process: measured, checkpoints every half second cost the engine 2% of its rate)
        while True:
            frame = read_frame(stream)
            if frame is None:
                break
            if frame[0] == "w":
                applier.apply(frame[1], frame[2])
            elif frame[0] == "s":
                _say(out, b"S", str(frame[1]))
        # all committed: say so (the engine waits for this, not for the rest), then copy the
        # rest of the write-ahead log into the file, off the engine's thread
        _say(out, b"D")
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        conn.close()
    except Exception as exc:
        conn.close()
        return _fail(out, stream, exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
