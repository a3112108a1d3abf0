"""Summaries of a campaign as frames, and the self-contained HTML report.

Every function takes the frames the pipeline already produced and returns a new, small frame
(inputs are never changed) that reads well in a notebook:

``summarize(outcomes, by=None)``
    Counts and rates per status; with ``by`` (a column such as ``"segment"`` or ``"server"``, or
    ``"domain"``, derived from ``recipient``) one row per group and one column per status.
``funnel(cleaned, outcomes)``
    contacts → valid → unique → sendable → sent → delivered, plus bounced and complained.
``latency(outcomes, by="domain")``
    p50 / p95 / p99 / max of ``latency_ms`` and the number of measurements per group.
``timeline(attempts, freq="1s")``
    Attempts per time bin by status, throughput, retries, and how many recipients are in each
    status at the end of every bin.
``codes(outcomes)``
    The SMTP reply codes and enhanced status codes seen, with their meaning in plain language
    (RFC 5321 reply codes, RFC 3463 enhanced codes and the IANA registry that extends them).
``report_html(cleaned, outcomes, ...)``
    All of the above with the charts of :mod:`smtpkit.plot`, as one HTML page with the images
    embedded (no external resources, every value escaped); written to ``path`` when given.

Grouping rules shared by every function (and the charts): a missing group value is shown as
``"(none)"``; with ``top=N`` the N largest groups are kept and the rest is pooled into one row
labelled ``"(K others)"``, so no row is ever dropped from a total.

Example:
    >>> from smtpkit.outcomes import outcomes_frame
    >>> from smtpkit.report import summarize
    >>> frame = outcomes_frame([
    ...     {"recipient": "ann@example.com", "status": "sent"},
    ...     {"recipient": "bob@example.org", "status": "sent"},
    ...     {"recipient": "cy@example.org", "status": "failed"},
    ... ])
    >>> summarize(frame).loc[["sent", "failed"], "count"].tolist()
    [2, 1]
    >>> summarize(frame, by="domain")["sent"].to_dict()
    {'example.org': 1, 'example.com': 1}
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from .errors import InputError, MissingColumnError
from .outcomes import STATUSES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ATTEMPT_STATUSES",
    "BOUNCE_CATEGORIES",
    "DELIVERED_STATUSES",
    "FUNNEL_STAGES",
    "MAX_TIMELINE_BINS",
    "NONE_LABEL",
    "bounce_reasons",
    "code_meaning",
    "codes",
    "funnel",
    "group_labels",
    "latency",
    "report_html",
    "summarize",
    "timeline",
]

#: Label of rows whose group value (segment, domain, status, code ...) is missing.
NONE_LABEL = "(none)"
#: Statuses that mean "the server answered 250 to the data" (a bounce or complaint came later).
DELIVERED_STATUSES: frozenset[str] = frozenset({"sent", "bounced", "complained"})
#: Statuses an SMTP attempt can end with (the timeline always has a column for each).
ATTEMPT_STATUSES: tuple[str, ...] = ("sent", "deferred", "failed", "unknown")
#: The stages of :func:`funnel` with a cleaned frame, in order.
FUNNEL_STAGES: tuple[str, ...] = (
    "contacts",
    "valid",
    "unique",
    "sendable",
    "sent",
    "delivered",
    "bounced",
    "complained",
)
#: :func:`timeline` refuses to build more bins than this (a stray timestamp years away would
#: otherwise allocate millions of empty rows); pass a coarser ``freq``.
MAX_TIMELINE_BINS = 1_000_000

_OTHERS = "({n} others)"
_DOMAIN = "domain"


# --- shared helpers ---------------------------------------------------------------------------


def _check_frame(frame: Any, name: str, function: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise InputError(
            f"{function}() needs a pandas DataFrame as {name}, not {type(frame).__name__}; "
            f"pass the frame smtpkit returned (for example from smtpkit.send or smtpkit.outcomes)."
        )
    return frame


def _require(frame: pd.DataFrame, columns: Iterable[str], *, name: str, function: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "no columns at all"
        need = ", ".join(repr(c) for c in missing)
        raise MissingColumnError(
            f"{function}() needs the column(s) {need} in {name}, which has: {have}. "
            f"Pass the frame smtpkit returned for it, with its columns unchanged."
        )


def _labels(values: pd.Series) -> pd.Series:
    """Group labels as plain strings, missing values spelled NONE_LABEL (so none is dropped)."""
    as_text = values.astype("string").str.strip()
    return as_text.mask(as_text.isna() | (as_text == ""), NONE_LABEL).astype(object)


def _domains(recipients: pd.Series) -> pd.Series:
    lowered = recipients.astype("string").str.strip().str.lower()
    return lowered.str.extract(r"@([^@]+)$", expand=False)


def group_labels(
    frame: pd.DataFrame, by: str, /, *, top: int | None = None, function: str = "group_labels"
) -> pd.Series:
    """One label per row of ``frame`` for the column ``by`` (``"domain"`` is derived from
    ``recipient`` when the frame has no such column); with ``top`` the rarer groups are pooled.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"recipient": ["a@X.com", "b@x.com", "c@y.org", None]})
        >>> group_labels(frame, "domain", top=1).tolist()
        ['x.com', 'x.com', '(2 others)', '(2 others)']
    """
    if not isinstance(by, str):
        raise InputError(
            f"{function}() takes by= as one column name such as 'segment' or 'domain', "
            f"not {type(by).__name__}."
        )
    if by == _DOMAIN and _DOMAIN not in frame.columns:
        _require(frame, ["recipient"], name="the frame", function=function)
        labels = _labels(_domains(frame["recipient"]))
    else:
        _require(frame, [by], name="the frame", function=function)
        labels = _labels(frame[by])
    labels.name = by
    if top is None:
        return labels
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InputError(f"{function}() takes top= as a whole number of at least 1, not {top!r}.")
    counts = _ordered_counts(labels)
    if len(counts) <= top:
        return labels
    keep = set(counts.index[:top])
    pooled = _OTHERS.format(n=len(counts) - top)
    return labels.where(labels.isin(keep), pooled)


def _ordered_counts(labels: pd.Series) -> pd.Series:
    """Rows per label, largest first, ties by name; the "(none)" group goes last."""
    counts = labels.value_counts(sort=False)
    order = sorted(counts.index, key=lambda g: (g == NONE_LABEL, -int(counts[g]), str(g)))
    return counts.reindex(order)


def _group_order(labels: Iterable[Any], sizes: Mapping[Any, Any]) -> list[Any]:
    """Largest group first; the pooled "(K others)" and "(none)" groups last."""

    def key(group: Any) -> tuple[int, int, str]:
        tail = 2 if group == NONE_LABEL else 1 if _is_pooled(group) else 0
        return (tail, -int(sizes.get(group, 0)), str(group))

    return sorted(labels, key=key)


def _is_pooled(label: object) -> bool:
    return isinstance(label, str) and re.fullmatch(r"\(\d+ others\)", label) is not None


def _status_labels(frame: pd.DataFrame) -> pd.Series:
    return _labels(frame["status"])


def _status_order(present: Iterable[str], always: Sequence[str] = STATUSES) -> list[str]:
    """The known statuses in display order, then any unexpected value (never dropped)."""
    extra = sorted(set(present) - set(always), key=lambda s: (s == NONE_LABEL, s))
    return [*always, *extra]


def _rate(count: pd.Series | pd.DataFrame, total: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return count / total


# --- summarize ----------------------------------------------------------------------------


def summarize(
    outcomes: pd.DataFrame, /, *, by: str | None = None, top: int | None = None
) -> pd.DataFrame:
    """Counts and rates per status, for the whole campaign or per group.

    Without ``by``: one row per status (every status of ``smtpkit.STATUSES``, in order, zeros
    included; an unexpected status value gets its own row), columns ``count`` and ``rate`` (share
    of all rows, 0–1).
    With ``by`` (a column of ``outcomes``, or ``"domain"``): one row per group, largest first,
    columns ``total``, one count column per status, then ``<status>_rate`` for each.
    ``top`` keeps the ``top`` largest groups and pools the rest into ``"(K others)"``.

    Example:
        >>> from smtpkit.outcomes import outcomes_frame
        >>> frame = outcomes_frame([
        ...     {"recipient": "a@x.com", "status": "sent", "segment": "A"},
        ...     {"recipient": "b@x.com", "status": "deferred", "segment": "A"},
        ...     {"recipient": "c@y.com", "status": "sent", "segment": "B"},
        ... ])
        >>> summarize(frame, by="segment")[["total", "sent", "sent_rate"]].to_dict("index")
        ... # doctest: +NORMALIZE_WHITESPACE
        {'A': {'total': 2, 'sent': 1, 'sent_rate': 0.5},
         'B': {'total': 1, 'sent': 1, 'sent_rate': 1.0}}
    """
    _check_frame(outcomes, "outcomes", "summarize")
    _require(outcomes, ["status"], name="outcomes", function="summarize")
    status = _status_labels(outcomes)
    order = _status_order(status.unique())
    if by is None:
        counts = status.value_counts().reindex(order, fill_value=0).astype("int64")
        result = pd.DataFrame({"count": counts, "rate": _rate(counts, len(outcomes)).astype(float)})
        result.index.name = "status"
        return result
    groups = group_labels(outcomes, by, top=top, function="summarize")
    table = (
        pd.DataFrame({"group": groups.to_numpy(), "status": status.to_numpy()})
        .groupby(["group", "status"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=order, fill_value=0)
        .astype("int64")
    )
    table.columns.name = None
    total = table.sum(axis=1).astype("int64")
    rates = _rate(table, total.to_numpy()[:, None]).astype(float)
    rates.columns = [f"{s}_rate" for s in order]
    result = pd.concat([total.rename("total"), table, rates], axis=1)
    result = result.reindex(_group_order(result.index, total.to_dict()))
    result.index.name = by
    return result


# --- funnel -------------------------------------------------------------------------------


def _flag(frame: pd.DataFrame, column: str, function: str) -> pd.Series:
    values = frame[column]
    try:
        flags = values.astype("boolean")
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{function}() needs True/False values in the column {column!r}; it holds "
            f"{values.dtype} values that are not booleans. Pass the frame smtpkit.clean returned."
        ) from exc
    return flags.fillna(False).astype(bool)


def funnel(cleaned: pd.DataFrame | None, outcomes: pd.DataFrame, /) -> pd.DataFrame:
    """How many rows reach each stage, from the contact list to the inbox.

    Stages (the index): ``contacts`` (rows of ``cleaned``), ``valid``, ``unique`` (valid and not
    a duplicate), ``sendable``, ``sent`` (the server answered 250: statuses sent, bounced and
    complained), ``delivered`` (sent minus bounced; a complaint was delivered), ``bounced``,
    ``complained``. With ``cleaned=None`` (only the journal at hand) the list stages are replaced
    by ``recipients`` (rows of ``outcomes``) and ``attempted`` (not skipped).
    Columns: ``count``; ``share`` = count / the first stage; ``conversion`` = count / the stage
    named in ``base`` (the previous stage, or ``sent`` for delivered, bounced and complained).
    ``unknown`` rows (the connection broke after the data) are not counted as sent.

    Example:
        >>> import pandas as pd
        >>> from smtpkit.outcomes import outcomes_frame
        >>> cleaned = pd.DataFrame({"valid": [True, True, False], "duplicate": [False, True, False],
        ...                         "sendable": [True, False, False]})
        >>> outcomes = outcomes_frame([{"recipient": "a@x.com", "status": "bounced"}])
        >>> funnel(cleaned, outcomes)["count"].tolist()
        [3, 2, 1, 1, 1, 0, 1, 0]
    """
    _check_frame(outcomes, "outcomes", "funnel")
    _require(outcomes, ["status"], name="outcomes", function="funnel")
    status = _status_labels(outcomes)
    sent = int(status.isin(DELIVERED_STATUSES).sum())
    bounced = int((status == "bounced").sum())
    complained = int((status == "complained").sum())
    stages: list[tuple[str, int, str | None]]
    if cleaned is None:
        stages = [
            ("recipients", len(outcomes), None),
            ("attempted", int((status != "skipped").sum()), "recipients"),
        ]
    else:
        _check_frame(cleaned, "cleaned", "funnel")
        _require(cleaned, ["valid", "sendable"], name="cleaned", function="funnel")
        valid = _flag(cleaned, "valid", "funnel")
        unique = valid
        if "duplicate" in cleaned.columns:
            unique = valid & ~_flag(cleaned, "duplicate", "funnel")
        stages = [
            ("contacts", len(cleaned), None),
            ("valid", int(valid.sum()), "contacts"),
            ("unique", int(unique.sum()), "valid"),
            ("sendable", int(_flag(cleaned, "sendable", "funnel").sum()), "unique"),
        ]
    stages += [
        ("sent", sent, stages[-1][0]),
        ("delivered", sent - bounced, "sent"),
        ("bounced", bounced, "sent"),
        ("complained", complained, "sent"),
    ]
    counts = {name: count for name, count, _ in stages}
    first = stages[0][1]
    result = pd.DataFrame(
        {
            "count": [count for _, count, _ in stages],
            "share": [_ratio(count, first) for _, count, _ in stages],
            "conversion": [
                _ratio(count, counts[base]) if base else 1.0 if count else np.nan
                for _, count, base in stages
            ],
            "base": [base or "" for _, _, base in stages],
        },
        index=pd.Index([name for name, _, _ in stages], name="stage"),
    )
    result["count"] = result["count"].astype("int64")
    return result


def _ratio(count: int, base: int) -> float:
    return count / base if base else float("nan")


# --- latency ------------------------------------------------------------------------------

_LATENCY_COLUMNS = ("count", "p50_ms", "p95_ms", "p99_ms", "max_ms")


def latency(
    outcomes: pd.DataFrame, /, *, by: str | None = "domain", top: int | None = None
) -> pd.DataFrame:
    """Latency percentiles per group: ``count`` (rows with a measured ``latency_ms``),
    ``p50_ms``, ``p95_ms``, ``p99_ms`` and ``max_ms``, largest group first.

    Percentiles interpolate linearly between measurements (``pandas.Series.quantile``).
    Rows without a latency are left out of the measurements; a group without any measurement
    has no row. ``by=None`` gives one row, ``"all"``.

    Example:
        >>> from smtpkit.outcomes import outcomes_frame
        >>> rows = [{"recipient": f"u{i}@x.com", "status": "sent", "latency_ms": float(i)}
        ...         for i in range(1, 101)]
        >>> latency(outcomes_frame(rows)).loc["x.com", ["count", "p50_ms", "p99_ms"]].tolist()
        [100.0, 50.5, 99.01]
    """
    _check_frame(outcomes, "outcomes", "latency")
    _require(outcomes, ["latency_ms"], name="outcomes", function="latency")
    values = pd.to_numeric(outcomes["latency_ms"], errors="coerce").astype("Float64")
    measured = values.notna().to_numpy()
    index_name = by or "group"
    if by is not None:
        group_labels(outcomes.iloc[:0], by, function="latency")  # a missing column raises early
    if not measured.any():
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in _LATENCY_COLUMNS})
        empty["count"] = empty["count"].astype("int64")
        empty.index = pd.Index([], name=index_name, dtype=object)
        return empty
    subset = outcomes[measured]
    if by is None:
        groups = pd.Series("all", index=subset.index, dtype=object)
    else:
        groups = group_labels(subset, by, top=top, function="latency")
    data = pd.DataFrame(
        {"group": groups.to_numpy(), "ms": values[measured].astype(float).to_numpy()}
    )
    grouped = data.groupby("group")["ms"]
    quantiles = grouped.quantile(np.array([0.5, 0.95, 0.99])).unstack()
    result = pd.DataFrame(
        {
            "count": grouped.size().astype("int64"),
            "p50_ms": quantiles[0.5],
            "p95_ms": quantiles[0.95],
            "p99_ms": quantiles[0.99],
            "max_ms": grouped.max(),
        }
    )
    result = result.reindex(_group_order(result.index, result["count"].to_dict()))
    result.index.name = index_name
    return result


# --- timeline -----------------------------------------------------------------------------


def _fixed_step(freq: str | pd.Timedelta | _dt.timedelta, function: str) -> pd.Timedelta:
    try:
        step = pd.Timedelta(freq)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{function}() takes freq= as a fixed duration such as '1s', '10s', '1min' or '1h', "
            f"not {freq!r}."
        ) from exc
    if pd.isna(step) or step <= pd.Timedelta(0):
        raise InputError(f"{function}() needs a positive freq= such as '1s', not {freq!r}.")
    return step


def _attempt_times(attempts: pd.DataFrame, function: str) -> pd.Series:
    present = [c for c in ("finished_at", "started_at") if c in attempts.columns]
    if not present:
        _require(attempts, ["finished_at"], name="attempts", function=function)
    times = pd.to_datetime(attempts[present[0]], utc=True, errors="coerce")
    for column in present[1:]:
        times = times.fillna(pd.to_datetime(attempts[column], utc=True, errors="coerce"))
    return times


def timeline(
    attempts: pd.DataFrame, /, *, freq: str | pd.Timedelta | _dt.timedelta = "1s"
) -> pd.DataFrame:
    """Attempts per time bin: throughput, status and retries over the campaign.

    Each attempt is placed in the bin of its ``finished_at`` (``started_at`` when it has none).
    The index holds the start of every bin from the first to the last (empty bins included, UTC).
    Columns: ``attempts`` (ended in the bin), ``per_second`` (attempts / bin length),
    ``retries`` (of them, attempts number 2 or later), one column per attempt status (``sent``,
    ``deferred``, ``failed``, ``unknown``, ...: attempts of the bin that ended so), and
    ``recipients_<status>``: how many recipients had that as their latest status at the end of the
    bin (a recipient deferred then sent moves from ``recipients_deferred`` to
    ``recipients_sent``). Attempts with no time at all cannot be placed; their number is in
    ``result.attrs["untimed_attempts"]``.

    Example:
        >>> from smtpkit.outcomes import attempts_frame
        >>> frame = attempts_frame([
        ...     {"recipient": "a@x.com", "attempt": 1, "status": "deferred", "finished_at": 0.2},
        ...     {"recipient": "a@x.com", "attempt": 2, "status": "sent", "finished_at": 2.5},
        ... ])
        >>> result = timeline(frame)
        >>> result["attempts"].tolist(), result["retries"].tolist()
        ([1, 0, 1], [0, 0, 1])
        >>> result["recipients_deferred"].tolist(), result["recipients_sent"].tolist()
        ([1, 1, 0], [0, 0, 1])
    """
    _check_frame(attempts, "attempts", "timeline")
    _require(attempts, ["recipient", "status"], name="attempts", function="timeline")
    step = _fixed_step(freq, "timeline")
    times = _attempt_times(attempts, "timeline")
    timed = times.notna().to_numpy()
    status = _status_labels(attempts)
    order = _status_order(status[timed].unique(), ATTEMPT_STATUSES)
    columns = ["attempts", "per_second", "retries", *order, *(f"recipients_{s}" for s in order)]
    if not timed.any():
        empty = pd.DataFrame({c: pd.Series(dtype="int64") for c in columns})
        empty["per_second"] = empty["per_second"].astype(float)
        empty.index = pd.DatetimeIndex([], tz="UTC", name="time")
        empty.attrs["untimed_attempts"] = len(attempts)
        return empty

    if "attempt" in attempts.columns:
        number = pd.to_numeric(attempts["attempt"], errors="coerce").astype("Float64").fillna(1)
    else:
        number = pd.Series(1.0, index=attempts.index)
    pick = np.flatnonzero(timed)
    data = pd.DataFrame(
        {
            "recipient": _labels(attempts["recipient"]).iloc[pick].to_numpy(),
            "attempt": number.iloc[pick].to_numpy(dtype=float),
            "status": status.iloc[pick].to_numpy(),
            "time": times.iloc[pick].reset_index(drop=True),
        }
    )
    data["bin"] = data["time"].dt.floor(step)
    first, last = data["bin"].min(), data["bin"].max()
    n_bins = int((last - first) / step) + 1
    if n_bins > MAX_TIMELINE_BINS:
        raise InputError(
            f"timeline() would need {n_bins:,} bins of {freq!r} to cover the attempts from "
            f"{first} to {last}; pass a coarser freq= such as '1min' or '1h'."
        )
    bins = pd.date_range(first, periods=n_bins, freq=step, name="time")

    def per_bin(keys: pd.Series, values: pd.Series) -> pd.DataFrame:
        if keys.empty:
            return pd.DataFrame(0, index=bins, columns=order, dtype="int64")
        table = (
            pd.DataFrame({"bin": keys.to_numpy(), "status": values.to_numpy()})
            .groupby(["bin", "status"])
            .size()
            .unstack(fill_value=0)
        )
        return table.reindex(index=bins, columns=order, fill_value=0).astype("int64")

    by_status = per_bin(data["bin"], data["status"])
    retries = (data["attempt"] > 1).groupby(data["bin"]).sum().reindex(bins, fill_value=0)

    # A recipient's latest status changes at each of its attempts: +1 for the new status, -1 for
    # the one it leaves; the running sum over bins is the number of recipients in each status.
    data = data.sort_values(["time", "attempt"], kind="stable")
    previous = data.groupby("recipient", sort=False)["status"].shift()
    left = previous.notna()
    moves = per_bin(data["bin"], data["status"]) - per_bin(
        data.loc[left, "bin"], previous[left].astype(object)
    )
    current = moves.cumsum()
    current.columns = [f"recipients_{s}" for s in order]

    result = pd.concat([by_status, current], axis=1)
    result.insert(0, "attempts", by_status.sum(axis=1).astype("int64"))
    result.insert(1, "per_second", result["attempts"] / step.total_seconds())
    result.insert(2, "retries", retries.astype("int64").to_numpy())
    result.index.name = "time"
    result.attrs["untimed_attempts"] = int((~timed).sum())
    return result[columns]


# --- codes --------------------------------------------------------------------------------

# Plain-language meanings, written for analysts, after RFC 5321 section 4.2 (reply codes) and
# RFC 3463 with the IANA "Enumerated Status Codes" registry (RFC 4954, 5248, 6531, 7372, 7505,
# 8689) for the enhanced codes.
_REPLY_MEANINGS: dict[int, str] = {
    211: "system status or help reply",
    214: "help message",
    220: "server ready",
    221: "server closing the connection",
    235: "authentication succeeded",
    250: "accepted",
    251: "accepted; the recipient is not local and the message will be forwarded",
    252: "the server cannot verify the recipient but will accept the message",
    334: "authentication challenge",
    354: "ready for the message data",
    421: "the server is not available right now and is closing the connection (often throttling)",
    432: "a password transition is needed",
    450: "the mailbox is unavailable right now (busy, greylisting or a temporary block)",
    451: "the server had a local error while processing; try again later",
    452: "the server is out of storage or the recipient limit was reached; try again later",
    454: "temporary authentication or TLS failure",
    455: "the server cannot handle the parameters right now",
    500: "command not recognized (syntax error)",
    501: "syntax error in the command's arguments",
    502: "command not implemented",
    503: "commands sent in the wrong order",
    504: "command parameter not implemented",
    521: "this host never accepts mail",
    523: "the message is larger than the server accepts",
    530: "authentication is required",
    534: "the authentication mechanism is too weak",
    535: "the username or password was rejected",
    538: "encryption is required for this authentication mechanism",
    550: "the mailbox is unavailable (does not exist, no access, or refused by policy)",
    551: "the recipient is not local to this server",
    552: "the mailbox or the message exceeds a storage limit",
    553: "the mailbox name is not allowed (bad address syntax)",
    554: "transaction failed (often refused as spam or by policy)",
    555: "the MAIL or RCPT parameters were not recognized",
    556: "the recipient's domain does not accept mail",
}

_CLASS_MEANINGS: dict[str, str] = {
    "2": "success",
    "4": "temporary failure",
    "5": "permanent failure",
}

_SUBJECT_MEANINGS: dict[str, str] = {
    "0": "other or undefined status",
    "1": "a problem with an address",
    "2": "a problem with the recipient's mailbox",
    "3": "a problem with the receiving mail system",
    "4": "a network or routing problem",
    "5": "an SMTP protocol problem",
    "6": "a problem with the message content or its encoding",
    "7": "refused by security or policy",
}

_DETAIL_MEANINGS: dict[str, str] = {
    "0.0": "no further detail given",
    "1.0": "a problem with an address",
    "1.1": "the mailbox does not exist (user unknown)",
    "1.2": "the recipient's domain or mail host does not exist",
    "1.3": "the recipient address is malformed",
    "1.4": "the recipient address is ambiguous",
    "1.5": "the recipient address is valid",
    "1.6": "the mailbox has moved and has no forwarding address",
    "1.7": "the sender address is malformed",
    "1.8": "the sender's domain is not valid",
    "1.9": "the message was relayed to a non-compliant mailer",
    "1.10": "the recipient's domain accepts no mail (null MX)",
    "2.0": "a problem with the recipient's mailbox",
    "2.1": "the mailbox is disabled and not accepting messages",
    "2.2": "the mailbox is full",
    "2.3": "the message is larger than the mailbox accepts",
    "2.4": "a mailing list expansion problem",
    "3.0": "a problem with the receiving mail system",
    "3.1": "the receiving mail system is out of storage",
    "3.2": "the receiving system is not accepting messages now",
    "3.3": "the receiving system lacks a feature the message needs",
    "3.4": "the message is too big for the receiving system",
    "3.5": "the receiving system is misconfigured",
    "3.6": "the requested priority was changed",
    "4.0": "a network or routing problem",
    "4.1": "the destination host did not answer",
    "4.2": "the connection was dropped or is bad",
    "4.3": "a DNS or directory lookup failed",
    "4.4": "no route to the destination",
    "4.5": "the mail system is congested",
    "4.6": "a routing loop was detected",
    "4.7": "the delivery time expired",
    "5.0": "an SMTP protocol problem",
    "5.1": "an invalid command",
    "5.2": "a syntax error",
    "5.3": "too many recipients in one message",
    "5.4": "invalid command arguments",
    "5.5": "wrong protocol version",
    "5.6": "an authentication exchange line was too long",
    "6.0": "a problem with the message content",
    "6.1": "the message's media type is not supported",
    "6.2": "a conversion was required but is prohibited",
    "6.3": "a conversion was required but is not supported",
    "6.4": "the message was converted with loss",
    "6.5": "a conversion failed",
    "6.6": "the message content is not available",
    "6.7": "non-ASCII addresses are not accepted (no SMTPUTF8)",
    "6.8": "a UTF-8 reply is required",
    "6.9": "a UTF-8 header cannot be passed on",
    "6.10": "a UTF-8 reply is required",
    "7.0": "refused by security or policy",
    "7.1": "delivery not authorized; the message was refused (often blocked or spam)",
    "7.2": "mailing list expansion is prohibited",
    "7.3": "a security conversion is required but not possible",
    "7.4": "the security features are not supported",
    "7.5": "a cryptographic check failed",
    "7.6": "the cryptographic algorithm is not supported",
    "7.7": "the message integrity check failed",
    "7.8": "the username or password was rejected",
    "7.9": "the authentication mechanism is too weak",
    "7.10": "encryption is needed",
    "7.11": "encryption is required for the authentication mechanism",
    "7.12": "a password transition is needed",
    "7.13": "the user account is disabled",
    "7.14": "a trust relationship is required",
    "7.15": "the priority level is too low",
    "7.16": "the message is too big for its priority",
    "7.17": "the mailbox owner has changed",
    "7.18": "the domain owner has changed",
    "7.19": "the RRVS check could not be completed",
    "7.20": "no passing DKIM signature was found",
    "7.21": "no acceptable DKIM signature was found",
    "7.22": "no valid DKIM signature matching the author was found",
    "7.23": "the SPF check failed",
    "7.24": "the SPF check could not be completed",
    "7.25": "the reverse DNS check failed",
    "7.26": "several authentication checks failed",
    "7.27": "the sender's domain accepts no mail (null MX)",
    "7.28": "a flood of mail was detected from this sender",
    "7.29": "the ARC validation failed",
    "7.30": "REQUIRETLS is required but not supported",
}

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})")


def code_meaning(reply_code: int | None, enhanced: str | None = None, /) -> tuple[str, str]:
    """The category and plain-language meaning of an SMTP reply code and enhanced status code.

    The enhanced code (RFC 3463) is more precise and wins when it is known; otherwise the reply
    code (RFC 5321) is explained.

    Example:
        >>> code_meaning(550, "5.1.1")
        ('permanent failure', 'the mailbox does not exist (user unknown)')
        >>> code_meaning(421)[0]
        'temporary failure'
    """
    code = None if reply_code is None or pd.isna(reply_code) else int(reply_code)
    match = _ENHANCED.fullmatch(str(enhanced).strip()) if isinstance(enhanced, str) else None
    first = match.group(1) if match else str(code)[0] if code is not None else None
    category = _CLASS_MEANINGS.get(first or "", "no reply" if code is None else "other")
    reply_meaning = _REPLY_MEANINGS.get(code) if code is not None else None
    if match:
        subject, detail = str(int(match.group(2))), str(int(match.group(3)))
        meaning = _DETAIL_MEANINGS.get(f"{subject}.{detail}")
        if meaning is None or detail == "0":
            # X.Y.0 only names the area: the reply code says more, so both are shown.
            generic = _SUBJECT_MEANINGS.get(subject) if subject != "0" else None
            parts = [m for m in (generic, reply_meaning) if m]
            meaning = "; ".join(parts) if parts else meaning
        if meaning is not None:
            return category, meaning
    if code is not None:
        if reply_meaning is not None:
            return category, reply_meaning
        return category, f"reply code {code} is not a standard one"
    return "no reply", "no SMTP reply: the connection failed or nothing was sent (see reason)"


def codes(outcomes: pd.DataFrame, /) -> pd.DataFrame:
    """The distribution of SMTP reply codes and enhanced status codes, with their meaning.

    One row per (``smtp_code``, ``smtp_status``) pair, most frequent first; rows without any
    reply (connection refused, skipped ...) are one group. Columns: ``smtp_code``,
    ``smtp_status``, ``count``, ``share``, ``category`` (success / temporary failure / permanent
    failure / no reply), ``meaning``, ``statuses`` (the outcome statuses of those rows) and
    ``example`` (the most frequent server message, shortened).

    Example:
        >>> from smtpkit.outcomes import outcomes_frame
        >>> frame = outcomes_frame([
        ...     {"recipient": "a@x.com", "status": "failed", "smtp_code": 550},
        ...     {"recipient": "b@x.com", "status": "sent", "smtp_code": 250},
        ...     {"recipient": "c@x.com", "status": "failed", "smtp_code": 550},
        ... ])
        >>> top = codes(frame).iloc[0]
        >>> int(top["smtp_code"]), int(top["count"]), top["meaning"]
        (550, 2, 'the mailbox is unavailable (does not exist, no access, or refused by policy)')
    """
    _check_frame(outcomes, "outcomes", "codes")
    _require(outcomes, ["smtp_code", "status"], name="outcomes", function="codes")
    reply = pd.to_numeric(outcomes["smtp_code"], errors="coerce").astype("Int64")
    if "smtp_status" in outcomes.columns:
        enhanced = outcomes["smtp_status"].astype("string").str.strip()
    else:
        enhanced = pd.Series(pd.NA, index=outcomes.index, dtype="string")
    enhanced = enhanced.mask(enhanced == "")
    if "smtp_message" in outcomes.columns:
        message = outcomes["smtp_message"].astype("string")
    else:
        message = pd.Series(pd.NA, index=outcomes.index, dtype="string")
    data = pd.DataFrame(
        {
            "smtp_code": reply.to_numpy(),
            "smtp_status": enhanced.to_numpy(),
            "status": _status_labels(outcomes).to_numpy(),
            "message": message.to_numpy(),
        }
    )
    columns = ["smtp_code", "smtp_status", "count", "share", "category", "meaning", "statuses",
               "example"]
    if data.empty:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        empty["smtp_code"] = empty["smtp_code"].astype("Int64")
        empty["count"] = empty["count"].astype("int64")
        empty["share"] = empty["share"].astype(float)
        return empty
    rows = []
    total = len(data)
    for key, group in data.groupby(["smtp_code", "smtp_status"], dropna=False):
        code, status_code = cast(tuple[Any, Any], key)
        code_value = None if pd.isna(code) else int(code)
        status_value = None if pd.isna(status_code) else str(status_code)
        category, meaning = code_meaning(code_value, status_value)
        seen = set(group["status"])
        messages = group["message"].dropna()
        example = _shorten(str(messages.value_counts().index[0])) if len(messages) else ""
        rows.append(
            {
                "smtp_code": code_value,
                "smtp_status": status_value,
                "count": len(group),
                "share": len(group) / total,
                "category": category,
                "meaning": meaning,
                "statuses": ", ".join(s for s in _status_order(seen) if s in seen),
                "example": example,
            }
        )
    result = pd.DataFrame(rows, columns=columns)
    result["smtp_code"] = result["smtp_code"].astype("Int64")
    result["smtp_status"] = result["smtp_status"].astype("string")
    result["count"] = result["count"].astype("int64")
    result = result.sort_values(
        ["count", "smtp_code", "smtp_status"], ascending=[False, True, True], na_position="last",
        kind="stable",
    )
    return result.reset_index(drop=True)


def _shorten(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- bounce reasons -------------------------------------------------------------------------

#: The bounce categories of :func:`bounce_reasons`, in display order.
BOUNCE_CATEGORIES: tuple[str, ...] = (
    "hard bounce",
    "soft bounce",
    "delay",
    "complaint",
    "unparsed",
)
# Kinds that are not a delivery problem: left out of the bounce reasons.
_HARMLESS_KINDS = frozenset({"auto_reply", "delivered"})


def _bounce_rows(frame: pd.DataFrame, function: str) -> pd.DataFrame:
    """``reason`` and ``category`` of every bounce-like row of a bounces or outcome frame."""
    frame = frame.reset_index(drop=True)  # the masks below must not align on a duplicate index
    if "bounce_kind" in frame.columns:  # an outcome frame after apply_bounces
        kind, reason = frame["bounce_kind"], frame.get("bounce_reason")
        status = frame.get("bounce_status")
    elif "kind" in frame.columns:  # a frame of smtpkit.read_bounces
        kind, reason, status = frame["kind"], frame.get("reason"), frame.get("status")
    else:
        have = ", ".join(map(str, frame.columns)) or "no columns at all"
        raise MissingColumnError(
            f"{function}() needs a frame of smtpkit.read_bounces (with a 'kind' column) or an "
            f"outcome frame returned by smtpkit.apply_bounces (with 'bounce_kind'); this one has: "
            f"{have}."
        )
    kinds = kind.astype("string").str.strip().str.lower()
    keep = (kinds.notna() & ~kinds.isin(list(_HARMLESS_KINDS))).to_numpy()
    kinds = kinds[keep].astype(object)
    if "hard" in frame.columns:
        hard = frame["hard"].astype("boolean")[keep]
    else:
        hard = pd.Series(pd.NA, index=kinds.index, dtype="boolean")
    if status is not None:
        permanent = status.astype("string").str.strip().str.startswith("5")[keep]
        hard = hard.fillna(permanent)
    category = kinds.copy()
    is_bounce = (kinds == "bounce").to_numpy()
    hard_flags = hard.fillna(False).astype(bool).to_numpy()
    category[is_bounce & hard_flags] = "hard bounce"
    category[is_bounce & ~hard_flags] = "soft bounce"
    if reason is None:
        reasons = pd.Series(NONE_LABEL, index=kinds.index, dtype=object)
    else:
        reasons = _labels(reason[keep])
    return pd.DataFrame({"reason": reasons.to_numpy(), "category": category.to_numpy()})


def bounce_reasons(bounces: pd.DataFrame, /, *, top: int | None = None) -> pd.DataFrame:
    """Bounces and complaints counted per reason, split by category.

    Takes a frame of ``smtpkit.read_bounces`` (``kind``, ``reason``, ``hard``, ``status``) or an
    outcome frame that went through ``smtpkit.apply_bounces`` (``bounce_kind``,
    ``bounce_reason``, ``hard``). Categories (columns, after ``total``): ``hard bounce`` (kind
    bounce and ``hard``; without a ``hard`` value a 5.x.x status counts as hard), ``soft bounce``,
    ``delay``, ``complaint``, ``unparsed``, then any other kind. Auto-replies and delivery
    notices are not problems and are left out. One row per reason, most frequent first; ``top``
    pools the rarer reasons into ``"(K others)"``.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"kind": ["bounce", "bounce", "complaint", "auto_reply"],
        ...                       "reason": ["user_unknown", "mailbox_full", "abuse", None],
        ...                       "hard": [True, False, True, False]})
        >>> bounce_reasons(frame)["total"].to_dict()
        {'abuse': 1, 'mailbox_full': 1, 'user_unknown': 1}
    """
    _check_frame(bounces, "bounces", "bounce_reasons")
    rows = _bounce_rows(bounces, "bounce_reasons")
    present = set(rows["category"])
    order = [*BOUNCE_CATEGORIES, *sorted(present - set(BOUNCE_CATEGORIES))]
    order = [c for c in order if c in present]
    if rows.empty:
        empty = pd.DataFrame({"total": pd.Series(dtype="int64")})
        empty.index = pd.Index([], name="reason", dtype=object)
        return empty
    if top is not None:
        rows["reason"] = group_labels(rows, "reason", top=top, function="bounce_reasons").to_numpy()
    table = rows.groupby(["reason", "category"]).size().unstack(fill_value=0)
    table = table.reindex(columns=order, fill_value=0).astype("int64")
    table.columns.name = None
    total = table.sum(axis=1).astype("int64")
    table.insert(0, "total", total)
    table = table.reindex(_group_order(table.index, total.to_dict()))
    table.index.name = "reason"
    return table


# --- the HTML report ------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;margin:0;
 background:#f6f6f4}
main{max-width:1100px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:19px;margin:34px 0 8px;border-bottom:1px solid
 #ddd;padding-bottom:4px}p.meta{color:#666;margin:0 0 18px;font-size:13px}
p.note{color:#555;font-size:14px;margin:6px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0 4px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:21px}.card span{color:#555;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 14px}
th,td{border-bottom:1px solid #e4e4e4;padding:4px 10px;text-align:right;vertical-align:top}
th{background:#f3f3f1}td.text,th.text{text-align:left}
img{max-width:100%;height:auto;display:block;margin:6px 0}
"""


def _figure_png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(_figure_title(figure))}" src="data:image/png;base64,{encoded}">'


def _figure_title(figure: Figure) -> str:
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    return titles[0].replace("\\$", "$") if titles else "chart"


def _chart(draw: Callable[[Any], Any], *, height: float = 4.2) -> str:
    """Draw on a fresh Figure (not pyplot: nothing global, nothing shown) and embed it."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, height), layout="constrained")
    draw(figure.add_subplot())
    return _figure_png(figure)


def _format_cell(column: str, value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if column in {"rate", "share", "conversion"} or column.endswith("_rate"):
        return f"{float(value):.1%}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):,.1f}" if column.endswith("_ms") else f"{float(value):,.2f}"
    return str(value)


def _table(frame: pd.DataFrame, *, index: bool = True) -> str:
    """An escaped HTML table with thousands separators and percentages."""
    head = []
    if index:
        head.append(f'<th class="text">{html.escape(str(frame.index.name or ""))}</th>')
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        css = "" if numeric else ' class="text"'
        head.append(f"<th{css}>{html.escape(str(column))}</th>")
    body = []
    for label, row in zip(frame.index, frame.itertuples(index=False, name=None), strict=True):
        cells = []
        if index:
            cells.append(f'<th class="text">{html.escape(str(label))}</th>')
        for column, value in zip(frame.columns, row, strict=True):
            numeric = pd.api.types.is_numeric_dtype(frame[column])
            css = "" if numeric else ' class="text"'
            cells.append(f"<td{css}>{html.escape(_format_cell(str(column), value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f"<table><thead><tr>{''.join(head)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _cards(items: Sequence[tuple[str, str]]) -> str:
    cards = "".join(
        f'<div class="card"><b>{html.escape(value)}</b><span>{html.escape(label)}</span></div>'
        for label, value in items
    )
    return f'<div class="cards">{cards}</div>'


def _period(outcomes: pd.DataFrame, attempts: pd.DataFrame | None) -> str:
    times: list[pd.Series] = []
    for frame, columns in ((outcomes, ("first_attempt_at", "last_attempt_at")),
                           (attempts, ("started_at", "finished_at"))):
        if frame is None:
            continue
        for column in columns:
            if column in frame.columns:
                times.append(pd.to_datetime(frame[column], utc=True, errors="coerce"))
    if not times:
        return ""
    joined = pd.concat(times).dropna()
    if joined.empty:
        return ""
    start, end = joined.min(), joined.max()
    return (
        f"Attempts from {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC "
        f"({(end - start).total_seconds():,.1f} s)."
    )


def _failure_reasons(outcomes: pd.DataFrame) -> pd.DataFrame:
    if "reason" not in outcomes.columns:
        return pd.DataFrame()
    status = _status_labels(outcomes)
    not_sent = ~status.isin(["sent"])
    if not not_sent.any():
        return pd.DataFrame()
    frame = pd.DataFrame(
        {"status": status[not_sent].to_numpy(), "reason": _labels(outcomes["reason"])[not_sent]}
    )
    table = frame.groupby(["status", "reason"]).size().rename("count").reset_index()
    table["share"] = table["count"] / len(outcomes)
    order = {s: i for i, s in enumerate(_status_order(set(table["status"])))}
    table = table.sort_values(
        ["status", "count"], key=lambda c: c.map(order) if c.name == "status" else -c,
        kind="stable",
    )
    return table.set_index("status")


def report_html(
    cleaned: pd.DataFrame | None,
    outcomes: pd.DataFrame,
    /,
    *,
    attempts: pd.DataFrame | None = None,
    bounces: pd.DataFrame | None = None,
    path: str | Path | None = None,
    title: str = "Campaign report",
    top: int = 12,
) -> str:
    """A self-contained HTML report of a campaign: key figures, tables and charts.

    Everything is in the one string: charts are PNG images embedded as ``data:`` URIs, styles are
    inline, nothing is loaded from elsewhere, and every value from the data is HTML-escaped.
    ``cleaned`` (the frame of ``smtpkit.clean``) may be ``None`` when only the journal is at hand;
    ``attempts`` adds the timeline, ``bounces`` (from ``smtpkit.read_bounces``) the bounce
    reasons (an outcome frame that went through ``apply_bounces`` is used otherwise). ``top``
    limits the per-domain tables and charts. With ``path`` the page is also written there
    (UTF-8; missing folders are created). Returns the HTML.

    Example:
        >>> from smtpkit.outcomes import outcomes_frame
        >>> page = report_html(None, outcomes_frame([{"recipient": "a@x.com", "status": "sent"}]))
        >>> page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
        True
    """
    from . import plot

    _check_frame(outcomes, "outcomes", "report_html")
    _require(outcomes, ["recipient", "status"], name="outcomes", function="report_html")
    if cleaned is not None:
        _check_frame(cleaned, "cleaned", "report_html")
    if attempts is not None:
        _check_frame(attempts, "attempts", "report_html")
    if bounces is not None:
        _check_frame(bounces, "bounces", "report_html")

    stages = funnel(cleaned, outcomes)
    status = summarize(outcomes)
    total = len(outcomes)
    sent = int(cast(Any, stages.loc["sent", "count"]))
    parts: list[str] = []
    parts.append(f"<h1>{html.escape(title)}</h1>")
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(
        f'<p class="meta">Generated by smtpkit on {generated}. '
        f"{html.escape(_period(outcomes, attempts))}</p>"
    )
    cards = [("recipients", f"{total:,}")]
    if cleaned is not None:
        cards.insert(0, ("contacts", f"{len(cleaned):,}"))
    cards += [
        ("sent (250)", f"{sent:,}"),
        ("delivered", _percent(stages.loc["delivered", "count"], total)),
        ("bounced", _percent(status.loc["bounced", "count"], total)),
        ("complained", _percent(status.loc["complained", "count"], total)),
        ("failed", _percent(status.loc["failed", "count"], total)),
        ("deferred", _percent(status.loc["deferred", "count"], total)),
        ("unknown", _percent(status.loc["unknown", "count"], total)),
    ]
    parts.append(_cards(cards))
    parts.append(
        _note(
            "Percentages are of all recipients. 'Sent' means the server answered 250; "
            "'delivered' is sent minus bounced; 'unknown' means the connection broke after the "
            "message was transmitted, so it may have arrived and is never re-sent automatically."
        )
    )

    parts.append("<h2>Funnel</h2>")
    parts.append(_chart(lambda ax: plot.plot_funnel(stages, ax=ax), height=3.6))
    parts.append(_table(stages))

    parts.append("<h2>Outcomes</h2>")
    parts.append(_table(status))
    if "segment" in outcomes.columns and outcomes["segment"].notna().any():
        by_segment = summarize(outcomes, by="segment", top=top)
        parts.append("<h3>By segment</h3>")
        parts.append(_chart(lambda ax: plot.plot_outcomes(outcomes, by="segment", top=top, ax=ax),
                            height=max(2.6, 0.45 * len(by_segment) + 1.6)))
        parts.append(_table(_compact_summary(by_segment)))
    by_domain = summarize(outcomes, by="domain", top=top)
    parts.append("<h3>By domain</h3>")
    if total:
        parts.append(_chart(lambda ax: plot.plot_outcomes(outcomes, by="domain", top=top, ax=ax),
                            height=max(2.6, 0.45 * len(by_domain) + 1.6)))
    parts.append(_table(_compact_summary(by_domain)))
    reasons = _failure_reasons(outcomes)
    if not reasons.empty:
        parts.append("<h3>Reasons for rows that were not sent</h3>")
        parts.append(_table(reasons))

    parts.append("<h2>Latency</h2>")
    if "latency_ms" in outcomes.columns:
        per_domain = latency(outcomes, by="domain", top=top)
        if per_domain.empty:
            parts.append(_note("No latency was measured for any recipient."))
        else:
            overall = latency(outcomes, by=None)
            parts.append(_chart(lambda ax: plot.plot_latency(outcomes, top=min(top, 10), ax=ax),
                                height=max(3.0, 0.45 * min(top, 10, len(per_domain)) + 1.8)))
            parts.append(_table(pd.concat([overall, per_domain])))
    else:
        parts.append(_note("The outcome frame has no latency_ms column."))

    parts.append("<h2>Timeline</h2>")
    if attempts is None:
        parts.append(_note("No attempts were given (pass attempts=smtpkit.attempts(journal, "
                           "campaign) for the timeline)."))
    else:
        parts.append(_chart(lambda ax: plot.plot_timeline(attempts, ax=ax), height=4.4))
        retried = _retried_recipients(attempts)
        parts.append(_note(f"{len(attempts):,} SMTP attempts; {retried:,} recipients needed more "
                           "than one attempt."))

    parts.append("<h2>SMTP reply codes</h2>")
    if "smtp_code" in outcomes.columns:
        parts.append(_table(codes(outcomes), index=False))
    else:
        parts.append(_note("The outcome frame has no smtp_code column."))

    parts.append("<h2>Bounces and complaints</h2>")
    bounce_source = bounces if bounces is not None else outcomes
    if bounces is None and "bounce_kind" not in outcomes.columns:
        parts.append(_note("No bounces were given (pass bounces=smtpkit.read_bounces(...), or an "
                           "outcome frame that went through smtpkit.apply_bounces)."))
    elif (bounce_table := bounce_reasons(bounce_source, top=top)).empty:
        parts.append(_note("No bounce or complaint has been recorded for this campaign (yet)."))
    else:
        parts.append(_chart(
            lambda ax: plot.plot_bounce_reasons(bounce_source, top=min(top, 10), ax=ax),
            height=max(2.6, 0.45 * min(len(bounce_table), 11) + 1.6),
        ))
        parts.append(_table(bounce_table))

    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )
    if path is not None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
    return page


def _percent(count: Any, total: int) -> str:
    return f"{int(count) / total:.1%}" if total else "—"


def _compact_summary(table: pd.DataFrame) -> pd.DataFrame:
    """A by-group summary without its rate columns and without statuses that never occur."""
    counts = [c for c in table.columns if c != "total" and not str(c).endswith("_rate")]
    compact = table[["total", *[c for c in counts if table[c].any()]]].copy()
    compact["sent_rate"] = table["sent_rate"]
    return compact


def _retried_recipients(attempts: pd.DataFrame) -> int:
    if "attempt" not in attempts.columns or "recipient" not in attempts.columns:
        return 0
    number = pd.to_numeric(attempts["attempt"], errors="coerce")
    return int(attempts.loc[number > 1, "recipient"].nunique())
