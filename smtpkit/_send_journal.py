"""The send engine's side of the journal: claiming a campaign, intents, grouped commits.

:class:`CampaignLog` is what ``send`` writes through while a campaign runs (see
:mod:`smtpkit.journal` for how the records make "nothing lost, nothing sent twice" work):

* :meth:`CampaignLog.open` claims the campaign (one sending process at a time, a lease with a
  heartbeat), checks the frame's fingerprint, and settles what a crashed run left in flight;
* :meth:`CampaignLog.intent` stores a 23-byte record into a memory map of the campaign's
  in-flight file just before a message's final "." goes out;
* :meth:`CampaignLog.outcome` / :meth:`CampaignLog.record_final` queue the attempt rows, which
  are handed over in groups (every 20 ms or 4096 writes) to a *writer process*
  (:mod:`smtpkit._journal_writer`), which commits each group as one transaction, several rows
  per INSERT, in the compact layout of ``attempt_log`` (see ``journal._SCHEMA``), and
  checkpoints the write-ahead log as it ends. Where no writer process can be started (a
  frozen or embedded interpreter, an in-memory journal) the same code commits inline, on the
  event loop's thread, with a checkpoint thread beside it.

Where the time goes (``bench/send_bench.py``, 20,000 messages into smtp-sink, 11,000-13,000 a
second, the event loop's thread busy all the time): committing inline cost that thread about
2.5 us a message, and slowed the rest of its work by about as much again (SQLite's pages in
the core's caches instead of the engine's). With the writer process, the thread spends about
1 us a message handing groups over (``marshal``, one pipe write per group), about 0.5 us on the
intent and 0.3 us queueing the attempt; the writer process uses about 5 us a message of
another core (its start, about 15 ms, included).

:class:`NullLog` has the same interface and records nothing (``journal=None``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import marshal
import mmap
import os
import select
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

try:
    import fcntl
except ImportError:  # (Windows) no locks to hand to a writer process: the log commits inline
    fcntl = None  # type: ignore[assignment]

from . import _journal_writer
from . import journal as _journal
from ._journal_writer import Applier
from .errors import JournalError
from .journal import (
    _ATTEMPTS_PER_INSERT,
    _DROP_SETTLED,
    _PUT_ATTEMPT,
    _PUT_ATTEMPTS,
    _PUT_KIND,
    _PUT_SETTLED,
    _WAL_CHECKPOINT_PAGES,
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

__all__ = ["CampaignLog", "CampaignState", "Describe", "NullLog", "attempt_record"]

# Seconds after which a lease held by a process on another host counts as abandoned.
_LEASE_SECONDS = 120.0
_HEARTBEAT_SECONDS = 5.0
# Seconds between checkpoints of the write-ahead log while a campaign runs (inline writer; a
# writer process leaves them to SQLite, every _WAL_CHECKPOINT_PAGES pages).
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


def attempt_record(rec: RecipientRecord, attempt: int, status: str, reason: str | None,
                   code: int | None, enhanced: str | None, message: str | None,
                   started_at: float, finished_at: float, latency_ms: float | None,
                   server: str | None) -> tuple[Any, ...]:
    """One attempt as the journal writer takes it (``_journal_writer.ATTEMPT_FIELDS``)."""
    return (rec.position, attempt, status, reason, code, enhanced, message, started_at,
            finished_at, latency_ms, server, rec.segment, rec.message_id, rec.recipient,
            rec.rkey, rec.token or 0, rec.envelope_sender, rec.row_label)


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
        self.campaign_id = campaign_id
        self._conn = conn
        self._sync_intents = synchronous == "full"
        self._inflight = inflight_path(path, campaign)
        # a fresh in-flight file: the claim settled (and removed) any earlier one. Locked while
        # this run (and its writer process, which inherits the lock) may still write.
        self._file = _InflightFile(self._inflight)
        if fcntl is not None:
            fcntl.flock(self._file.fd, fcntl.LOCK_EX)
        self._done: asyncio.Future[None] | None = None  # one completed future, reused
        self._ops: list[tuple[str, tuple[Any, ...]]] = []
        # attempts as _journal_writer.ATTEMPT_FIELDS (the bulk of the writes)
        self._rows: list[tuple[Any, ...]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._closed = False
        self._sync_wanted = False
        self._unsettled: set[int] = set()  # positions of intents still without an attempt
        self._servers: dict[str, int] = {}
        self._settled: set[int] = set()
        self._writer = _start_writer(conn, _writer_spec(path, campaign, campaign_id,
                                                        synchronous), self._file.fd)

    @property
    def commits(self) -> int:
        """Groups of writes handed to the writer so far (each one transaction)."""
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
                _wait_for_writer(conn, path, campaign)
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
                self._writer.fail(JournalError(
                    f"Syncing the in-flight file {self._inflight!r} failed ({exc}); the "
                    "campaign stopped. Fix the disk, then run the same send again to resume."
                ))
        error = self._writer.write(ops, rows)
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    # -- records -------------------------------------------------------------------------
    def record_final(self, rec: RecipientRecord, status: str, reason: str | None, *,
                     detail: str | None = None) -> None:
        """A row settled without an SMTP attempt (skipped, or failed before sending)."""
        self._settled.add(int(rec.position))
        self._add(_PUT_SETTLED, _plain((
            self.campaign, rec.position, rec.row_label, rec.recipient, rec.rkey, rec.segment,
            status, reason, detail, rec.message_id, rec.envelope_sender, time.time(),
        )))

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
        """``outcome`` with positional arguments (numbers of any type, e.g. numpy's)."""
        self.record_attempt(_plain(attempt_record(rec, attempt, status, reason, code, enhanced,
                                                  message, started_at, finished_at, latency_ms,
                                                  server)))

    def record_attempt(self, record: tuple[Any, ...]) -> None:
        """Record one finished attempt given as :func:`attempt_record` makes it (the engine
        calls this once per attempt, with the tuple it also gives its Results). Its values
        must be None, str, int or float exactly (``marshal`` would take a numpy number or
        a str subclass for bytes): the engine's are."""
        failure = self._writer.failure
        if failure is not None:
            raise failure
        position = record[0]
        rows = self._rows
        rows.append(record)
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
        failure = self._writer.sync()
        if failure is not None:
            raise failure
        return [(float(t), r) for t, r in self._conn.execute(
            "SELECT started_at, recipient FROM attempt_log WHERE campaign_id = ? AND "
            "started_at >= ? ORDER BY started_at", (self.campaign_id, since))]

    # -- closing -------------------------------------------------------------------------
    def finish(self, state: str) -> None:
        """Commit what is pending, release the campaign and close (``state``: finished,
        interrupted, aborted)."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        self._writer.close()
        # (a writer process checkpoints the write-ahead log itself, as it ends)
        _release(self._conn, self.campaign, self.owner, state,
                 checkpoint=not self._writer.checkpoints)
        self._file.close()  # (and with it the lock)
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


def _release(conn: sqlite3.Connection, campaign: str, owner: str, state: str, *,
             checkpoint: bool) -> None:
    """Record the campaign's final state and release it; close the connection."""
    try:
        now = time.time()
        conn.execute(
            "UPDATE campaigns SET owner = NULL, state = ?, updated_at = ? "
            "WHERE campaign = ? AND owner = ?",
            (state, now, campaign, owner),
        )
        if checkpoint:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error:  # a write failure was already reported to the engine
        pass
    finally:
        conn.close()


def _writer_spec(path: str, campaign: str, campaign_id: int, synchronous: str
                 ) -> dict[str, Any]:
    """The writer's hello: the journal, its pragmas, the statements, the campaign."""
    return {
        "path": os.path.abspath(path), "synchronous": synchronous,
        "busy_timeout_ms": _journal._BUSY_TIMEOUT_MS, "wal_pages": _WAL_CHECKPOINT_PAGES,
        "heartbeat_seconds": _HEARTBEAT_SECONDS,
        "campaign": campaign, "campaign_id": campaign_id,
        "put_attempts": _PUT_ATTEMPTS, "per_insert": _ATTEMPTS_PER_INSERT,
        "put_attempt": _PUT_ATTEMPT, "put_kind": _PUT_KIND,
        "heartbeat": "UPDATE campaigns SET heartbeat = ?, updated_at = ? WHERE campaign = ?",
    }


def _write_failed(path: str, cause: str) -> JournalError:
    return JournalError(
        f"Writing the journal {path!r} failed ({cause}); the campaign stopped. Free disk space "
        "or fix the file, then run the same send again to resume."
    )


class _InlineWriter:
    """Commits each group on the caller's thread (the event loop's), with a checkpoint thread:
    the fallback where no writer process can be started."""

    checkpoints = False  # at the end (the checkpoint thread stops first)

    def __init__(self, conn: sqlite3.Connection, spec: dict[str, Any]) -> None:
        self.path = str(spec["path"])
        self.failure: JournalError | None = None
        self._applier = Applier(conn, spec)
        self._checkpointer = _Checkpointer(self.path, str(spec["synchronous"]))

    @property
    def commits(self) -> int:
        return self._applier.commits

    def write(self, ops: list[tuple[str, tuple[Any, ...]]], attempts: list[tuple[Any, ...]]
              ) -> JournalError | None:
        """Commit ``ops`` and ``attempts`` in one transaction; the error, if any (then and
        ever after)."""
        if self.failure is None and (ops or attempts):
            try:
                self._applier.apply(ops, attempts)
            except sqlite3.Error as exc:
                self.failure = _write_failed(self.path, str(exc))
        return self.failure

    def fail(self, error: JournalError) -> None:
        """Stop the journal's writes with ``error`` (found elsewhere, e.g. the in-flight
        file)."""
        if self.failure is None:
            self.failure = error

    def sync(self) -> JournalError | None:
        """Everything written is committed (here: at once)."""
        return self.failure

    def close(self) -> None:
        self._checkpointer.stop()


# The writer's program, run by path with only the standard library (see _journal_writer).
_WRITER_SCRIPT = os.path.abspath(_journal_writer.__file__)
# Seconds to wait for the writer process to start, and to commit what is left at the end.
_WRITER_START_SECONDS = 10.0
_WRITER_CLOSE_SECONDS = 120.0
# Bytes the pipe to the writer holds (Linux; about 6,000 attempts) before a write waits.
_PIPE_BYTES = 1 << 20


def _start_writer(conn: sqlite3.Connection, spec: dict[str, Any], lock_fd: int
                  ) -> _WriterProcess | _InlineWriter:
    """A writer process for the campaign, or the inline writer where none can be started."""
    executable = sys.executable or ""
    if (fcntl is None or getattr(sys, "frozen", False)
            or not os.path.basename(executable).startswith("python")
            or not os.path.isfile(_WRITER_SCRIPT) or spec["path"].endswith(":memory:")):
        return _InlineWriter(conn, spec)
    try:
        proc = subprocess.Popen(  # noqa: S603  (this Python, our own script)
            [executable, "-I", "-S", _WRITER_SCRIPT], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, pass_fds=(lock_fd,),
            # a session of its own: a Ctrl-C at the terminal stops the engine, not the writer,
            # which commits what it was given and ends with its input
            start_new_session=True, bufsize=0,
        )
    except OSError:
        return _InlineWriter(conn, spec)
    return _WriterProcess(proc, conn, spec)


class _WriterProcess:
    """Hands groups of writes to the writer process (:mod:`smtpkit._journal_writer`): one
    ``marshal`` frame and one pipe write per group. Falls back to committing inline when the
    process does not start."""

    def __init__(self, proc: subprocess.Popen[bytes], conn: sqlite3.Connection,
                 spec: dict[str, Any]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.path = str(spec["path"])
        # the error that stopped the journal's writes, if any (then and ever after); a plain
        # attribute (the engine reads it twice a message), the inline writer's after a fallback
        self.failure: JournalError | None = None
        self._sent = 0
        self._proc = proc
        self._conn = conn
        self._spec = spec
        self._input = proc.stdin.fileno()
        self._output = proc.stdout.fileno()
        with contextlib.suppress(AttributeError, OSError):  # Linux only; else 64 KiB
            fcntl.fcntl(self._input, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        os.set_blocking(self._output, False)
        self._said = b""
        self._ready = False
        self._done = False
        # groups handed over before the process said it is ready: applied inline if it never
        # does (it applies nothing before that)
        self._unconfirmed: list[tuple[Any, Any]] = []
        self._inline: _InlineWriter | None = None
        self._lost = False  # the pipe broke before the process said it is ready
        self._syncs = 0
        self._send(spec)

    @property
    def commits(self) -> int:
        """Groups handed over (each one transaction), or committed inline after a fallback."""
        return self._inline.commits if self._inline is not None else self._sent

    def fail(self, error: JournalError) -> None:
        """Stop the journal's writes with ``error`` (found elsewhere, e.g. the in-flight
        file)."""
        if self._inline is not None:
            self._inline.fail(error)
            self.failure = self._inline.failure
        elif self.failure is None:
            self.failure = error

    # -- talking to the process ------------------------------------------------------------
    def _send(self, frame: Any) -> None:
        try:
            data = marshal.dumps(frame)
        except ValueError:  # a value of another type (e.g. a numpy number): as plain values
            data = marshal.dumps(_plain(frame))
        head = _journal_writer.FRAME.pack(len(data))
        try:
            written = os.writev(self._input, (head, data))  # (no copy of the two joined)
            if written < len(head) + len(data):  # the pipe took part of it (interrupted)
                rest = memoryview(head + data)[written:]
                while rest:
                    rest = rest[os.write(self._input, rest):]
        except OSError as exc:
            if not self._ready:  # it never started: the log goes on inline (_started)
                self._lost = True
                return
            self._read(0.5)  # what it said before it stopped, if anything
            if self.failure is None:
                self.failure = _write_failed(
                    self.path, f"the journal writer process stopped: {exc.strerror or exc}")

    def _read(self, timeout: float | None) -> bool:
        """Take in what the process said (waiting up to ``timeout`` s for something); False at
        the end of its output."""
        if timeout:
            ready, _, _ = select.select([self._output], [], [], timeout)
            if not ready:
                return True
        try:
            chunk = os.read(self._output, 65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not chunk:
            return False
        said = self._said + chunk
        *lines, self._said = said.split(b"\n")
        for line in lines:
            if line.startswith(b"R"):
                self._ready = True
                self._unconfirmed.clear()
            elif line.startswith(b"D"):
                self._done = True
            elif line.startswith(b"E") and self.failure is None:
                self.failure = _write_failed(self.path, line[1:].decode("utf-8", "replace"))
            elif line.startswith(b"S"):
                self._synced = int(line[1:] or 0)
        return True

    def _wait(self, until: Any, seconds: float) -> bool:
        """Read what the process says until ``until()`` or its end; False if it ended."""
        deadline = time.monotonic() + seconds
        while not until():
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                return until()
        return True

    def _started(self, wait: bool) -> bool:
        """True while the process may be used: it said it is ready or, without ``wait``, may
        still do so. When it ends (or takes too long) before that, commit inline from now on,
        starting with what was handed to it."""
        if self._ready or self._inline is not None:
            return self._ready
        if not self._lost:
            if wait:
                self._wait(lambda: self._ready, _WRITER_START_SECONDS)
            elif self._read(None):
                return self._ready or not self._lost
            if self._ready:
                return True
        # never started (or too slowly): stopped for good before it commits anything; the
        # inline writer reads what the journal has (if it did commit some, those rows are
        # written again, the same: the inserts replace rows with the same key)
        self._stop(kill=True)
        self._inline = _InlineWriter(self._conn, self._spec)  # it says why, if it fails
        for ops, attempts in self._unconfirmed:
            self.failure = self._inline.write(ops, attempts)
        self._unconfirmed.clear()
        return False

    def _end_input(self) -> None:
        """Close the pipe to the process (through its file object: it owns the descriptor)."""
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        self._input = -1

    def _stop(self, *, kill: bool = False) -> None:
        self._end_input()
        if kill:
            self._proc.kill()
        try:
            self._proc.wait(_WRITER_CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        assert self._proc.stdout is not None
        self._proc.stdout.close()

    def _reap(self) -> None:
        """Close the pipe from the process and collect its exit on a thread (it has said all
        it had to say; its exit takes a few ms the engine need not wait for)."""
        assert self._proc.stdout is not None
        self._proc.stdout.close()
        threading.Thread(target=self._proc.wait, name="smtpkit-journal-writer-exit",
                         daemon=True).start()

    # -- the writer interface --------------------------------------------------------------
    def write(self, ops: list[tuple[str, tuple[Any, ...]]], attempts: list[tuple[Any, ...]]
              ) -> JournalError | None:
        """Hand ``ops`` and ``attempts`` over (one transaction); the error the process
        reported, if any (then and ever after)."""
        if not self._started(wait=False):
            assert self._inline is not None
            self.failure = self._inline.write(ops, attempts)
            return self.failure
        if self.failure is None:
            self._read(None)
        if self.failure is None and (ops or attempts):
            if not self._ready:
                self._unconfirmed.append((ops, attempts))
            self._send(("w", ops, attempts))
            self._sent += 1
            if self._lost:  # gone before it started: inline from now on, this group too
                self._started(wait=False)
        return self.failure

    def sync(self) -> JournalError | None:
        """Wait until everything handed over is committed."""
        if not self._started(wait=True):
            assert self._inline is not None
            self.failure = self._inline.sync()
            return self.failure
        if self.failure is None:
            self._syncs += 1
            token = self._syncs
            self._send(("s", token))
            if not self._wait(lambda: self.failure is not None or self._synced >= token,
                              _WRITER_CLOSE_SECONDS) and self.failure is None:
                self.failure = _write_failed(self.path, "the journal writer process stopped")
        return self.failure

    _synced = 0

    @property
    def checkpoints(self) -> bool:
        """Whether the process checkpoints the write-ahead log at the end (not inline)."""
        return self._inline is None

    def close(self) -> None:
        """End the input and wait until the process has committed it all and ended."""
        if self._inline is None and self._input >= 0 and self._started(wait=True):
            self._end_input()
            # until it says it is done (its exit, a few ms later, is not waited for)
            if not self._wait(lambda: self._done or self.failure is not None,
                              _WRITER_CLOSE_SECONDS):
                self._stop()
                if self.failure is None:
                    self.failure = _write_failed(
                        self.path,
                        f"the journal writer process ended with {self._proc.returncode}")
            elif not self._done:
                self._stop()
            else:
                self._reap()
        if self._inline is not None:
            self._inline.close()


def _plain(value: Any) -> Any:
    """``value`` with exactly None, str, int, float, tuples, lists and dicts: numpy numbers
    and other number types as int / float, str subclasses as str (``marshal`` stores what
    it does not know but has a buffer, a numpy number or ``numpy.str_``, as bytes)."""
    kind = type(value)
    if value is None or kind in (str, int, float, bool, bytes):
        return value
    if kind in (tuple, list):
        return kind(_plain(v) for v in value)
    if kind is dict:
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)
    if hasattr(value, "__index__"):
        return int(value)
    if hasattr(value, "__float__"):
        return float(value)
    return str(value)


def _wait_for_writer(conn: sqlite3.Connection, path: str, campaign: str) -> None:
    """Wait until the writer process of an earlier, killed run of ``campaign`` has committed
    what it was given (it holds the in-flight file's lock until then), so that settling that
    run sees all of it. Not when the campaign's sender is alive (the claim says so)."""
    if fcntl is None:
        return
    try:
        fd = os.open(inflight_path(path, campaign), os.O_RDONLY)
    except OSError:
        return
    try:
        deadline = time.monotonic() + _WRITER_CLOSE_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            row = conn.execute("SELECT owner, heartbeat FROM campaigns WHERE campaign = ?",
                               (campaign,)).fetchone()
            if row is not None and row[0] is not None and \
                    _lease_alive(row[0], row[1], time.time()):
                return  # being sent right now: the claim refuses it
            if time.monotonic() > deadline:
                raise JournalError(
                    f"An earlier run of campaign {campaign!r} is still writing the journal "
                    f"{path!r}; wait for it to finish, then run the same send again."
                )
            time.sleep(0.02)
    finally:
        os.close(fd)


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
    if not found:
        return 0
    attempts: list[tuple[Any, ...]] = []
    for e in found:
        rec = describe(e.position) if describe is not None else None
        if rec is not None:
            who = (rec.row_label, rec.recipient, rec.rkey, rec.token, rec.envelope_sender,
                   rec.segment, rec.message_id)
        else:
            who = _known(conn, campaign, e.position)
        label, recipient, rkey, token, envelope_sender, segment, message_id = who
        attempts.append((e.position, e.attempt, "unknown", reason, None, None, text,
                         e.started_at, None, None, e.server, segment, message_id, recipient,
                         rkey, token or 0, envelope_sender, label))
    # (in the claim's transaction: the attempt rows and kinds the writer would make)
    rows, kinds = Applier(conn, _writer_spec(path, campaign, campaign_id, "normal")).rows(
        attempts)
    conn.executemany(_PUT_KIND, kinds)
    conn.executemany(_PUT_ATTEMPT, rows)
    conn.executemany(_DROP_SETTLED, [(campaign, e.position) for e in found])
    return len(found)


def _campaign_id(conn: sqlite3.Connection, campaign: str) -> int:
    return int(conn.execute("SELECT id FROM campaigns WHERE campaign = ?",
                            (campaign,)).fetchone()[0])


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

    def record_attempt(self, record: tuple[Any, ...]) -> None:
        return None

    def recent_attempts(self, since: float) -> list[tuple[float, str | None]]:
        return []

    def finish(self, state: str) -> None:
        return None
