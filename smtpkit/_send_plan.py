"""Planning a send: which rows go, in what order, with which template, and rendering them.

Rows are decided with vectorized pandas operations before anything is sent:

* a cleaned frame (with a ``sendable`` column) sends only its ``sendable`` rows; the others
  are ``skipped`` with the frame's ``reason`` (or ``not_sendable``);
* a frame without ``sendable`` sends every row whose address looks like ``local@domain.tld``;
  the others are ``skipped`` as ``missing_address`` / ``invalid_address``;
* an address that appears again is ``skipped`` as ``duplicate``: only its first row is sent,
  so nobody gets the campaign twice. Addresses are compared by their envelope form
  (:func:`smtpkit._address_key.address_key`: the domain in IDNA A-labels, the local part in
  NFC, both lower case), so ``Ann@Bücher.example`` and ``ann@xn--bcher-kva.example`` are one
  recipient, also in a frame that was not cleaned;
* an address with a recorded hard bounce or complaint in the journal is ``skipped`` as
  ``suppressed`` (matched by the same key).

The fingerprint of the rows to send (before suppression, which may change between runs) is
what a resumed campaign must match. Rendering is lazy: :class:`RowSource` renders one
:class:`~smtpkit._send_sched.Item` at a time when the scheduler takes it (and lets it pass over
rows of a domain that is held back, rendering them later), so only the messages about to go
are in memory.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._address_key import address_key, address_keys
from ._send_results import release_memory
from ._send_sched import Item
from .compose import RowError, Template, make_message_id, render_message
from .errors import ConfigError, InputError, MissingColumnError
from .journal import RecipientRecord, _label_text, fingerprint, recipient_token
from .segment import address_column, group_positions

__all__ = [
    "Plan",
    "RowSource",
    "Verp",
    "plan_rows",
    "recipient_domain",
    "record_for",
    "templates_by_segment",
]

_PLAUSIBLE = r"[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f.]+(?:\.[^@\x00-\x20\x7f.]+)+"
_VERP_LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}")
_CHUNK = 1024  # rows rendered per step (a step holds only their values)


@dataclasses.dataclass(frozen=True)
class Verp:
    """How envelope senders are made: ``prefix+token@domain`` per recipient, or none."""

    enabled: bool = True
    prefix: str = "bounces"
    domain: str | None = None  # None: each template's sender domain

    @classmethod
    def parse(cls, value: bool | str) -> Verp:
        """``True`` (``bounces+token@<sender domain>``), ``False`` (the template's sender), or
        an address whose local part is the prefix: ``"returns@mail.example.com"``."""
        if value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        if isinstance(value, str):
            local, at, domain = value.strip().rpartition("@")
            if at and _VERP_LOCAL.fullmatch(local) and re.fullmatch(
                r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", domain
            ):
                return cls(True, local, domain.lower())
        raise ConfigError(
            "verp must be True, False, or an address such as 'bounces@mail.example.com' whose "
            f"local part becomes the prefix of 'bounces+<token>@mail.example.com'; got {value!r}."
        )

    def sender(self, template: Template, token: str) -> str:
        if not self.enabled:
            return template.sender_address
        return f"{self.prefix}+{token}@{self.domain or template.domain}"


@dataclasses.dataclass
class Plan:
    """What a send will do with each row (arrays indexed by row position).

    Addresses stay in an Arrow string array (compact); :meth:`values` gives Python strings
    for the positions at hand, and :meth:`keys_at` their keys (``address_key``), so a plan of
    any size holds no Python string per row.
    """

    rows: int
    addresses: Any  # stripped addresses, NA when missing (pandas string array)
    skip_status: Any  # NA (send) or "skipped" (a Categorical: a byte per row)
    skip_reason: Any  # NA or why it is skipped (a Categorical)
    order: np.ndarray  # positions of the rows to send, in sending order
    segments: np.ndarray | None  # segment name per row
    identity: str
    to_send: int

    @staticmethod
    def values(array: Any, positions: np.ndarray, /) -> list[str | None]:
        """Python values of ``array`` at ``positions`` (None where missing)."""
        return [None if v is pd.NA or v is None else v for v in array.take(positions).tolist()]

    def keys_at(self, positions: np.ndarray, /) -> list[str | None]:
        """The keys (``address_key``: what duplicates, suppression and the journal go by) of
        the addresses at ``positions``; the same function as planning used."""
        keys = address_keys(pd.Series(self.addresses.take(positions), copy=False))
        return [None if v is pd.NA or v is None else v for v in keys.tolist()]


def plan_rows(
    frame: pd.DataFrame,
    *,
    segment: str | None,
    suppressed: Callable[[], set[str]] | None = None,
) -> Plan:
    """Decide, per row, whether it is sent; see the module docstring."""
    rows = len(frame)
    column = address_column(frame)
    text = frame[column].astype("string").str.strip().reset_index(drop=True)
    missing = text.isna() | (text == "")
    plausible = text.str.fullmatch(_PLAUSIBLE).fillna(False).to_numpy(dtype=bool)
    text = text.where(~missing)
    addresses = text.array
    keys_series = address_keys(text)  # Arrow kernels for ASCII: no Python string per row
    keys = keys_series.array
    skip_status = np.full(rows, None, dtype=object)
    skip_reason = np.full(rows, None, dtype=object)
    missing_np = missing.to_numpy(dtype=bool)
    if "sendable" in frame.columns:
        sendable = frame["sendable"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        reasons = (
            frame["reason"].astype("string").fillna("not_sendable").to_numpy(dtype=object)
            if "reason" in frame.columns
            else np.full(rows, "not_sendable", dtype=object)
        )
        blocked = ~sendable
        skip_status[blocked] = "skipped"
        skip_reason[blocked] = reasons[blocked]
        bad = sendable & (missing_np | ~plausible)
    else:
        bad = missing_np | ~plausible
    skip_status[bad] = "skipped"
    skip_reason[bad & missing_np] = "missing_address"
    skip_reason[bad & ~missing_np] = "invalid_address"
    go = np.array(pd.isna(skip_status), dtype=bool)
    if go.any():
        duplicated = _repeats(keys, go)
        skip_status[duplicated] = "skipped"
        skip_reason[duplicated] = "duplicate"
        go &= ~duplicated
    if segment is not None:
        if segment not in frame.columns:
            raise MissingColumnError(
                f"segment={segment!r} names no column of the frame; add one with "
                f"smtpkit.segment(...) or pass one of {', '.join(map(str, frame.columns))}."
            )
        labels = frame[segment].astype("string").fillna("other").to_numpy(dtype=object)
        order = np.concatenate(group_positions(frame[segment])) if rows else np.arange(0)
        segments: np.ndarray | None = labels
    else:
        order = np.arange(rows)
        segments = None
    order = order[go[order]]
    identity = fingerprint(order, _chunked(keys, order))
    to_send = len(order)
    if suppressed is not None and to_send:
        blocked_keys = suppressed()
        if blocked_keys:
            hit = keys_series.iloc[order].isin(blocked_keys).to_numpy(dtype=bool)
            skip_status[order[hit]] = "skipped"
            skip_reason[order[hit]] = "suppressed"
            order = order[~hit]
    del keys, keys_series
    release_memory()  # the sorting and matching above are done with: keep the peak low
    return Plan(rows, addresses, pd.Categorical(skip_status), pd.Categorical(skip_reason), order,
                segments, identity, to_send)


def _repeats(keys: Any, eligible: np.ndarray) -> np.ndarray:
    """True for each eligible row whose key an earlier eligible row has (keep the first).

    Sorting with Arrow (stable) and comparing neighbours needs one index array and one sorted
    copy, where pandas' ``duplicated`` builds a hash table of Python strings.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    where = np.flatnonzero(eligible)
    repeats = np.zeros(len(eligible), dtype=bool)
    if len(where) < 2:
        return repeats
    subset = pa.array(keys).take(pa.array(where))
    order = pc.sort_indices(subset).to_numpy()  # stable: equal keys keep position order
    ranked = subset.take(pa.array(order))
    same = pc.equal(ranked[1:], ranked[:-1]).to_numpy(zero_copy_only=False)
    repeats[where[order[1:][same]]] = True
    return repeats


def _chunked(array: Any, positions: np.ndarray, size: int = 8192) -> Iterator[str]:
    for start in range(0, len(positions), size):
        yield from Plan.values(array, positions[start : start + size])  # type: ignore[misc]


def templates_by_segment(
    template: Template | Mapping[str, Template], plan: Plan
) -> Callable[[int], Template]:
    """A function giving the template of a row position; checks every segment has one."""
    if isinstance(template, Template):
        return lambda position: template
    if not isinstance(template, Mapping) or not template:
        raise InputError(
            "template must be a smtpkit.Template, or a dict {segment: Template} together with "
            "segment='<column>'."
        )
    for name, value in template.items():
        if not isinstance(value, Template):
            raise InputError(
                f"The template for segment {name!r} is a {type(value).__name__}, not a "
                "smtpkit.Template."
            )
    if plan.segments is None:
        raise InputError(
            "A dict of templates needs segment='<column>' to say which row takes which template."
        )
    default = template.get("*")
    names = set(pd.unique(plan.segments[plan.order])) if len(plan.order) else set()
    lacking = sorted(str(n) for n in names if n not in template and default is None)
    if lacking:
        raise InputError(
            f"No template for segment(s) {', '.join(map(repr, lacking))}; add them to the "
            "dict, or a default under the key '*'."
        )
    segments = plan.segments

    def pick(position: int) -> Template:
        found = template.get(segments[position])
        return found if found is not None else default  # type: ignore[return-value]

    return pick


def record_for(
    plan: Plan,
    position: int,
    address_and_key: tuple[str, str],
    /,
    *,
    label: Any,
    template: Template,
    campaign: str,
    verp: Verp,
) -> RecipientRecord:
    """Who row ``position`` is in the journal: address, VERP sender, Message-ID, segment."""
    address, key = address_and_key
    token = recipient_token(campaign, key)
    return RecipientRecord(
        position=position,
        row_label=_label_text(label),
        recipient=address,
        rkey=key,
        token=token if verp.enabled else None,
        envelope_sender=verp.sender(template, token),
        segment=None if plan.segments is None else plan.segments[position],
        message_id=make_message_id(domain=template.domain, key=f"{campaign}/{key}"),
    )


class RowSource:
    """The rows at ``positions``, in order, rendered one at a time when the scheduler asks.

    The scheduler looks at the next row's recipient domain first (:meth:`peek`) and then
    either renders it (:meth:`take`) or sets it aside unrendered (:meth:`skip` gives its
    position), to render later with :meth:`render` — so a row waiting for a domain that is
    being held back costs a position, not a rendered message. A row that cannot be rendered
    goes to ``on_row_error`` (it becomes ``failed``) instead of becoming an Item.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        plan: Plan,
        positions: np.ndarray,
        *,
        template_of: Callable[[int], Template],
        columns: list[str],
        campaign: str,
        verp: Verp,
        attempts: np.ndarray,
        on_row_error: Callable[[RecipientRecord, RowError], None],
    ) -> None:
        self._frame = frame
        self._plan = plan
        self._positions = positions
        self._template_of = template_of
        self._columns = columns
        self._campaign = campaign
        self._verp = verp
        self._attempts = attempts
        self._on_row_error = on_row_error
        self._series = [frame[c] for c in columns]
        self._start = 0  # where the next chunk of ``positions`` begins
        self._i = 0  # the next row within the current chunk
        self._n = 0
        self._chunk: list[int] = []
        self._rows: list[tuple[Any, ...]] = []
        self._tries: list[int] = []
        self._addresses: list[str | None] = []
        self._keys: list[str | None] = []
        self._domains: list[str] = []
        self._labels: list[Any] = []

    def _load(self) -> bool:
        positions = self._positions
        if self._start >= len(positions):
            return False
        chunk = positions[self._start : self._start + _CHUNK]
        self._start += len(chunk)
        self._chunk = chunk.tolist()
        self._rows = list(zip(*(series.iloc[chunk].tolist() for series in self._series),
                              strict=True)) if self._series else [()] * len(chunk)
        self._addresses = Plan.values(self._plan.addresses, chunk)
        self._keys = self._plan.keys_at(chunk)
        self._domains = [self._domain_of(k) for k in self._keys]
        self._labels = self._frame.index.take(chunk).tolist()
        self._tries = self._attempts[chunk].tolist()
        self._i, self._n = 0, len(chunk)
        return True

    @staticmethod
    def _domain_of(key: str | None) -> str:
        """The recipient domain as the rendered message will have it (IDNA, lower case): the
        domain of the row's key."""
        return key.rpartition("@")[2] if key else ""

    def peek(self) -> str | None:
        """The recipient domain of the next row; None when every row was taken."""
        if self._i >= self._n and not self._load():
            return None
        return self._domains[self._i]

    def skip(self) -> int:
        """Pass over the next row without rendering it; its position (call after ``peek``)."""
        position = self._chunk[self._i]
        self._i += 1
        return position

    def take(self) -> Item | None:
        """Render the next row (call after ``peek``); None when it cannot be rendered."""
        i = self._i
        self._i = i + 1
        position = self._chunk[i]
        address = self._addresses[i]
        key = self._keys[i]
        template = self._template_of(position)
        campaign = self._campaign
        token = recipient_token(campaign, key)  # type: ignore[arg-type]
        segments = self._plan.segments
        rec = RecipientRecord(
            position, _label_text(self._labels[i]), address, key,
            token if self._verp.enabled else None, self._verp.sender(template, token),
            None if segments is None else segments[position],
            make_message_id(domain=template.domain, key=f"{campaign}/{key}"),
        )
        row = dict(zip(self._columns, self._rows[i], strict=True))
        try:
            rendered = render_message(row, template, recipient=address, message_id=rec.message_id)
        except RowError as error:
            self._on_row_error(rec, error)
            return None
        rcpt = rendered.recipient
        return Item(
            rec,
            self._domains[i] if rcpt == address else rcpt.rpartition("@")[2].lower(),
            rcpt,
            rec.envelope_sender or template.sender_address,
            rendered.data,
            rendered.smtputf8,
            self._tries[i],
        )

    def render(self, positions: Sequence[int], /) -> list[Item]:
        """Render the rows at ``positions`` (rows set aside by ``skip``), in that order."""
        other = RowSource(
            self._frame, self._plan, np.asarray(positions, dtype=np.int64),
            template_of=self._template_of, columns=self._columns, campaign=self._campaign,
            verp=self._verp, attempts=self._attempts, on_row_error=self._on_row_error,
        )
        return list(other)

    def __iter__(self) -> Iterator[Item]:
        """The rendered rows in order (a row that cannot be rendered goes to ``on_row_error``)."""
        while self.peek() is not None:
            item = self.take()
            if item is not None:
                yield item


def recipient_domain(address: str | None, /) -> str:
    """The domain of an address as the send engine schedules it: lower case, IDNA A-labels
    (the domain of its ``address_key``)."""
    return address_key(address).rpartition("@")[2] if address else ""
