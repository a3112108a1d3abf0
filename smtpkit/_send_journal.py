"""The send engine's side of the journal: claiming a campaign, intents, grouped commits.

:class:`CampaignLog` is what ``send`` writes through while a campaign runs (see
:mod:`smtpkit.journal` for how the records make "nothing lost, nothing sent twice" work):

* :meth:`CampaignLog.open` claims the campaign (one sending process at a time, a lease with a
  heartbeat), checks the frame's fingerprint, and settles what a crashed run left in flight;
* :meth:`CampaignLog.intent` stores a 23-byte record into a memory map of the campaign's
  in-flight file just before a message's final "." goes out;
* :meth:`CampaignLog.outcome` / :meth:`CampaignLog.record_final` queue the attempt rows, which
  are committed in groups (every 20 ms or 4096 writes) on the event loop's thread, several
  rows per INSERT, in the compact layout of ``attempt_log`` (see ``journal._SCHEMA``);
* a thread of its own checkpoints the write-ahead log while the campaign runs, so that closing
  the journal does not copy the whole campaign at once.

Where the time goes (``bench/send_bench.py``, 20,000 messages into smtp-sink, about 10,000 a
second, measured inside these methods): the commits about 3.3 us per message (0.5 of it making
the rows), the intent about 1.7 us (1 of it the two stores into the map), queueing the attempt
about 0.9 us, opening and closing the journal about 0.7 us.

:class:`NullLog` has the same interface and records nothing (``journal=None``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import mmap
import os
import socket
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import JournalError
from .journal import (
    _ATTEMPTS_PER_INSERT,
    _DROP_SETTLED,
    _PUT_ATTEMPT,
    _PUT_ATTEMPTS,
    _PUT_KIND,
    _PUT_SETTLED,
    STATUS_CODES,
    RecipientRecord,
    _bounce_rows,
    _connect,
    _finish_outcomes,
    _known,
    _latest_statuses,
    _read_outcome_rows,
    _unanswered,
    inflight_path,
)

__all__ = ["CampaignLog", "CampaignState", "Describe", "NullLog"]

# Seconds after which a lease held by a process on another host counts as abandoned.
_LEASE_SECONDS = 120.0
_HEARTBEAT_SECONDS = 5.0
# Seconds between checkpoints of the journal's write-ahead log while a campaign runs.
_CHECKPOINT_SECONDS = 0.5
# Seconds an outcome may wait to share its commit with others, and how many writes at most.
# A killed process leaves the replies of this last moment "unknown" (at 10,000 messages/s,
# ~200 rows at 20 ms); longer groups save ~0.5 us per message (50 ms), not worth that.
_LAZY_COMMIT_SECONDS = 0.02
_MAX_QUEUED = 4096
# In-flight records without their kind byte (see smtpkit.journal for the layout)
_INTENT_BODY = struct.Struct("<qiHd")
_SERVER_BODY = struct.Struct("<HB")
_INTENT_SIZE = 1 + _INTENT_BODY.size
_pack_intent = _INTENT_BODY.pack_into

# Campaigns being sent by this process right now: (real path, campaign).
_active: set[tuple[str, str]] = set()
_active_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class CampaignState:
    """What a previous run left: status code (``STATUS_CODES``) and attempt count per row."""

    status: np.ndarray
    attempts: np.ndarray
    resumed: bool
    unknown_after_crash: int


class _InflightFile:
    """Fixed-size records appended to a shared memory map of the campaign's in-flight file.

    A store into a ``MAP_SHARED`` file mapping lands in the kernel's page cache at once: it
    survives the process being killed, with no system call per record. Each record's kind
    byte is stored last, so a record is either whole or absent (an absent one reads as 0,
    which ends the file for the reader).
    """

    _CHUNK = 64 * 1024

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.size = self._CHUNK
        os.ftruncate(self.fd, self.size)
        self.map = mmap.mmap(self.fd, self.size)
        self.offset = 0
        self._synced = 0

    def append(self, kind: bytes, body: bytes) -> None:
        end = self.offset + 1 + len(body)
        if end > self.size:
            self.grow(end)
        start = self.offset
        self.map[start + 1 : end] = body
        self.map[start] = kind[0]  # last: the record now counts
        self.offset = end

    def grow(self, end: int) -> None:
        """Make the file (and its map) at least ``end`` bytes long."""
        self.size = max(self.size * 2, end)
        os.ftruncate(self.fd, self.size)
        self.map.resize(self.size)

    def sync(self) -> None:
        """Flush what was appended since the last sync to the disk (``synchronous="full"``)."""
        if self.offset > self._synced:
            page = mmap.ALLOCATIONGRANULARITY
            start = self._synced // page * page
            self.map.flush(start, self.offset - start)
            self._synced = self.offset

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


class CampaignLog:
    """The engine's writer for one campaign run: group commit, intents, outcomes, lease.

    Also the interface of :class:`NullLog` (``journal=None``). Create it with
    :meth:`open`; it must be used from one event loop.
    """

    persistent = True

    def __init__(self, conn: sqlite3.Connection, path: str, campaign: str, owner: str, *,
                 synchronous: str = "normal", campaign_id: int | None = None) -> None:
        self.path = path
        self.campaign = campaign
        self.owner = owner
        if campaign_id is None:
            campaign_id = _campaign_id(conn, campaign)
        self._kinds = _Kinds(conn, campaign_id)
        self._sync_intents = synchronous == "full"
        self._inflight = inflight_path(path, campaign)
        # a fresh in-flight file: the claim settled (and removed) any earlier one
        self._file = _InflightFile(self._inflight)
        self._done: asyncio.Future[None] | None = None  # one completed future, reused
        self._ops: list[tuple[str, tuple[Any, ...]]] = []
        # attempts as the engine gave them (the bulk of the writes; rows made at commit time)
        self._rows: list[tuple[Any, ...]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._closed = False
        self._sync_wanted = False
        self._unsettled: set[int] = set()  # positions of intents still without an attempt
        self._servers: dict[str, int] = {}
        self._settled: set[int] = set()
        self._writer = _Committer(conn, path, campaign, owner)
        self._checkpointer = _Checkpointer(path, synchronous)

    @property
    def commits(self) -> int:
        """Transactions committed so far (each holds every write queued meanwhile)."""
        return self._writer.commits

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        campaign: str,
        /,
        *,
        identity: str,
        rows: int,
        to_send: int,
        sender: str | None,
        options: Mapping[str, Any],
        synchronous: str = "normal",
        describe: Describe | None = None,
    ) -> tuple[CampaignLog, CampaignState]:
        """Start or resume ``campaign``: check the fingerprint and the lease, settle crashes.

        ``describe(position)`` gives the RecipientRecord of a row of the frame being sent, for
        the rows a crash left ``unknown``.
        """
        path = os.fspath(path)
        conn = _connect(path, create=True, synchronous=synchronous)
        key = (os.path.realpath(path), campaign)
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        try:
            with _active_lock:
                if key in _active:
                    raise JournalError(
                        f"Campaign {campaign!r} is already being sent by this Python process "
                        "(another cell or thread); wait for it to finish."
                    )
                _active.add(key)
            try:
                state, campaign_id = cls._claim(
                    conn, path, campaign, owner, identity=identity, rows=rows,
                    to_send=to_send, sender=sender, options=options, describe=describe)
            except BaseException:
                with _active_lock:
                    _active.discard(key)
                raise
            settled = {int(r[0]) for r in conn.execute(
                "SELECT position FROM settled WHERE campaign = ?", (campaign,))}
            # every intent of an earlier run is settled now (committed): drop its file
            with contextlib.suppress(FileNotFoundError):
                os.remove(inflight_path(path, campaign))
            log = cls(conn, path, campaign, owner, synchronous=synchronous,
                      campaign_id=campaign_id)
        except BaseException:
            with _active_lock:
                _active.discard(key)
            conn.close()
            raise
        log._settled = settled
        return log, state

    @staticmethod
    def _claim(
        conn: sqlite3.Connection,
        path: str,
        campaign: str,
        owner: str,
        *,
        identity: str,
        rows: int,
        to_send: int,
        sender: str | None,
        options: Mapping[str, Any],
        describe: Describe | None,
    ) -> tuple[CampaignState, int]:
        now = time.time()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise JournalError(
                f"The journal {path!r} is locked by another program ({exc}); close it and retry."
            ) from exc
        try:
            row = conn.execute(
                "SELECT identity, rows, to_send, owner, heartbeat FROM campaigns "
                "WHERE campaign = ?",
                (campaign,),
            ).fetchone()
            resumed = row is not None
            if row is not None:
                old_identity, old_rows, old_to_send, old_owner, heartbeat = row
                if old_identity != identity:
                    raise JournalError(
                        f"Campaign {campaign!r} in {path!r} was started with a different list "
                        f"({old_to_send} rows to send out of {old_rows}); this frame has "
                        f"{to_send} out of {rows}, or other addresses or order. Pass the same "
                        "frame to resume it, or choose a new campaign name to send this one."
                    )
                if old_owner is not None and _lease_alive(old_owner, heartbeat, now):
                    raise JournalError(
                        f"Campaign {campaign!r} is being sent right now by another process "
                        f"({old_owner.rsplit(':', 1)[0]}); wait for it to finish or stop it "
                        "first. Only one process may send a campaign at a time."
                    )
                conn.execute(
                    "UPDATE campaigns SET owner = ?, heartbeat = ?, state = 'running', "
                    "updated_at = ?, runs = runs + 1, sender = ?, options = ? "
                    "WHERE campaign = ?",
                    (owner, now, now, sender, json.dumps(dict(options), default=str), campaign),
                )
            else:
                conn.execute(
                    "INSERT INTO campaigns (campaign, identity, rows, to_send, created_at, "
                    "updated_at, state, runs, sender, owner, heartbeat, options) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'running', 1, ?, ?, ?, ?)",
                    (campaign, identity, rows, to_send, now, now, sender, owner, now,
                     json.dumps(dict(options), default=str)),
                )
            campaign_id = _campaign_id(conn, campaign)
            unknown = _settle_interrupted(conn, path, campaign, campaign_id, describe)
            status = np.zeros(rows, dtype=np.int8)
            attempts = np.zeros(rows, dtype=np.int32)
            for position, text, count in _latest_statuses(conn, campaign):
                if 0 <= position < rows:
                    status[position] = STATUS_CODES.get(text, 0)
                    attempts[position] = count
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return CampaignState(status, attempts, resumed, unknown), campaign_id

    # -- group commit --------------------------------------------------------------------
    def _add(self, sql: str, params: tuple[Any, ...]) -> None:
        failure = self._writer.failure
        if failure is not None:
            raise failure
        self._ops.append((sql, params))
        if len(self._ops) + len(self._rows) >= _MAX_QUEUED:
            self.flush()
        elif self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(
                _LAZY_COMMIT_SECONDS, self.flush
            )

    def flush(self) -> None:
        """Commit everything queued now (one transaction) and wake those waiting for it."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        ops, self._ops = self._ops, []
        rows, self._rows = self._rows, []
        waiters, self._waiters = self._waiters, []
        sync, self._sync_wanted = self._sync_wanted, False
        if sync and self._writer.failure is None:
            try:
                self._file.sync()
            except OSError as exc:
                self._writer.failure = JournalError(
                    f"Syncing the in-flight file {self._inflight!r} failed ({exc}); the "
                    "campaign stopped. Fix the disk, then run the same send again to resume."
                )
        error = self._writer.write(ops, self._attempt_rows(rows), self._kinds.take_new())
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def _attempt_rows(self, attempts: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The attempt_log rows (journal._ATTEMPT_FIELDS) of the attempts queued by
        :meth:`attempt` (made here, all at once: cheaper than one at a time)."""
        kinds = self._kinds
        known = kinds.codes.get
        campaign_id = kinds.campaign_id
        rows: list[tuple[Any, ...]] = []
        add = rows.append
        for (rec, attempt, status, reason, code, enhanced, message, started_at, finished_at,
             latency_ms, server) in attempts:
            what = (status, reason, code, enhanced, server, rec.segment)
            add((campaign_id, rec.position, attempt, known(what) or kinds.add(what), message,
                 started_at, finished_at, latency_ms, rec.message_id, rec.recipient, rec.rkey,
                 rec.token or 0, rec.envelope_sender, rec.row_label))
        return rows

    # -- records -------------------------------------------------------------------------
    def record_final(self, rec: RecipientRecord, status: str, reason: str | None, *,
                     detail: str | None = None) -> None:
        """A row settled without an SMTP attempt (skipped, or failed before sending)."""
        self._settled.add(rec.position)
        self._add(_PUT_SETTLED, (
            self.campaign, rec.position, rec.row_label, rec.recipient, rec.rkey, rec.segment,
            status, reason, detail, rec.message_id, rec.envelope_sender, time.time(),
        ))

    def intent(self, rec: RecipientRecord, attempt: int, started_at: float, server: str
               ) -> asyncio.Future[None]:
        """Record that this message's data is about to go out (before its final ".").

        One record stored into the in-flight file's memory map: safe from a killed process
        once it returns, so the future returned is already done (awaiting it does not
        suspend). With ``synchronous="full"`` it resolves once the file is synced to disk
        (syncs are grouped).
        """
        # (one call per message: kept short, the file's append inlined)
        failure = self._writer.failure
        if failure is not None:
            raise failure
        file = self._file
        position = rec.position
        try:
            server_id = self._servers.get(server)
            if server_id is None:
                server_id = self._servers[server] = len(self._servers)
                name = server.encode("utf-8", "replace")[:255]
                file.append(b"S", _SERVER_BODY.pack(server_id, len(name)) + name)
            start = file.offset
            end = start + _INTENT_SIZE
            if end > file.size:
                file.grow(end)
            _pack_intent(file.map, start + 1, position, attempt, server_id, started_at)
            file.map[start] = 73  # b"I", stored last: the record now counts
            file.offset = end
        except (OSError, ValueError) as exc:
            raise JournalError(
                f"Writing the in-flight file {self._inflight!r} failed ({exc}); the campaign "
                "stopped. Free disk space or fix the folder, then run the same send again to "
                "resume."
            ) from None
        # a row's attempts are one at a time: its position names its open intent
        self._unsettled.add(position)
        done = self._done
        if done is not None:
            return done
        if not self._sync_intents:
            done = self._done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if not self._sync_wanted:  # the first intent of a group schedules the sync
            self._sync_wanted = True
            if self._handle is not None:
                self._handle.cancel()
            self._handle = asyncio.get_running_loop().call_soon(self.flush)
        return waiter

    def outcome(
        self,
        rec: RecipientRecord,
        *,
        attempt: int,
        status: str,
        reason: str | None,
        code: int | None,
        enhanced: str | None,
        message: str | None,
        started_at: float,
        finished_at: float,
        latency_ms: float | None,
        server: str | None,
        first_attempt_at: float | None = None,
        final_status: str | None = None,
        final_reason: str | None = None,
    ) -> None:
        """Record one finished attempt; the row's status is that of its latest attempt.

        ``first_attempt_at``, ``final_status`` and ``final_reason`` are accepted for callers
        written against the first version of this class and not needed: the journal derives
        them from the attempts (a bounce or complaint comes from ``record_bounces``).
        """
        self.attempt(rec, attempt, status, reason, code, enhanced, message, started_at,
                     finished_at, latency_ms, server)

    def attempt(self, rec: RecipientRecord, attempt: int, status: str, reason: str | None,
                code: int | None, enhanced: str | None, message: str | None,
                started_at: float, finished_at: float, latency_ms: float | None,
                server: str | None) -> None:
        """``outcome`` with positional arguments (the engine calls it once per attempt)."""
        failure = self._writer.failure
        if failure is not None:
            raise failure
        position = rec.position
        rows = self._rows
        rows.append((rec, attempt, status, reason, code, enhanced, message, started_at,
                     finished_at, latency_ms, server))  # made into a row by _attempt_rows
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(
                _LAZY_COMMIT_SECONDS, self.flush
            )
        elif len(rows) >= _MAX_QUEUED:
            self.flush()
        self._unsettled.discard(position)
        if self._settled and position in self._settled:
            self._settled.discard(position)
            self._ops.append((_DROP_SETTLED, (self.campaign, position)))

    def recent_attempts(self, since: float) -> list[tuple[float, str | None]]:
        """(started_at, recipient) of this campaign's attempts that started at ``since`` (POSIX
        seconds) or later, earlier runs included: what an hourly cap must count."""
        self.flush()
        return [(float(t), r) for t, r in self._writer.conn.execute(
            "SELECT started_at, recipient FROM attempt_log WHERE campaign_id = ? AND "
            "started_at >= ? ORDER BY started_at", (self._kinds.campaign_id, since))]

    # -- closing -------------------------------------------------------------------------
    def finish(self, state: str) -> None:
        """Commit what is pending, release the campaign and close (``state``: finished,
        interrupted, aborted)."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        self._checkpointer.stop()
        self._writer.close(state)
        self._file.close()
        if self._writer.failure is None and not self._unsettled:
            # every intent has its attempt committed: the file has nothing left to tell
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._inflight)
        with _active_lock:
            _active.discard((os.path.realpath(self.path), self.campaign))

    def outcome_frame(self, rows: int) -> pd.DataFrame:
        """The outcome of every row of this run (positions 0..rows-1), OUTCOME_COLUMNS."""
        conn = _connect(self.path, create=False)
        try:
            frame = _read_outcome_rows(conn, self.campaign)
            bounces = _bounce_rows(conn, self.campaign)
        finally:
            conn.close()
        return _complete(_finish_outcomes(frame, bounces, labels=False), frame["position"],
                         rows)


class _Committer:
    """Commits queued journal writes, one transaction per group, on the caller's thread.

    (Not a thread of its own: Python's sqlite3 releases and takes back the GIL for every row
    it inserts, so the event loop would wait for the GIL at each of its system calls. Measured
    again with multi-row INSERTs, a commit thread still costs 5 us a message more than it
    saves.)
    """

    def __init__(self, conn: sqlite3.Connection, path: str, campaign: str, owner: str) -> None:
        self.conn = conn
        self.path = path
        self.campaign = campaign
        self.owner = owner
        self.failure: JournalError | None = None
        self.commits = 0
        self._heartbeat = time.time()

    def write(self, ops: list[tuple[str, tuple[Any, ...]]],
              rows: Sequence[tuple[Any, ...]] = (),
              kinds: Sequence[tuple[Any, ...]] = ()) -> JournalError | None:
        """Commit ``ops``, the attempt_log ``rows`` and the new attempt_kinds ``kinds`` in one
        transaction; the error, if any (then and ever after)."""
        if self.failure is None and (ops or rows or kinds):
            try:
                self._commit(ops, rows, kinds)
            except sqlite3.Error as exc:
                self.failure = JournalError(
                    f"Writing the journal {self.path!r} failed ({exc}); the campaign stopped. "
                    "Free disk space or fix the file, then run the same send again to resume."
                )
        return self.failure

    def _commit(self, ops: list[tuple[str, tuple[Any, ...]]],
                rows: Sequence[tuple[Any, ...]], kinds: Sequence[tuple[Any, ...]]) -> None:
        conn = self.conn
        now = time.time()
        # One executemany per statement. Each statement writes one table and keeps its order;
        # the tables do not depend on each other within a transaction, which commits at once.
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for sql, params in ops:
            grouped.setdefault(sql, []).append(params)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if kinds:
                conn.executemany(_PUT_KIND, kinds)
            if rows:
                _insert_attempts(conn, rows)
            for sql, params_list in grouped.items():
                conn.executemany(sql, params_list)
            if now - self._heartbeat > _HEARTBEAT_SECONDS:
                conn.execute(
                    "UPDATE campaigns SET heartbeat = ?, updated_at = ? WHERE campaign = ?",
                    (now, now, self.campaign),
                )
                self._heartbeat = now
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.commits += 1

    def close(self, state: str) -> None:
        """Record the campaign's final state and release it; close the file."""
        try:
            now = time.time()
            self.conn.execute(
                "UPDATE campaigns SET owner = NULL, state = ?, updated_at = ? "
                "WHERE campaign = ? AND owner = ?",
                (state, now, self.campaign, self.owner),
            )
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # a write failure was already reported to the engine
            pass
        finally:
            self.conn.close()


class _Checkpointer:
    """Copies the journal's write-ahead log into the database file every few tenths of a
    second while a campaign runs, on a thread of its own.

    SQLite does that copy (and its syncs) with the GIL released, so the event loop goes on
    meanwhile; without it, closing the journal would copy the whole campaign at once on the
    loop's thread. Best effort: a checkpoint that cannot finish now (a reader is on an older
    snapshot) is done later, by the next one or by the close.
    """

    def __init__(self, path: str, synchronous: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path, synchronous),
                                        name="smtpkit-journal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self, path: str, synchronous: str) -> None:
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
            while not self._stop.wait(_CHECKPOINT_SECONDS):
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop (after the checkpoint under way, if any) and close its connection."""
        self._stop.set()
        self._thread.join()


def _complete(result: pd.DataFrame, positions: pd.Series, rows: int) -> pd.DataFrame:
    """Reindex by position 0..rows-1 (a row never recorded would show as missing)."""
    pos = positions.to_numpy(dtype="int64")
    if len(pos) == rows and (rows == 0 or (pos[0] == 0 and pos[-1] == rows - 1)):
        return result.reset_index(drop=True)
    frame = result.reset_index(drop=True)
    frame.index = pd.Index(pos)
    return frame.reindex(pd.RangeIndex(rows))


def _lease_alive(owner: str, heartbeat: float | None, now: float) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return False  # this process, not in _active: a run that ended without releasing
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return heartbeat is not None and now - heartbeat < _LEASE_SECONDS


Describe = Callable[[int], "RecipientRecord | None"]


def _settle_interrupted(conn: sqlite3.Connection, path: str, campaign: str, campaign_id: int,
                        describe: Describe | None) -> int:
    """Turn intents without a recorded attempt (the process died after their data went out)
    into ``unknown`` attempts: never re-sent. ``describe(position)`` (the engine's plan of the
    same frame) fills in who the row is; else what the journal already knows. Returns how
    many."""
    reason = "interrupted_after_data"
    text = "The sending process stopped after the message data went out, before the reply."
    found = _unanswered(conn, path, campaign)
    kinds = _Kinds(conn, campaign_id) if found else None
    for e in found:
        rec = describe(e.position) if describe is not None else None
        if rec is not None:
            who = (rec.row_label, rec.recipient, rec.rkey, rec.token, rec.envelope_sender,
                   rec.segment, rec.message_id)
        else:
            who = _known(conn, campaign, e.position)
        label, recipient, rkey, token, envelope_sender, segment, message_id = who
        assert kinds is not None
        what = ("unknown", reason, None, None, e.server, segment)
        conn.execute(_PUT_ATTEMPT, (
            campaign_id, e.position, e.attempt, kinds.codes.get(what) or kinds.add(what), text,
            e.started_at, None, None, message_id, recipient, rkey, token, envelope_sender, label,
        ))
        conn.execute(_DROP_SETTLED, (campaign, e.position))
    if kinds is not None:
        conn.executemany(_PUT_KIND, kinds.take_new())
    return len(found)


def _campaign_id(conn: sqlite3.Connection, campaign: str) -> int:
    return int(conn.execute("SELECT id FROM campaigns WHERE campaign = ?",
                            (campaign,)).fetchone()[0])


class _Kinds:
    """The codes of one campaign's attempt kinds: (state, reason, smtp_code, smtp_status,
    server, segment) as stored in attempt_kinds, known ones loaded from the journal.

    Only the process sending the campaign adds kinds (it holds the campaign's lease); a new
    one is written in the same transaction as the first attempt row that uses it.
    """

    def __init__(self, conn: sqlite3.Connection, campaign_id: int) -> None:
        self.campaign_id = campaign_id
        self.codes: dict[tuple[Any, ...], int] = {
            tuple(what): int(kind) for kind, *what in conn.execute(
                "SELECT kind, state, reason, smtp_code, smtp_status, server, segment "
                "FROM attempt_kinds WHERE campaign_id = ?", (campaign_id,))
        }
        self._next = max(self.codes.values(), default=0) + 1  # codes start at 1 (never falsy)
        self._new: list[tuple[Any, ...]] = []

    def add(self, what: tuple[Any, ...]) -> int:
        """Give ``what`` (not known yet) the next code."""
        kind = self.codes[what] = self._next
        self._next += 1
        self._new.append((self.campaign_id, kind, *what))
        return kind

    def take_new(self) -> list[tuple[Any, ...]]:
        """The attempt_kinds rows added since the last call (to write now)."""
        new, self._new = self._new, []
        return new


def _insert_attempts(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """INSERT the attempt_log ``rows``: most of them many at a time, the rest one by one."""
    size = _ATTEMPTS_PER_INSERT
    whole = len(rows) - len(rows) % size
    flat = itertools.chain.from_iterable
    for start in range(0, whole, size):
        conn.execute(_PUT_ATTEMPTS, tuple(flat(rows[start : start + size])))
    if whole < len(rows):
        conn.executemany(_PUT_ATTEMPT, rows[whole:])


class NullLog:
    """The interface of :class:`CampaignLog` that records nothing (``journal=None``): no
    resume, no protection across runs. The engine keeps the run's outcomes itself."""

    persistent = False
    commits = 0

    def __init__(self, campaign: str) -> None:
        self.campaign = campaign

    def state(self, rows: int) -> CampaignState:
        return CampaignState(np.zeros(rows, dtype=np.int8), np.zeros(rows, dtype=np.int32),
                             False, 0)

    def flush(self) -> None:
        return None

    def record_final(self, rec: RecipientRecord, status: str, reason: str | None, *,
                     detail: str | None = None) -> None:
        return None

    def intent(self, rec: RecipientRecord, attempt: int, started_at: float, server: str
               ) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)  # nothing to make durable without a journal
        return done

    def outcome(self, rec: RecipientRecord, *, attempt: int, status: str, reason: str | None,
                code: int | None, enhanced: str | None, message: str | None,
                started_at: float, finished_at: float, latency_ms: float | None,
                server: str | None, first_attempt_at: float | None = None,
                final_status: str | None = None, final_reason: str | None = None) -> None:
        return None

    def attempt(self, rec: RecipientRecord, attempt: int, status: str, reason: str | None,
                code: int | None, enhanced: str | None, message: str | None,
                started_at: float, finished_at: float, latency_ms: float | None,
                server: str | None) -> None:
        return None

    def recent_attempts(self, since: float) -> list[tuple[float, str | None]]:
        return []

    def finish(self, state: str) -> None:
        return None
