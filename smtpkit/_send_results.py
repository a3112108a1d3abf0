"""The outcome of every row of one send run, kept in compact columns until the frame is built.

Repeated values (status, reason, enhanced code, server, segment) are small integer codes;
unique ones (server message, Message-ID, envelope sender) are references to strings that exist
anyway. Building the returned frame from these columns is much cheaper than reading the run
back from the journal, and ``journal=None`` uses the very same path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .outcomes import OUTCOME_COLUMNS, OUTCOME_DTYPES, coerce_dtypes

__all__ = ["Results"]


class _Codes:
    """A small vocabulary: value -> code (0 is None)."""

    __slots__ = ("codes", "values")

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.values: list[str | None] = [None]

    def code(self, value: str | None) -> int:
        if value is None:
            return 0
        found = self.codes.get(value)
        if found is None:
            found = self.codes[value] = len(self.values)
            self.values.append(value)
        return found

    def column(self, codes: np.ndarray) -> Any:
        table = np.array(self.values, dtype=object)
        return pd.array(table[codes], dtype="string")


class Results:
    """One row per input row; ``recorded`` says which rows this run settled."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.recorded = np.zeros(rows, dtype=bool)
        self._status = np.zeros(rows, dtype=np.int32)
        self._reason = np.zeros(rows, dtype=np.int32)
        self._enhanced = np.zeros(rows, dtype=np.int32)
        self._server = np.zeros(rows, dtype=np.int32)
        self._segment = np.zeros(rows, dtype=np.int32)
        self._code = np.full(rows, -1, dtype=np.int32)
        self._attempts = np.zeros(rows, dtype=np.int32)
        self._first = np.full(rows, np.nan)
        self._last = np.full(rows, np.nan)
        self._latency = np.full(rows, np.nan)
        self._message = np.full(rows, None, dtype=object)
        self._message_id = np.full(rows, None, dtype=object)
        self._sender = np.full(rows, None, dtype=object)
        self._vocab = {name: _Codes() for name in ("status", "reason", "enhanced", "server",
                                                    "segment")}

    def record(
        self,
        position: int,
        *,
        status: str,
        reason: str | None,
        code: int | None = None,
        enhanced: str | None = None,
        message: str | None = None,
        attempts: int = 0,
        first: float | None = None,
        last: float | None = None,
        latency: float | None = None,
        message_id: str | None = None,
        segment: str | None = None,
        server: str | None = None,
        envelope_sender: str | None = None,
    ) -> None:
        """The row's latest state (called for every attempt, and for rows settled unsent)."""
        v = self._vocab
        self.recorded[position] = True
        self._status[position] = v["status"].code(status)
        self._reason[position] = v["reason"].code(reason)
        self._enhanced[position] = v["enhanced"].code(enhanced)
        self._server[position] = v["server"].code(server)
        self._segment[position] = v["segment"].code(segment)
        self._code[position] = -1 if code is None else code
        self._attempts[position] = attempts
        self._first[position] = np.nan if first is None else first
        self._last[position] = np.nan if last is None else last
        self._latency[position] = np.nan if latency is None else latency
        self._message[position] = message
        self._message_id[position] = message_id
        self._sender[position] = envelope_sender

    @property
    def complete(self) -> bool:
        """True when this run settled every row (nothing to take from earlier runs)."""
        return bool(self.recorded.all())

    def frame(self, recipients: Any) -> pd.DataFrame:
        """The outcome frame (OUTCOME_COLUMNS, position order); ``recipients`` is the plan's
        address array. Rows this run did not settle are all-NA.

        Built once, column by column, each source array released as soon as it is converted
        (so the run's strings and their copies in the frame do not all coexist).
        """
        v = self._vocab
        code = pd.array(self._code, dtype="Int64")
        code[self._code < 0] = pd.NA
        columns: dict[str, Any] = {
            "recipient": pd.array(recipients, dtype="string"),
            "status": v["status"].column(self._status),
            "reason": v["reason"].column(self._reason),
            "smtp_code": code,
            "smtp_status": v["enhanced"].column(self._enhanced),
        }
        columns["smtp_message"] = self._take_strings("_message")
        columns["attempts"] = pd.array(self._attempts, dtype="Int64")
        columns["first_attempt_at"] = self._first
        columns["last_attempt_at"] = self._last
        columns["latency_ms"] = pd.array(self._latency, dtype="Float64")
        columns["message_id"] = self._take_strings("_message_id")
        columns["segment"] = v["segment"].column(self._segment)
        columns["server"] = v["server"].column(self._server)
        columns["envelope_sender"] = self._take_strings("_sender")
        frame = pd.DataFrame(columns, columns=list(OUTCOME_COLUMNS))
        del columns
        coerce_dtypes(frame, OUTCOME_DTYPES)
        if not self.recorded.all():
            frame.loc[~self.recorded, "recipient"] = pd.NA
        return frame

    def _take_strings(self, name: str) -> Any:
        values = getattr(self, name)
        setattr(self, name, np.empty(0, dtype=object))  # this object no longer holds them
        column = pd.array(values, dtype="string")
        del values
        return column
