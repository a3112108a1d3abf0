"""The campaign journal: one SQLite file (WAL) that records every attempt, for exactly-once sends.

The send engine writes here; anyone can read from any process at any time, also while a
campaign runs (``read_outcomes``, ``read_attempts``, ``Journal(path).campaigns()``).

How "nothing lost, nothing sent twice" works:

* Before a message's content goes to the server (after the server said 354 to DATA), its
  *intent* is recorded: a 23-byte record (row, attempt, server, time) stored into a shared
  memory map of the campaign's in-flight file beside the journal (``<journal>-inflight-<id>``),
  which is in the kernel's page cache, safe from the process being killed, the moment the
  store is done (no system call per message). After the
  reply, the attempt is recorded in the SQLite journal. Nothing waits for those writes: they
  are handed over in groups (every 20 ms or 4096 writes) to the campaign's writer process,
  which commits each group as one transaction on another core, so journaling costs the engine
  about a microsecond or two per message, not a transaction. The writer outlives a killed
  engine long enough to commit every group it was given (a resume waits for it); a process
  killed within a group's 20 ms leaves the replies of that moment ``unknown``, below: never
  sent twice, at worst not known to be sent.
* On resume, an intent without a recorded attempt is ``unknown``: the process died between the
  final "." and the reply (or before the reply was committed), so the server may have the
  message. It is never re-sent. A message with no intent never reached its final "." and is
  tried again. The engine, resuming with the same frame (fingerprint-checked), says who such
  a row is; the in-flight file is removed once every intent in it is settled.
* ``sent``, ``failed`` (by the server), ``unknown`` are final: never sent again. ``deferred``
  is retried. Rows that never reached a server (``skipped``, or ``failed`` because they could
  not be rendered) are planned again on each run, from the frame given.
* The rows a campaign sends are fingerprinted; resuming with a different frame raises
  :class:`~smtpkit.errors.JournalError`. Only one process sends a campaign at a time.

Durability: with the default ``synchronous="normal"`` everything written survives the Python
process being killed (SIGKILL, a Jupyter kernel restart); ``synchronous="full"`` also survives
a power cut: intents are synced to disk (grouped) before the final ".", and every commit too.

Reading never creates a file: a path where no journal was written raises ``JournalError``.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "journal.db")
    >>> j = Journal(path)
    >>> j.record_bounces(None, pd.DataFrame(columns=list(BOUNCE_COLUMNS)))  # creates the file
    0
    >>> j.campaigns().empty
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import math
import os
import sqlite3
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._address_key import address_key
from .errors import JournalError, MissingColumnError
from .outcomes import ATTEMPT_DTYPES, OUTCOME_COLUMNS, OUTCOME_DTYPES, coerce_dtypes

__all__ = [
    "BOUNCE_COLUMNS",
    "SCHEMA_VERSION",
    "STATUS_CODES",
    "CampaignLog",
    "CampaignState",
    "Journal",
    "NullLog",
    "RecipientRecord",
    "fingerprint",
    "has_bounces",
    "previous_statuses",
    "read_attempts",
    "read_outcomes",
    "recipient_token",
    "suppressed_addresses",
]

#: Version of the table layout written in the file (``PRAGMA user_version``).
SCHEMA_VERSION = 2
#: Columns ``record_bounces`` reads from a ``read_bounces`` frame.
BOUNCE_COLUMNS: tuple[str, ...] = (
    "recipient",
    "original_message_id",
    "kind",
    "status",
    "reason",
    "hard",
    "arrived_at",
    "bounce_to",
    "diagnostic",
)
#: Small integer codes of the statuses in ``CampaignLog.states`` (0 = nothing recorded).
STATUS_CODES: Mapping[str, int] = {
    "sent": 1,
    "deferred": 2,
    "failed": 3,
    "unknown": 4,
    "skipped": 5,
    "bounced": 6,
    "complained": 7,
}
_READ_CHUNK = 10_000
_BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY,
    campaign TEXT NOT NULL UNIQUE,
    identity TEXT NOT NULL,
    rows INTEGER NOT NULL,
    to_send INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    state TEXT NOT NULL,
    runs INTEGER NOT NULL DEFAULT 0,
    sender TEXT,
    owner TEXT,
    heartbeat REAL,
    options TEXT
);
-- one row per SMTP attempt (read them through the attempts view below); a recipient's status
-- is that of its latest attempt. What repeats from row to row (status, reason, reply code,
-- server, segment) is stored once per campaign as a "kind" (attempt_kinds), so a row holds
-- a small integer for it: the engine writes thousands of these rows a second.
CREATE TABLE IF NOT EXISTS attempt_log (
    campaign_id INTEGER NOT NULL,  -- campaigns.id
    position INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    kind INTEGER NOT NULL,  -- attempt_kinds.kind of this campaign
    smtp_message TEXT,
    started_at REAL,
    finished_at REAL,
    latency_ms REAL,
    message_id TEXT,
    recipient TEXT,
    rkey TEXT,
    token TEXT,
    envelope_sender TEXT,
    row_label TEXT,
    PRIMARY KEY (campaign_id, position, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempt_kinds (
    campaign_id INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    smtp_code INTEGER,
    smtp_status TEXT,
    server TEXT,
    segment TEXT,
    PRIMARY KEY (campaign_id, kind)
) WITHOUT ROWID;
-- every attempt with its columns by name (the layout of version 1's attempts table)
CREATE VIEW IF NOT EXISTS attempts AS
SELECT c.campaign AS campaign, a.position AS position, a.attempt AS attempt, k.state AS state,
       k.reason AS reason, k.smtp_code AS smtp_code, k.smtp_status AS smtp_status,
       a.smtp_message AS smtp_message, a.started_at AS started_at,
       a.finished_at AS finished_at, a.latency_ms AS latency_ms, a.message_id AS message_id,
       k.server AS server, k.segment AS segment, a.recipient AS recipient, a.rkey AS rkey,
       a.token AS token, a.envelope_sender AS envelope_sender, a.row_label AS row_label
FROM attempt_log AS a
LEFT JOIN campaigns AS c ON c.id = a.campaign_id
LEFT JOIN attempt_kinds AS k ON k.campaign_id = a.campaign_id AND k.kind = a.kind;
-- rows settled without an attempt in the latest run (skipped, or not renderable); such a row
-- outranks the row's attempts, and is removed when the row gets a new attempt
CREATE TABLE IF NOT EXISTS settled (
    campaign TEXT NOT NULL,
    position INTEGER NOT NULL,
    row_label TEXT,
    recipient TEXT,
    rkey TEXT,
    segment TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    message_id TEXT,
    envelope_sender TEXT,
    settled_at REAL NOT NULL,
    PRIMARY KEY (campaign, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bounces (
    id TEXT PRIMARY KEY,
    campaign TEXT,
    recipient TEXT,
    original_message_id TEXT,
    kind TEXT,
    status TEXT,
    reason TEXT,
    hard INTEGER,
    arrived_at REAL,
    bounce_to TEXT,
    diagnostic TEXT,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bounces_campaign ON bounces (campaign);
"""

_ATTEMPT_FIELDS = (
    "campaign_id", "position", "attempt", "kind", "smtp_message", "started_at", "finished_at",
    "latency_ms", "message_id", "recipient", "rkey", "token", "envelope_sender", "row_label",
)
# Python's sqlite3 binds None through its adapter lookup, several times slower than a string or
# a number: the writer binds 0 for a missing VERP token (common: verp=False) and the statement
# stores NULL (a token is text, never the number 0).
_ATTEMPT_VALUES = "(" + ", ".join(
    "NULLIF(?, 0)" if f == "token" else "?" for f in _ATTEMPT_FIELDS
) + ")"
# (the column names below are constants: no injection)
_PUT_ATTEMPT = (
    f"INSERT OR REPLACE INTO attempt_log ({', '.join(_ATTEMPT_FIELDS)}) "  # noqa: S608
    f"VALUES {_ATTEMPT_VALUES}"
)
# Rows per multi-row INSERT: one statement (one step) for many rows saves the per-row work of
# executemany (448 parameters: within any SQLite's limit of 999).
_ATTEMPTS_PER_INSERT = 32
_PUT_ATTEMPTS = (
    f"INSERT OR REPLACE INTO attempt_log ({', '.join(_ATTEMPT_FIELDS)}) "  # noqa: S608
    f"VALUES {', '.join([_ATTEMPT_VALUES] * _ATTEMPTS_PER_INSERT)}"
)
_KIND_FIELDS = ("state", "reason", "smtp_code", "smtp_status", "server", "segment")
_PUT_KIND = (
    f"INSERT INTO attempt_kinds (campaign_id, kind, {', '.join(_KIND_FIELDS)}) "  # noqa: S608
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_PUT_SETTLED = (
    "INSERT OR REPLACE INTO settled (campaign, position, row_label, recipient, rkey, segment, "
    "status, reason, detail, message_id, envelope_sender, settled_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DROP_SETTLED = "DELETE FROM settled WHERE campaign = ? AND position = ?"
# In-flight file records (fixed size, so a record cut short by a power failure is ignored):
# "I" position attempt server-id started_at, and "S" server-id name-length name (once per server)
_INTENT = struct.Struct("<cqiHd")
_SERVER = struct.Struct("<cHB")
# WAL pages between checkpoints (each checkpoint syncs the file): fewer, larger ones
_WAL_CHECKPOINT_PAGES = 8192
_SETTLED = (
    "SELECT position, row_label, recipient, status, reason, NULL, NULL, detail, 0, NULL, "
    "NULL, NULL, message_id, segment, NULL, envelope_sender, rkey "
    "FROM settled WHERE campaign = ? ORDER BY position"
)
_ROW_COLUMNS = [
    "position", "row_label", "recipient", "status", "reason", "smtp_code", "smtp_status",
    "smtp_message", "attempts", "first_attempt_at", "last_attempt_at", "latency_ms",
    "message_id", "segment", "server", "envelope_sender", "rkey",
]



def recipient_token(campaign: str, address: str, /) -> str:
    """The token that names one recipient of one campaign in its VERP envelope sender.

    16 hexadecimal digits, stable across runs (a retry reuses it), unique in practice; the
    same for every spelling of the address that has the same ``address_key``.

    Example:
        >>> token = recipient_token("spring", "Ann@Example.com")
        >>> token == recipient_token("spring", "ann@example.com")
        True
        >>> len(recipient_token("spring", "ann@example.com"))
        16
    """
    return hashlib.blake2b(
        f"{campaign}\0{address_key(address)}".encode("utf-8", "surrogatepass"), digest_size=8
    ).hexdigest()


def _label_text(label: Any) -> str:
    """A row label as JSON (ints, strings, floats, booleans, tuples keep their type)."""
    if type(label) is int:
        return str(label)
    if isinstance(label, np.generic):
        label = label.item()
    if isinstance(label, tuple):
        return json.dumps([_json_safe(x) for x in label])
    return json.dumps(_json_safe(label))


def _json_safe(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def _label_value(text: str | None) -> Any:
    if text is None:
        return None
    value = json.loads(text)
    return tuple(value) if isinstance(value, list) else value


def inflight_path(path: str, campaign: str, /) -> str:
    """The in-flight file of ``campaign`` beside the journal at ``path``."""
    digest = hashlib.blake2b(campaign.encode("utf-8", "surrogatepass"), digest_size=8)
    return f"{path}-inflight-{digest.hexdigest()}"


@dataclasses.dataclass(frozen=True, slots=True)
class Intent:
    """A message whose data went (or was about to go) out: it must never be sent again."""

    position: int
    attempt: int
    started_at: float
    server: str | None


def _read_intents(path: str, campaign: str) -> list[Intent]:
    """The intents in the campaign's in-flight file (a record cut short is ignored)."""
    try:
        with open(inflight_path(path, campaign), "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    servers: dict[int, str] = {}
    intents: list[Intent] = []
    offset = 0
    while offset < len(data):
        kind = data[offset : offset + 1]
        if kind == b"I" and offset + _INTENT.size <= len(data):
            _, position, attempt, server, started = _INTENT.unpack_from(data, offset)
            intents.append(Intent(position, attempt, started, servers.get(server)))
            offset += _INTENT.size
        elif kind == b"S" and offset + _SERVER.size <= len(data):
            _, server, length = _SERVER.unpack_from(data, offset)
            start = offset + _SERVER.size
            if start + length > len(data):
                break
            servers[server] = data[start : start + length].decode("utf-8", "replace")
            offset = start + length
        else:
            break  # unused space (zeros), or the tail of a record cut short
    return intents


def _unanswered(conn: sqlite3.Connection, path: str, campaign: str) -> list[Intent]:
    """Intents with no recorded attempt: messages whose data may have gone out unanswered."""
    found = []
    for intent in _read_intents(path, campaign):
        row = conn.execute(
            "SELECT 1 FROM attempts WHERE campaign = ? AND position = ? AND attempt = ?",
            (campaign, intent.position, intent.attempt),
        ).fetchone()
        if row is None:
            found.append(intent)
    return found


def _known(conn: sqlite3.Connection, campaign: str, position: int) -> tuple[Any, ...]:
    """(row_label, recipient, rkey, token, envelope_sender, segment, message_id) of a row as
    the journal knows it from earlier attempts or its settled record; Nones otherwise."""
    row = conn.execute(
        "SELECT row_label, recipient, rkey, token, envelope_sender, segment, message_id "
        "FROM attempts WHERE campaign = ? AND position = ? ORDER BY attempt DESC LIMIT 1",
        (campaign, position),
    ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT row_label, recipient, rkey, NULL, envelope_sender, segment, message_id "
            "FROM settled WHERE campaign = ? AND position = ?",
            (campaign, position),
        ).fetchone()
    return tuple(row) if row is not None else (None,) * 7


def _path_of(journal: Journal | str | os.PathLike[str]) -> str:
    if isinstance(journal, Journal):
        return journal.path
    if isinstance(journal, str | os.PathLike):
        return os.fspath(journal)
    raise JournalError(
        f"A journal is a file path or a smtpkit.Journal, not {type(journal).__name__}."
    )


def _connect(
    path: str, *, create: bool, synchronous: str = "normal"
) -> sqlite3.Connection:
    if not create and path != ":memory:" and not os.path.exists(path):
        raise JournalError(
            f"There is no journal at {path!r}; pass the file that send(..., journal=...) wrote."
        )
    try:
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise JournalError(f"The journal {path!r} cannot be opened: {exc}.") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == 0 and tables and "campaigns" not in tables:
            raise JournalError(
                f"{path!r} is an SQLite file but not a smtpkit journal; choose another file name."
            )
        if not create and "campaigns" not in tables:  # an empty file: nothing was written
            raise JournalError(
                f"There is no journal in {path!r} (the file is empty); pass the file that "
                "send(..., journal=...) wrote."
            )
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"The journal {path!r} was written by a newer smtpkit (layout {version}); "
                "upgrade smtpkit to read it."
            )
        if version < SCHEMA_VERSION and "campaigns" in tables:
            raise JournalError(
                f"The journal {path!r} was written by an older smtpkit (layout {version}; this "
                f"one reads layout {SCHEMA_VERSION}). Read or resume its campaigns with the "
                "smtpkit that wrote it, or pass a new journal file."
            )
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
        if create and version == 0:
            # in one transaction: another process sees no table or every table and the version
            conn.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JournalError(
            f"{path!r} cannot be used as a journal ({exc}); it may not be an SQLite file."
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


class Journal:
    """A campaign journal file: what was sent, to whom, with what result; resumable.

    Parameters:
        path: the SQLite file (created on first use by ``send`` or ``record_bounces``; the
            readers ``campaigns``, ``bounces``, ``outcomes``, ``attempts`` raise
            ``JournalError`` where there is none, so a mistyped path is never taken for an
            empty journal).
        synchronous: ``"normal"`` (survives a killed process) or ``"full"`` (also a power cut;
            slower).

    Example:
        >>> import tempfile, os
        >>> j = Journal(os.path.join(tempfile.mkdtemp(), "j.db"))
        >>> j.campaigns()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        smtpkit.errors.JournalError: There is no journal at '...'; pass the file that \
send(..., journal=...) wrote.
        >>> _ = j.record_bounces(None, pd.DataFrame(columns=list(BOUNCE_COLUMNS)))
        >>> list(j.campaigns().columns)[:3]
        ['campaign', 'state', 'rows']
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "smtpkit.db",
        /,
        *,
        synchronous: Literal["normal", "full"] = "normal",
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise JournalError(f"synchronous must be 'normal' or 'full', not {synchronous!r}.")
        self.path = os.fspath(path)
        self.synchronous = synchronous

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    def _connection(self, *, create: bool = False) -> sqlite3.Connection:
        # readers never create the file: a mistyped path is an error, not an empty journal
        return _connect(self.path, create=create, synchronous=self.synchronous)

    def campaigns(self) -> pd.DataFrame:
        """One row per campaign: state, rows, counts per status, first and last activity."""
        conn = self._connection()
        try:
            frame = pd.read_sql_query(
                "SELECT campaign, state, rows, to_send, runs, created_at, updated_at, sender "
                "FROM campaigns ORDER BY created_at",
                conn,
            )
            counts = pd.read_sql_query(
                "SELECT campaign, status, COUNT(*) AS n FROM ("
                "  SELECT a.campaign, a.position, a.state AS status FROM attempts AS a "
                "  JOIN (SELECT campaign, position, MAX(attempt) AS last FROM attempts "
                "        GROUP BY campaign, position) AS l "
                "  ON a.campaign = l.campaign AND a.position = l.position AND a.attempt = l.last "
                "  WHERE NOT EXISTS (SELECT 1 FROM settled AS s WHERE s.campaign = a.campaign "
                "                    AND s.position = a.position) "
                "  UNION ALL SELECT campaign, position, status FROM settled"
                ") GROUP BY campaign, status",
                conn,
            )
        finally:
            conn.close()
        if not counts.empty:
            wide = counts.pivot(index="campaign", columns="status", values="n").fillna(0)
            wide = wide.astype("int64")
            frame = frame.join(wide, on="campaign")
        for column in ("created_at", "updated_at"):
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
        return frame

    def outcomes(self, campaign: str, /) -> pd.DataFrame:
        """Same as :func:`read_outcomes` for this journal."""
        return read_outcomes(self, campaign)

    def attempts(self, campaign: str, /) -> pd.DataFrame:
        """Same as :func:`read_attempts` for this journal."""
        return read_attempts(self, campaign)

    def record_bounces(self, campaign: str | None, frame: pd.DataFrame, /) -> int:
        """Store bounces / complaints read by ``read_bounces``; return how many were new.

        Idempotent: recording the same frame twice adds nothing. ``campaign`` may be None
        when the bounces' campaign is not known (they then match by VERP or Message-ID only).
        """
        if not isinstance(frame, pd.DataFrame):
            raise JournalError(f"record_bounces takes a DataFrame, not {type(frame).__name__}.")
        missing = [c for c in BOUNCE_COLUMNS if c not in frame.columns]
        if missing:
            raise MissingColumnError(
                f"The bounce frame lacks {', '.join(missing)}; pass the frame read_bounces "
                f"returns (it has {', '.join(map(str, frame.columns))})."
            )
        arrived = frame["arrived_at"]
        if pd.api.types.is_datetime64_any_dtype(arrived):
            stamps = pd.to_datetime(arrived, utc=True)
            seconds: list[float | None] = [
                None if pd.isna(t) else t.timestamp() for t in stamps
            ]
        else:
            seconds = [None if _missing(v) else float(v) for v in arrived]
        now = time.time()
        rows = []
        for values, at in zip(
            frame[list(BOUNCE_COLUMNS)].itertuples(index=False, name=None), seconds, strict=True
        ):
            record = dict(zip(BOUNCE_COLUMNS, values, strict=True))
            fields = {k: (None if _missing(v) else v) for k, v in record.items()}
            hard = fields["hard"]
            key = json.dumps(
                [campaign, fields["recipient"], fields["original_message_id"], fields["kind"],
                 fields["status"], at, fields["bounce_to"]],
                default=str,
            )
            rows.append((
                hashlib.sha256(key.encode()).hexdigest(), campaign,
                _str_or_none(fields["recipient"]), _str_or_none(fields["original_message_id"]),
                _str_or_none(fields["kind"]), _str_or_none(fields["status"]),
                _str_or_none(fields["reason"]), None if hard is None else int(bool(hard)), at,
                _str_or_none(fields["bounce_to"]), _str_or_none(fields["diagnostic"]), now,
            ))
        conn = self._connection(create=True)
        try:
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR IGNORE INTO bounces (id, campaign, recipient, original_message_id, "
                "kind, status, reason, hard, arrived_at, bounce_to, diagnostic, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")
            return conn.total_changes - before
        finally:
            conn.close()

    def bounces(self, campaign: str | None = None, /) -> pd.DataFrame:
        """The bounces recorded (for one campaign, or all), one row each, oldest first.

        ``recipient`` is the address the report names or, when it names none, the recipient
        its VERP envelope sender (``bounce_to``) was made for.
        """
        conn = self._connection()
        try:
            query = (
                "SELECT campaign, recipient, original_message_id, kind, status, reason, hard, "
                "arrived_at, bounce_to, diagnostic FROM bounces"
            )
            params: tuple[Any, ...] = ()
            if campaign is not None:
                query += " WHERE campaign = ?"
                params = (campaign,)
            frame = pd.read_sql_query(query + " ORDER BY arrived_at, recorded_at", conn,
                                      params=params)
            unnamed = frame["recipient"].isna() & frame["bounce_to"].notna()
            if unnamed.any():
                by_sender = _verp_recipients(conn, frame.loc[unnamed, "bounce_to"].tolist())
                frame.loc[unnamed, "recipient"] = [
                    by_sender.get(str(sender).lower()) for sender in frame.loc[unnamed, "bounce_to"]
                ]
        finally:
            conn.close()
        frame["hard"] = frame["hard"].astype("boolean")
        frame["arrived_at"] = pd.to_datetime(frame["arrived_at"].astype("Float64"), unit="s",
                                             utc=True)
        for column in frame.columns:
            if column not in ("hard", "arrived_at"):
                frame[column] = frame[column].astype("string")
        return frame

    def _repr_html_(self) -> str:
        try:
            frame = self.campaigns()
        except JournalError as exc:
            return f"<p>{html.escape(str(exc))}</p>"
        return f"<p><b>Journal</b> {html.escape(self.path)}</p>" + frame.to_html(index=False)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------------------------
# reading


def _chunks(cursor: sqlite3.Cursor, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
    """The query's rows as frames of ``_READ_CHUNK`` rows, each column already in its final
    dtype (text goes straight into Arrow arrays: no Python object columns in between)."""
    while True:
        rows = cursor.fetchmany(_READ_CHUNK)
        if not rows:
            return
        values = list(zip(*rows, strict=True))
        del rows
        data: dict[str, Any] = {}
        for name, column in zip(columns, values, strict=True):
            dtype = OUTCOME_DTYPES.get(name) or ATTEMPT_DTYPES.get(name)
            if dtype == "string":
                data[name] = pd.array(column, dtype="string")
            elif name in ("position", "attempt", "attempts"):
                data[name] = np.asarray(column, dtype=np.int64)
            else:
                data[name] = list(column)
        yield pd.DataFrame(data)


def _require_campaign(conn: sqlite3.Connection, path: str, campaign: str) -> None:
    if not isinstance(campaign, str):
        raise JournalError(f"A campaign name is a string, not {type(campaign).__name__}.")
    found = conn.execute("SELECT 1 FROM campaigns WHERE campaign = ?", (campaign,)).fetchone()
    if found is None:
        names = [r[0] for r in conn.execute("SELECT campaign FROM campaigns ORDER BY created_at")]
        listed = ", ".join(repr(n) for n in names[:10]) or "none"
        raise JournalError(
            f"The journal {path!r} has no campaign {campaign!r}; it has: {listed}."
        )


def read_outcomes(
    journal: Journal | str | os.PathLike[str], campaign: str, /
) -> pd.DataFrame:
    """The latest outcome of every recorded recipient of ``campaign``, in input order.

    Readable from any process at any time, also while the campaign runs (rows not yet tried
    are absent). The index holds the input frame's row labels. Recorded reports (see
    ``Journal.record_bounces``) count as ``smtpkit.apply_bounces`` counts them: a ``sent`` (or
    ``unknown``) row with a failure report (``kind == "bounce"``, hard or soft: the message was
    not delivered) shows ``bounced``, with a complaint ``complained``, with the report's
    reason; delays and auto-replies change nothing, and ``hard`` only decides suppression.
    Matched by VERP envelope sender, then Message-ID, then recipient address (the address
    only for reports recorded with this campaign).

    Example:
        frame = read_outcomes("smtpkit.db", "spring")
        frame["status"].value_counts()
    """
    path = _path_of(journal)
    conn = _connect(path, create=False)
    try:
        _require_campaign(conn, path, campaign)
        frame = _read_outcome_rows(conn, campaign)
        bounces = _bounce_rows(conn, campaign)
        names = _index_names(conn, campaign)
    finally:
        conn.close()
    return _finish_outcomes(frame, bounces, names=names)


def _index_names(conn: sqlite3.Connection, campaign: str) -> list[str | None] | None:
    """The input frame's index names, as ``send`` recorded them with the campaign."""
    row = conn.execute("SELECT options FROM campaigns WHERE campaign = ?", (campaign,)).fetchone()
    try:
        names = json.loads(row[0]).get("index_names") if row and row[0] else None
    except (ValueError, AttributeError):
        return None
    return names if isinstance(names, list) else None


# One chunk of attempts as newline-delimited JSON, made by SQLite and parsed by Arrow: the rows
# never become Python objects (a list of 200,000 rows as tuples and strings costs far more).
_SCAN_JSON = (
    "SELECT group_concat(json_object("
    "'position', position, 'row_label', row_label, 'recipient', recipient, 'status', state, "
    "'reason', reason, 'smtp_code', smtp_code, 'smtp_status', smtp_status, "
    "'smtp_message', smtp_message, 'attempts', attempt, "
    # times as whole microseconds: JSON would print a REAL with 15 digits only
    "'first_attempt_at', CAST(started_at * 1000000 AS INTEGER), "
    "'last_attempt_at', CAST(COALESCE(finished_at, started_at) * 1000000 AS INTEGER), "
    "'latency_ms', latency_ms, "
    "'message_id', message_id, 'segment', segment, 'server', server, "
    "'envelope_sender', envelope_sender, 'rkey', rkey), char(10)) "
    "FROM attempts WHERE campaign = ? AND position >= ? AND position < ?"
)
_WINDOW = 2_000  # positions per chunk (small: the JSON text of one chunk is transient)


def _scan_schema() -> Any:
    import pyarrow as pa

    text, number, real = pa.large_string(), pa.int64(), pa.float64()
    kinds = {"position": number, "smtp_code": number, "attempts": number,
             "first_attempt_at": number, "last_attempt_at": number, "latency_ms": real}
    return pa.schema([(name, kinds.get(name, text)) for name in _ROW_COLUMNS])


def _latest_tables(conn: sqlite3.Connection, campaign: str) -> Iterator[Any]:
    """The latest attempt of each row as Arrow tables (``attempts`` = how many, and
    ``first_attempt_at`` = the first start), one per window of positions, in order."""
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    schema = _scan_schema()
    options = pj.ParseOptions(explicit_schema=schema)
    # the system allocator gives the parsing buffers back to the OS at once, where Arrow's
    # default pool would keep them: this keeps the peak close to the frame's own size
    pool = pa.system_memory_pool()
    top = conn.execute("SELECT MAX(position) FROM attempts WHERE campaign = ?",
                       (campaign,)).fetchone()[0]
    for low in range(0, -1 if top is None else int(top) + 1, _WINDOW):
        (text,) = conn.execute(_SCAN_JSON, (campaign, low, low + _WINDOW)).fetchone()
        if not text:
            continue
        data = text.encode("utf-8")
        del text
        table = pj.read_json(io.BytesIO(data), parse_options=options, memory_pool=pool)
        del data
        order = pc.sort_indices(table, sort_keys=[("position", "ascending"),
                                                  ("attempts", "ascending")], memory_pool=pool)
        table = table.take(order)
        positions = table.column("position").to_numpy()
        starts = np.flatnonzero(np.r_[True, positions[1:] != positions[:-1]])
        if len(starts) == len(positions):  # one attempt per row (the usual case)
            counts = np.ones(len(positions), dtype=np.int64)
        else:
            ends = np.r_[starts[1:], len(positions)] - 1
            counts = ends - starts + 1
            first = np.minimum.reduceat(
                table.column("first_attempt_at").to_numpy(zero_copy_only=False), starts)
            table = table.take(pa.array(ends))
            table = table.set_column(_ROW_COLUMNS.index("first_attempt_at"),
                                     "first_attempt_at", pa.array(first))
        yield table.set_column(_ROW_COLUMNS.index("attempts"), "attempts", pa.array(counts))


def _read_outcome_rows(conn: sqlite3.Connection, campaign: str) -> pd.DataFrame:
    """Every recorded row of ``campaign`` in position order: its latest attempt, or its
    settled record (which outranks the attempts; their count is kept)."""
    import pyarrow as pa

    mapping = {pa.large_string(): pd.StringDtype("pyarrow"), pa.int64(): pd.Int64Dtype(),
               pa.float64(): pd.Float64Dtype()}
    # each window becomes pandas columns on its own; concatenating them keeps the Arrow chunks
    # (no copy of the text into one buffer)
    parts = []
    for table in _latest_tables(conn, campaign):
        part = table.to_pandas(types_mapper=mapping.get)
        part["position"] = part["position"].astype("int64")
        for column in ("first_attempt_at", "last_attempt_at"):  # whole microseconds
            part[column] = pd.to_datetime(part[column].astype("float64"), unit="us", utc=True)
        parts.append(coerce_dtypes(part, OUTCOME_DTYPES))
    if parts:
        latest = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    else:
        latest = coerce_dtypes(_scan_schema().empty_table().to_pandas(
            types_mapper=mapping.get), OUTCOME_DTYPES)
    del parts
    settled = coerce_dtypes(
        pd.DataFrame.from_records(conn.execute(_SETTLED, (campaign,)).fetchall(),
                                  columns=_ROW_COLUMNS),
        OUTCOME_DTYPES,
    )
    if settled.empty:
        return latest
    counts = pd.Series(latest["attempts"].to_numpy(), index=latest["position"].to_numpy())
    settled["attempts"] = pd.array(
        counts.reindex(settled["position"].to_numpy()).fillna(0).to_numpy(), dtype="Int64"
    )
    keep = latest[~latest["position"].isin(settled["position"])]
    if keep.empty:
        return settled.reset_index(drop=True)
    both = pd.concat([keep, settled], ignore_index=True)
    return both.sort_values("position", kind="stable").reset_index(drop=True)


def _empty_rows() -> pd.DataFrame:
    return coerce_dtypes(pd.DataFrame({c: [] for c in _ROW_COLUMNS}), OUTCOME_DTYPES)


def _latest_statuses(conn: sqlite3.Connection, campaign: str
                     ) -> Iterator[tuple[int, str, int]]:
    """(position, status, attempts) of every recorded row; settled records outrank attempts."""
    settled = {
        int(p): str(status)
        for p, status in conn.execute(
            "SELECT position, status FROM settled WHERE campaign = ?", (campaign,))
    }
    for position, state, count in conn.execute(
        "SELECT a.position, a.state, l.n FROM (SELECT position, MAX(attempt) AS last, "
        "COUNT(*) AS n FROM attempts WHERE campaign = ?1 GROUP BY position) AS l JOIN attempts "
        "AS a ON a.campaign = ?1 AND a.position = l.position AND a.attempt = l.last",
        (campaign,),
    ):
        yield int(position), settled.pop(int(position), str(state)), int(count)
    for position, status in settled.items():
        yield position, status, 0


def _bounce_rows(conn: sqlite3.Connection, campaign: str) -> pd.DataFrame:
    """The failure reports and complaints that may concern ``campaign``, oldest first (delays,
    auto-replies and delivery reports never change a status)."""
    return pd.read_sql_query(
        "SELECT campaign, recipient, original_message_id, kind, reason, hard, arrived_at, "
        "bounce_to FROM bounces WHERE (campaign = ? OR campaign IS NULL) "
        "AND kind IN ('bounce', 'complaint') ORDER BY arrived_at, rowid",
        conn,
        params=(campaign,),
    )


def _norm(value: Any) -> str | None:
    """An address or Message-ID as reports are matched by: no spaces or <>, lower case."""
    if not isinstance(value, str):
        return None
    text = value.strip().strip("<>").strip().lower()
    return text or None


def _verp_token(address: Any) -> str | None:
    """The token of a VERP address ``prefix+<token>@domain``, lower case (or None)."""
    if not isinstance(address, str) or "@" not in address:
        return None
    local = address.strip().strip("<>").rpartition("@")[0]
    _, plus, token = local.partition("+")
    return token.lower() if plus and token else None


def _norm_column(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip().str.strip("<>").str.strip().str.lower()


def _finish_outcomes(frame: pd.DataFrame, bounces: pd.DataFrame, *, labels: bool = True,
                     names: list[str | None] | None = None) -> pd.DataFrame:
    """Apply recorded bounces, keep OUTCOME_COLUMNS, and index by the stored row labels with
    the input's index ``names`` (``labels=False``: by position, for a caller that has the
    frame's own index)."""
    if not bounces.empty and not frame.empty:
        _apply_recorded_bounces(frame, bounces)
    result = frame[list(OUTCOME_COLUMNS)]
    if labels:
        values = [_label_value(t) for t in frame["row_label"].astype(object)]
        result.index = _label_index(values, names)
    return result


def _label_index(labels: list[Any], names: list[str | None] | None) -> pd.Index:
    """The input frame's row labels as an index again: a MultiIndex when the input had one
    (its labels are stored as tuples), with the input's index names."""
    levels = len(names) if names else 1
    if levels > 1 and all(isinstance(v, tuple) and len(v) == levels for v in labels):
        if not labels:
            return pd.MultiIndex.from_arrays([[] for _ in range(levels)], names=names)
        return pd.MultiIndex.from_tuples(labels, names=names)
    index = pd.Index(labels, tupleize_cols=False) if labels else pd.RangeIndex(0)
    if names is not None and len(names) == 1:
        index = index.rename(names[0])
    return index


# Which report wins when several match one row (then the latest of them), and what it makes
# of a sent or unknown row: the same rule as ``smtpkit.bounces.apply_bounces``.
_BOUNCE_RANK = {"complaint": 5, "bounce": 4}
_BOUNCE_STATUS = {"complaint": "complained", "bounce": "bounced"}


def _apply_recorded_bounces(frame: pd.DataFrame, bounces: pd.DataFrame) -> None:
    """Turn ``sent`` / ``unknown`` rows with a failure report into ``bounced`` and those with a
    complaint into ``complained`` (soft or hard alike: the message was not delivered; ``hard``
    only decides suppression), with the report's reason.

    Each report is matched like ``apply_bounces`` does: VERP token of the envelope sender,
    then Message-ID, then the recipient address — the last only for reports recorded with
    this campaign (a report of unknown campaign may concern any campaign's row for that
    address). When several reports match a row, a complaint outranks a bounce, then the
    latest wins.
    """
    reports = list(bounces.itertuples(index=False))
    tokens = {t for r in reports if (t := _verp_token(r.bounce_to)) is not None}
    senders = {s for r in reports if _verp_token(r.bounce_to) and (s := _norm(r.bounce_to))}
    mids = {m for r in reports if (m := _norm(r.original_message_id)) is not None}
    rcpts = {a for r in reports if r.campaign is not None and (a := _norm(r.recipient))}
    # candidate rows only (a vectorized pass over the frame; no Python object per row)
    sender_keys = _norm_column(frame["envelope_sender"])
    row_tokens = sender_keys.str.extract(r"^[^+]*\+(.+)@[^@]*$", expand=False)
    mid_keys = _norm_column(frame["message_id"])
    rcpt_keys = _norm_column(frame["recipient"])
    by_token = _positions(row_tokens, tokens)
    by_sender = _positions(sender_keys, senders)
    by_mid = _positions(mid_keys, mids)
    by_rcpt = _positions(rcpt_keys, rcpts)
    best: dict[int, tuple[tuple[int, float], str, str | None]] = {}
    for r in reports:
        token = _verp_token(r.bounce_to)
        sender = _norm(r.bounce_to)
        mid = _norm(r.original_message_id)
        rcpt = _norm(r.recipient)
        rows: list[int] = []
        if token and token in by_token:
            rows = by_token[token]
        elif token and sender and sender in by_sender:
            rows = by_sender[sender]
        elif mid and mid in by_mid:
            rows = by_mid[mid]
            if len(rows) > 1 and rcpt:  # one message to several recipients: narrow it down
                rows = [i for i in rows if rcpt_keys.iloc[i] == rcpt] or rows
        elif r.campaign is not None and rcpt and rcpt in by_rcpt:
            rows = by_rcpt[rcpt]
        arrived: Any = r.arrived_at
        when = float(arrived) if not _missing(arrived) else -math.inf
        rank = (_BOUNCE_RANK.get(str(r.kind), 0), when)
        reason = None if _missing(r.reason) else str(r.reason)
        for i in rows:
            if i not in best or rank >= best[i][0]:
                best[i] = (rank, str(r.kind), reason)
    if not best:
        return
    eligible = frame["status"].isin(["sent", "unknown"]).to_numpy(dtype=bool)
    statuses = frame["status"].astype(object).to_numpy().copy()
    reasons = frame["reason"].astype(object).to_numpy().copy()
    for i, (_, kind, reason) in best.items():
        if eligible[i]:
            statuses[i], reasons[i] = _BOUNCE_STATUS[kind], reason
    frame["status"] = pd.array(statuses, dtype="string")
    frame["reason"] = pd.array(reasons, dtype="string")


def _positions(keys: pd.Series, wanted: set[str]) -> dict[str, list[int]]:
    """{key: row positions} for the rows whose key is in ``wanted``."""
    if not wanted:
        return {}
    hits = np.flatnonzero(keys.isin(wanted).to_numpy(dtype=bool, na_value=False))
    found: dict[str, list[int]] = {}
    for i, key in zip(hits.tolist(), keys.iloc[hits].tolist(), strict=True):
        found.setdefault(key, []).append(i)
    return found


def read_attempts(
    journal: Journal | str | os.PathLike[str], campaign: str, /
) -> pd.DataFrame:
    """Every SMTP attempt of ``campaign`` (one row per attempt), in input and attempt order.

    An attempt whose message data is on its way shows ``unknown`` with reason ``in_flight``
    until its reply is recorded.
    """
    path = _path_of(journal)
    conn = _connect(path, create=False)
    columns = [
        "position", "row_label", "recipient", "attempt", "status", "reason", "smtp_code",
        "smtp_status", "smtp_message", "started_at", "finished_at", "latency_ms", "message_id",
        "segment", "server",
    ]
    try:
        _require_campaign(conn, path, campaign)
        cursor = conn.execute(
            "SELECT position, row_label, recipient, attempt, state, reason, smtp_code, "
            "smtp_status, smtp_message, started_at, finished_at, latency_ms, message_id, "
            "segment, server FROM attempts WHERE campaign = ? ORDER BY position, attempt",
            (campaign,),
        )
        parts = [coerce_dtypes(chunk, ATTEMPT_DTYPES) for chunk in _chunks(cursor, columns)]
        names = _index_names(conn, campaign)
        flying = []
        for e in _unanswered(conn, path, campaign):
            label, recipient, _, _, _, segment, message_id = _known(conn, campaign, e.position)
            flying.append((e.position, label, recipient, e.attempt, "unknown", "in_flight",
                           None, None, None, e.started_at, None, None, message_id, segment,
                           e.server))
    finally:
        conn.close()
    if flying:
        parts.append(coerce_dtypes(pd.DataFrame.from_records(flying, columns=columns),
                                   ATTEMPT_DTYPES))
    if parts:
        frame = pd.concat(parts, ignore_index=True)
        if flying:
            frame = frame.sort_values(["position", "attempt"], kind="stable")
    else:
        frame = coerce_dtypes(pd.DataFrame({c: [] for c in columns}), ATTEMPT_DTYPES)
    labels = [_label_value(t) for t in frame["row_label"].astype(object)]
    result = frame[list(ATTEMPT_DTYPES)].reset_index(drop=True)
    result.index = _label_index(labels, names)
    return result


# --------------------------------------------------------------------------------------------
# writing (the send engine's side)


@dataclasses.dataclass(slots=True)
class RecipientRecord:
    """What the engine knows about one recipient, written with each outcome."""

    position: int
    row_label: str
    recipient: str | None  # None: the row has no address
    rkey: str | None
    token: str | None = None
    envelope_sender: str | None = None
    segment: str | None = None
    message_id: str | None = None


def has_bounces(journal: Journal | str | os.PathLike[str], campaign: str, /) -> bool:
    """True when bounces that may concern ``campaign`` are recorded in the journal."""
    conn = _connect(_path_of(journal), create=False)
    try:
        return conn.execute(
            "SELECT 1 FROM bounces WHERE campaign = ? OR campaign IS NULL LIMIT 1", (campaign,)
        ).fetchone() is not None
    finally:
        conn.close()


def fingerprint(positions: np.ndarray, keys: Iterable[str]) -> str:
    """A hash of the rows a campaign sends: their positions and recipient addresses."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(positions, dtype=np.int64).tobytes())
    for key in keys:
        digest.update(key.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def _verp_recipients(conn: sqlite3.Connection, senders: list[str]) -> dict[str, str]:
    """Lower-cased VERP envelope sender -> the recipient it was made for (only VERP senders
    name one recipient: without VERP every row has the template's sender)."""
    wanted = sorted({sender.lower() for sender in senders})
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        for sender, recipient in conn.execute(
            "SELECT DISTINCT lower(envelope_sender), recipient FROM attempts "  # noqa: S608
            f"WHERE token IS NOT NULL AND lower(envelope_sender) IN ({marks})", chunk
        ):
            found.setdefault(sender, recipient)
    return found


def suppressed_addresses(journal: Journal | str | os.PathLike[str], /) -> set[str]:
    """The keys (``address_key``) of addresses with a recorded hard bounce or complaint (any
    campaign): what the send engine matches its rows' keys against.

    A bounce names its recipient, or is matched to one by VERP envelope sender.
    """
    path = _path_of(journal)
    conn = _connect(path, create=False)
    try:
        reports = conn.execute(
            "SELECT recipient, bounce_to FROM bounces WHERE "
            "kind = 'complaint' OR (kind = 'bounce' AND hard = 1)"
        ).fetchall()
        found = {address_key(str(recipient).strip().strip("<>").strip())
                 for recipient, _ in reports if recipient is not None}
        # a report is also matched to the recipient its VERP sender was made for
        found.update(address_key(str(recipient)) for recipient in _verp_recipients(
            conn, [str(sender) for _, sender in reports if sender is not None]
        ).values())
    finally:
        conn.close()
    return found


def previous_statuses(
    journal: Journal | str | os.PathLike[str], campaign: str, rows: int, /
) -> np.ndarray | None:
    """Status codes (``STATUS_CODES``) per row position of a campaign, or None if absent."""
    path = _path_of(journal)
    conn = _connect(path, create=False)
    try:
        if conn.execute("SELECT 1 FROM campaigns WHERE campaign = ?", (campaign,)).fetchone() \
                is None:
            return None
        status = np.zeros(rows, dtype=np.int8)
        for position, text, attempts in _latest_statuses(conn, campaign):
            if 0 <= position < rows and attempts > 0:
                status[position] = STATUS_CODES.get(text, 0)
    finally:
        conn.close()
    return status


# The engine's writing side lives in its own module; these names are part of this one's API.
from ._send_journal import CampaignLog, CampaignState, NullLog  # noqa: E402
