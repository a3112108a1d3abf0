"""The outcome record, the status vocabulary, and frames of attempts and of latest status.

Every recipient of a campaign ends with exactly one *outcome* (its latest status) and zero or more
*attempts* (one per SMTP transaction tried for it). The send engine writes both to the journal;
``outcomes_frame`` / ``attempts_frame`` turn records into frames with stable columns and dtypes,
which the report and plot modules rely on.

Statuses (``STATUSES``, in display order):

``sent``
    The server answered 250 to the message data. Not yet proof of delivery: a bounce may follow.
``deferred``
    The last attempt failed temporarily (4xx, connection refused/reset, timeout before DATA) and
    the retries ran out or the campaign stopped first. Re-running the campaign retries it.
``failed``
    Permanently rejected (5xx), or the row could not be sent at all (``reason`` says why, such as
    ``unsafe_header`` or ``missing_field``). Never retried.
``unknown``
    The connection broke after the final "." and before the reply: the server may have accepted
    the message (RFC 1047). Never re-sent automatically, to avoid a duplicate.
``skipped``
    Not attempted: not ``sendable`` after cleaning, suppressed, or a dry run (``reason`` says why).
``bounced`` / ``complained``
    Set by ``bounces.apply_bounces`` for a ``sent`` row when a bounce (DSN) or an abuse complaint
    (ARF) arrives for it later.

Example:
    >>> from smtpkit.outcomes import Outcome, outcomes_frame
    >>> frame = outcomes_frame([Outcome(recipient="ann@example.com", status="sent", smtp_code=250)])
    >>> frame.loc[0, "status"], int(frame.loc[0, "smtp_code"])
    ('sent', 250)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "ATTEMPT_COLUMNS",
    "ATTEMPT_DTYPES",
    "FINAL_STATUSES",
    "OUTCOME_COLUMNS",
    "OUTCOME_DTYPES",
    "RETRYABLE_STATUSES",
    "STATUSES",
    "Attempt",
    "Outcome",
    "Status",
    "attempts_frame",
    "coerce_dtypes",
    "outcomes_frame",
]

Status = Literal["sent", "deferred", "failed", "unknown", "skipped", "bounced", "complained"]
#: Every status, in the order reports show them.
STATUSES: tuple[str, ...] = (
    "sent",
    "deferred",
    "failed",
    "unknown",
    "skipped",
    "bounced",
    "complained",
)
#: Statuses a resumed campaign must never send again.
FINAL_STATUSES: frozenset[str] = frozenset({"sent", "failed", "unknown", "bounced", "complained"})
#: Statuses a resumed campaign sends (again).
RETRYABLE_STATUSES: frozenset[str] = frozenset({"deferred"})

# Column name -> pandas dtype of the outcome frame, in display order.
_OUTCOME_DTYPES: dict[str, str] = {
    "recipient": "string",
    "status": "string",
    "reason": "string",
    "smtp_code": "Int64",
    "smtp_status": "string",
    "smtp_message": "string",
    "attempts": "Int64",
    "first_attempt_at": "datetime64[us, UTC]",
    "last_attempt_at": "datetime64[us, UTC]",
    "latency_ms": "Float64",
    "message_id": "string",
    "segment": "string",
    "server": "string",
    "envelope_sender": "string",
}
#: The columns of an outcome frame (one row per recipient), in order.
OUTCOME_COLUMNS: tuple[str, ...] = tuple(_OUTCOME_DTYPES)

_ATTEMPT_DTYPES: dict[str, str] = {
    "recipient": "string",
    "attempt": "Int64",
    "status": "string",
    "reason": "string",
    "smtp_code": "Int64",
    "smtp_status": "string",
    "smtp_message": "string",
    "started_at": "datetime64[us, UTC]",
    "finished_at": "datetime64[us, UTC]",
    "latency_ms": "Float64",
    "message_id": "string",
    "segment": "string",
    "server": "string",
}
#: The columns of an attempts frame (one row per SMTP attempt), in order.
ATTEMPT_COLUMNS: tuple[str, ...] = tuple(_ATTEMPT_DTYPES)
#: Column name -> pandas dtype of an outcome frame (times are UTC datetimes).
OUTCOME_DTYPES: Mapping[str, str] = MappingProxyType(_OUTCOME_DTYPES)
#: Column name -> pandas dtype of an attempts frame.
ATTEMPT_DTYPES: Mapping[str, str] = MappingProxyType(_ATTEMPT_DTYPES)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The latest status of one recipient. Times are POSIX seconds (UTC)."""

    recipient: str
    status: Status
    reason: str | None = None
    smtp_code: int | None = None
    smtp_status: str | None = None
    smtp_message: str | None = None
    attempts: int = 0
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None
    latency_ms: float | None = None
    message_id: str | None = None
    segment: str | None = None
    server: str | None = None
    envelope_sender: str | None = None


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One SMTP attempt for one recipient. Times are POSIX seconds (UTC)."""

    recipient: str
    attempt: int
    status: Status
    reason: str | None = None
    smtp_code: int | None = None
    smtp_status: str | None = None
    smtp_message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    latency_ms: float | None = None
    message_id: str | None = None
    segment: str | None = None
    server: str | None = None


def _typed_frame(
    rows: Iterable[Mapping[str, Any] | Any],
    dtypes: Mapping[str, str],
    index: Iterable[Any] | None,
) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for r in rows:
        if dataclasses.is_dataclass(r) and not isinstance(r, type):
            records.append(dataclasses.asdict(r))
        else:
            records.append(dict(r))  # type: ignore[arg-type]
    frame = pd.DataFrame.from_records(records, columns=list(dtypes))
    if index is not None:
        frame.index = pd.Index(list(index))
    return coerce_dtypes(frame, dtypes)


def coerce_dtypes(frame: pd.DataFrame, dtypes: Mapping[str, str], /) -> pd.DataFrame:
    """Give ``frame``'s columns the dtypes of ``dtypes`` (in place; returns the frame).

    Time columns may hold POSIX seconds (numbers) or datetimes; numbers are read as UTC.
    """
    for column, dtype in dtypes.items():
        if column not in frame.columns:
            continue
        if dtype.startswith("datetime64"):
            values = frame[column]
            if pd.api.types.is_datetime64_any_dtype(values):
                frame[column] = values.astype(dtype)  # type: ignore[call-overload]
            else:
                # POSIX seconds cut to whole microseconds (as the journal's reader does)
                seconds = values.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
                stamps = pd.to_datetime(np.trunc(seconds * 1e6), unit="us", utc=True)
                frame[column] = stamps.astype(dtype)
        else:
            frame[column] = frame[column].astype(dtype)  # type: ignore[call-overload]
    return frame


def outcomes_frame(
    records: Iterable[Outcome | Mapping[str, Any]], /, *, index: Iterable[Any] | None = None
) -> pd.DataFrame:
    """A frame with ``OUTCOME_COLUMNS`` and their dtypes from outcome records (times in UTC)."""
    return _typed_frame(records, _OUTCOME_DTYPES, index)


def attempts_frame(
    records: Iterable[Attempt | Mapping[str, Any]], /, *, index: Iterable[Any] | None = None
) -> pd.DataFrame:
    """A frame with ``ATTEMPT_COLUMNS`` and their dtypes from attempt records (times in UTC)."""
    return _typed_frame(records, _ATTEMPT_DTYPES, index)
