"""The outcome of every row of one send run, kept in compact columns until the frame is built.

A campaign of any size must not hold a Python object per recipient while it runs, so:

* repeated values (status, reason, enhanced code, server, segment) are small integer codes;
* Message-IDs (``<32 hex digits@host>``) and VERP envelope senders
  (``prefix+<16 hex digits>@domain``) are kept as their digest (16 or 8 bytes in one shared
  buffer) and a code for the few distinct text around it; other values keep a code for the
  whole text;
* server messages are shared when they repeat (most servers answer "2.0.0 Ok" alike);
* numbers are numpy arrays.

The returned frame is built from these columns with Arrow kernels (no Python string per row),
which is much cheaper than reading the run back from the journal; ``journal=None`` uses the
very same path.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import pandas as pd

from .outcomes import OUTCOME_COLUMNS, OUTCOME_DTYPES, coerce_dtypes

__all__ = ["Results", "release_memory"]

# Distinct server messages shared (one object each); past this many they are kept as they come.
_SHARED_MESSAGES = 4096
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UNHEX = np.zeros(256, dtype=np.uint8)
_UNHEX[_HEX] = np.arange(16, dtype=np.uint8)
# Records kept as tuples before they go into the columns, in one vectorized step.
_BATCH = 2048
# Arrays at least this large (bytes) get pages of their own from the system (see _array).
_OWN_PAGES = 1 << 20


def _array(rows: int, dtype: Any, fill: Any = 0) -> np.ndarray:
    """A new array of ``rows`` values; a large one in its own anonymous memory map.

    The columns are released one by one while the result frame is built. From the C heap,
    their memory would stay with the process (and add to its peak next to the frame); in a
    memory map of their own, it goes back to the system the moment each one is released.
    """
    dtype = np.dtype(dtype)
    size = rows * dtype.itemsize
    if size < _OWN_PAGES:
        return np.full(rows, fill, dtype=dtype)
    values = np.frombuffer(mmap.mmap(-1, size), dtype=dtype, count=rows)
    if fill != 0:
        values.fill(fill)  # a fresh map is zeros already
    return values
# Rows per step when building a string column (bounds the temporary arrays).
_CHUNK = 32_768


class _Codes:
    """A small vocabulary: value -> code (0 is None)."""

    __slots__ = ("codes", "values")

    def __init__(self) -> None:
        self.codes: dict[str | None, int] = {None: 0}
        self.values: list[str | None] = [None]

    def code(self, value: str | None) -> int:
        found = self.codes.get(value)
        if found is None:
            found = self.codes[value] = len(self.values)
            self.values.append(value)
        return found

    def code_all(self, values: tuple[str | None, ...]) -> list[int]:
        codes = self.codes
        try:
            return [codes[v] for v in values]
        except KeyError:
            return [codes[v] if v in codes else self.code(v) for v in values]

    def column(self, codes: np.ndarray) -> Any:
        import pyarrow as pa

        table = pa.array(self.values, type=pa.large_string())
        return _string_array([table.take(pa.array(codes[start : start + _CHUNK]))
                              for start in range(0, len(codes), _CHUNK)])


class _Digests:
    """Strings of the form ``<head><hex digest><tail>`` with few distinct heads and tails, one
    per row: the digest's bytes in one buffer, a code for (head, tail). A value of another
    form gets a code for itself (with no digest). Values come in batches (``put``)."""

    def __init__(self, rows: int, head: str, digits: int, tail: str) -> None:
        self.pattern = f"^(?P<head>{head})(?P<hex>[0-9a-f]{{{digits}}})(?P<tail>{tail})$"
        self.size = digits // 2
        self.buffer = _array(rows * self.size, np.uint8)
        self.codes = _array(rows, np.int32)  # 0: None
        self.parts: dict[tuple[str, str, bool], int] = {}
        self.heads: list[str | None] = [None]
        self.tails: list[str] = [""]
        self.hexed: list[bool] = [False]

    def _code(self, key: tuple[str, str, bool]) -> int:
        code = self.parts.get(key)
        if code is None:
            code = self.parts[key] = len(self.heads)
            self.heads.append(key[0])
            self.tails.append(key[1])
            self.hexed.append(key[2])
        return code

    def put(self, positions: np.ndarray, values: tuple[str | None, ...]) -> None:
        """Store ``values`` at ``positions`` (distinct), with Arrow kernels."""
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(values)
        found = pc.extract_regex(pa.array(values, type=pa.large_string()), self.pattern)
        matched = found.is_valid().to_numpy(zero_copy_only=False)
        codes = np.zeros(n, dtype=np.int32)
        hit = np.flatnonzero(matched)
        if len(hit):
            sub = found.filter(pa.array(matched))
            hexes = sub.field("hex")
            width = 2 * self.size
            offsets = np.frombuffer(hexes.buffers()[1], dtype=np.int64)[
                hexes.offset : hexes.offset + len(hexes) + 1]
            chars = np.frombuffer(hexes.buffers()[2], dtype=np.uint8)[
                offsets[0] : offsets[0] + len(hexes) * width].reshape(len(hexes), width)
            nibbles = _UNHEX[chars]
            view = self.buffer.reshape(-1, self.size)
            view[positions[hit]] = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
            heads = sub.field("head").dictionary_encode()
            tails = sub.field("tail").dictionary_encode()
            head_values = heads.dictionary.to_pylist()
            tail_values = tails.dictionary.to_pylist()
            pairs = (heads.indices.to_numpy().astype(np.int64) * len(tail_values)
                     + tails.indices.to_numpy())
            unique, inverse = np.unique(pairs, return_inverse=True)
            mapped = np.array([
                self._code((head_values[u // len(tail_values)],
                            tail_values[u % len(tail_values)], True))
                for u in unique.tolist()
            ], dtype=np.int32)
            codes[hit] = mapped[inverse]
        if len(hit) < n:  # None, or another form (a custom Message-ID, a plain sender)
            for i in np.flatnonzero(~matched).tolist():
                value = values[i]
                codes[i] = 0 if value is None else self._code((value, "", False))
        self.codes[positions] = codes

    def column(self) -> Any:
        """The strings as a pandas string array (built in chunks: small temporaries)."""
        import pyarrow as pa

        rows = len(self.codes)
        heads = pa.array(self.heads, type=pa.large_string())
        tails = pa.array(self.tails, type=pa.large_string())
        hexed = np.asarray(self.hexed, dtype=bool)
        chunks = [
            self._chunk(start, min(rows, start + _CHUNK), heads, tails, hexed)
            for start in range(0, rows, _CHUNK)
        ]
        self.buffer = self.codes = np.zeros(0, dtype=np.uint8)
        return _string_array(chunks)

    def _chunk(self, start: int, stop: int, heads: Any, tails: Any, hexed: np.ndarray) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        rows = stop - start
        codes = self.codes[start:stop]
        raw = self.buffer[start * self.size : stop * self.size].reshape(rows, self.size)
        chars = np.empty((rows, 2 * self.size), dtype=np.uint8)
        chars[:, 0::2] = _HEX[raw >> 4]
        chars[:, 1::2] = _HEX[raw & 15]
        width = 2 * self.size
        offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int64)
        hexes = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets),
                                                 pa.py_buffer(chars))
        empty = pa.scalar("", type=pa.large_string())
        pool = pa.system_memory_pool()
        hexes = pc.if_else(pa.array(hexed[codes]), hexes, empty, memory_pool=pool)
        taken = pa.array(codes)
        return pc.binary_join_element_wise(
            pc.take(heads, taken, memory_pool=pool), hexes,
            pc.take(tails, taken, memory_pool=pool), empty, memory_pool=pool,
        )


def _stamps(seconds: np.ndarray) -> Any:
    """POSIX seconds as UTC timestamps cut to whole microseconds (as ``coerce_dtypes`` and the
    journal's reader do), NaN as NaT; made directly, without a nullable float copy."""
    return pd.to_datetime(np.trunc(seconds * 1e6), unit="us", utc=True).astype(
        OUTCOME_DTYPES["first_attempt_at"])


def _string_array(chunks: list[Any]) -> Any:
    """A pandas string array over Arrow chunks (no copy)."""
    import pyarrow as pa

    if not chunks:
        return pd.array(pa.array([], type=pa.large_string()), dtype="string")
    return pd.array(pa.chunked_array(chunks, type=pa.large_string()), dtype="string")


def _objects_to_strings(values: np.ndarray) -> Any:
    """An object array of str / None as a pandas string array, converted in chunks."""
    import pyarrow as pa

    return _string_array([
        pa.array(values[start : start + _CHUNK], type=pa.large_string(), from_pandas=True)
        for start in range(0, len(values), _CHUNK)
    ])


class Results:
    """One row per input row; ``recorded`` says which rows this run settled.

    ``add`` (positional, the engine's per-attempt call) only keeps the record; records go into
    the compact columns in batches, with vectorized steps.
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.recorded = _array(rows, bool)
        self._status = _array(rows, np.int16)
        self._reason = _array(rows, np.int16)
        self._enhanced = _array(rows, np.int16)
        self._server = _array(rows, np.int32)
        self._segment = _array(rows, np.int32)
        self._code = _array(rows, np.int16, -1)
        self._attempts = _array(rows, np.int32)
        self._first = _array(rows, np.float64, np.nan)
        self._last = _array(rows, np.float64, np.nan)
        self._latency = _array(rows, np.float64, np.nan)
        self._message = np.full(rows, None, dtype=object)
        self._shared: dict[str, str] = {}
        self._message_id = _Digests(rows, "<", 32, "@[^>]*>")
        self._sender = _Digests(rows, r"[^+]*\+", 16, "@.*")
        self._vocab = {name: _Codes() for name in ("status", "reason", "enhanced", "server",
                                                    "segment")}
        # position -> (attempt record as _journal_writer.ATTEMPT_FIELDS, first attempt time)
        self._pending: dict[int, tuple[tuple[Any, ...], float | None]] = {}

    def add_attempt(self, record: tuple[Any, ...], first: float | None) -> None:
        """The row's latest state after an attempt: ``record`` is the engine's attempt record
        (the very tuple the journal gets, in the order of ``_journal_writer.ATTEMPT_FIELDS``),
        ``first`` when the row's first attempt started."""
        pending = self._pending
        pending[record[0]] = (record, first)
        if len(pending) >= _BATCH:
            self._flush()

    def add(
        self,
        position: int,
        status: str,
        reason: str | None,
        code: int | None,
        enhanced: str | None,
        message: str | None,
        attempts: int,
        first: float | None,
        last: float | None,
        latency: float | None,
        message_id: str | None,
        segment: str | None,
        server: str | None,
        envelope_sender: str | None,
    ) -> None:
        """The row's latest state (rows settled unsent; attempts come by ``add_attempt``)."""
        record = (position, attempts, status, reason, code, enhanced, message, None, last,
                  latency, server, segment, message_id, None, None, 0, envelope_sender, None)
        self.add_attempt(record, first)

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
        """``add`` with keywords."""
        self.add(position, status, reason, code, enhanced, message, attempts, first, last,
                 latency, message_id, segment, server, envelope_sender)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        at = np.fromiter(pending, dtype=np.int64, count=len(pending))
        records, first = zip(*pending.values(), strict=True)
        del pending
        (_, attempts, status, reason, code, enhanced, message, _, last, latency, server,
         segment, message_id, _, _, _, sender, _) = zip(*records, strict=True)
        del records
        v = self._vocab
        self.recorded[at] = True
        self._status[at] = v["status"].code_all(status)
        self._reason[at] = v["reason"].code_all(reason)
        self._enhanced[at] = v["enhanced"].code_all(enhanced)
        self._server[at] = v["server"].code_all(server)
        self._segment[at] = v["segment"].code_all(segment)
        self._code[at] = [-1 if c is None else c for c in code]
        self._attempts[at] = attempts
        self._first[at] = np.array(first, dtype=np.float64)  # None -> NaN
        self._last[at] = np.array(last, dtype=np.float64)
        self._latency[at] = np.array(latency, dtype=np.float64)
        shared = self._shared
        if len(shared) < _SHARED_MESSAGES:  # repeated texts become one object
            message = tuple(m if m is None else shared.setdefault(m, m) for m in message)
        values = np.empty(len(message), dtype=object)
        values[:] = message
        self._message[at] = values
        self._message_id.put(at, message_id)
        self._sender.put(at, sender)

    @property
    def complete(self) -> bool:
        """True when this run settled every row (nothing to take from earlier runs)."""
        self._flush()
        return bool(self.recorded.all())

    def frame(self, recipients: Any) -> pd.DataFrame:
        """The outcome frame (OUTCOME_COLUMNS, position order); ``recipients`` is the plan's
        address array. Rows this run did not settle are all-NA.

        Built once, column by column, each source array released as soon as it is converted
        (so the run's columns and the frame's do not all coexist). Call it once.
        """
        self._flush()
        v = self._vocab
        take = self._take
        code = take("_code")
        smtp_code = pd.array(code.astype(np.int64), dtype="Int64")
        smtp_code[code < 0] = pd.NA
        del code
        columns: dict[str, Any] = {
            "recipient": pd.array(recipients, dtype="string"),
            "status": v["status"].column(take("_status")),
            "reason": v["reason"].column(take("_reason")),
            "smtp_code": smtp_code,
            "smtp_status": v["enhanced"].column(take("_enhanced")),
        }
        self._shared = {}
        columns["smtp_message"] = _objects_to_strings(take("_message"))
        columns["attempts"] = pd.array(take("_attempts").astype(np.int64), dtype="Int64")
        columns["first_attempt_at"] = _stamps(take("_first"))
        columns["last_attempt_at"] = _stamps(take("_last"))
        columns["latency_ms"] = pd.array(take("_latency"), dtype="Float64")
        columns["message_id"] = self._message_id.column()
        columns["segment"] = v["segment"].column(take("_segment"))
        columns["server"] = v["server"].column(take("_server"))
        columns["envelope_sender"] = self._sender.column()
        frame = pd.DataFrame(columns, columns=list(OUTCOME_COLUMNS))
        del columns
        coerce_dtypes(frame, OUTCOME_DTYPES)
        if not self.recorded.all():
            frame.loc[~self.recorded, "recipient"] = pd.NA
        release_memory()
        return frame

    def _take(self, name: str) -> np.ndarray:
        """The array ``name``, no longer held here."""
        values: np.ndarray = getattr(self, name)
        setattr(self, name, values[:0].copy())
        return values


def release_memory() -> None:
    """Give memory Arrow's allocator keeps for reuse back to the system.

    Arrow's default pool (mimalloc or jemalloc) keeps what a large computation freed, so a big
    step (planning a long list, building its result frame) would add its temporary arrays to
    the process for good; releasing them after the step keeps the peak near the data itself.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
