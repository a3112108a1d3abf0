"""Charts of a campaign with matplotlib; each draws on ``ax=`` (or a new figure) and returns it.

``plot_funnel(funnel(cleaned, outcomes))``, ``plot_outcomes(outcomes, by="segment")`` (stacked bars
per segment or domain), ``plot_latency(outcomes)`` (box or violin per domain),
``plot_timeline(attempts)`` (recipients by status and attempts per second over time, retries
dashed), ``plot_bounce_reasons(bounces)``, and ``dashboard(cleaned, outcomes)``, one figure with
the lot. None of them calls ``plt.show()``; in a notebook the figure appears on its own.

Conventions kept by every chart: a title and axis labels, thousands separators on counts, the
same colour for a status everywhere (:data:`STATUS_COLORS`; ``failed`` is always vermillion),
the largest groups first with the rest pooled into ``"(K others)"`` (``top=``), and a size that
reads well at notebook width (about 10 inches). Labels the default font cannot draw (such as a
Japanese domain name) are shown in their ASCII form (punycode), and ``$`` is shown literally.

Example:
    >>> from matplotlib.figure import Figure
    >>> from smtpkit.outcomes import outcomes_frame
    >>> from smtpkit.plot import plot_outcomes
    >>> frame = outcomes_frame([{"recipient": "a@x.com", "status": "sent", "segment": "A"}])
    >>> ax = plot_outcomes(frame, by="segment", ax=Figure().add_subplot())
    >>> ax.get_title()
    'Outcomes by segment'
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd

from . import report
from .errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "BOUNCE_COLORS",
    "STATUS_COLORS",
    "dashboard",
    "plot_bounce_reasons",
    "plot_funnel",
    "plot_latency",
    "plot_outcomes",
    "plot_timeline",
]

#: The one colour of each status, in every chart (Okabe–Ito based, readable with colour blindness).
STATUS_COLORS: Mapping[str, str] = MappingProxyType(
    {
        "sent": "#009e73",
        "deferred": "#e69f00",
        "failed": "#d55e00",
        "unknown": "#56b4e9",
        "skipped": "#bbbbbb",
        "bounced": "#8c2d04",
        "complained": "#cc79a7",
    }
)
#: Colour of a status value smtpkit does not know (shown, never dropped).
OTHER_COLOR = "#666666"
#: Colours of the bounce categories of ``report.bounce_reasons``, matching the statuses.
BOUNCE_COLORS: Mapping[str, str] = MappingProxyType(
    {
        "hard bounce": STATUS_COLORS["bounced"],
        "soft bounce": "#d9a27e",
        "delay": STATUS_COLORS["deferred"],
        "complaint": STATUS_COLORS["complained"],
        "unparsed": STATUS_COLORS["skipped"],
    }
)
_FUNNEL_COLORS: Mapping[str, str] = MappingProxyType(
    {
        "contacts": "#c6dbef",
        "recipients": "#c6dbef",
        "valid": "#9ecae1",
        "unique": "#6baed6",
        "attempted": "#6baed6",
        "sendable": "#3182bd",
        "sent": STATUS_COLORS["sent"],
        "delivered": "#00664a",
        "bounced": STATUS_COLORS["bounced"],
        "complained": STATUS_COLORS["complained"],
    }
)
_LATENCY_COLOR = "#9ecae1"
_INK = "#222222"
#: Width of a chart at notebook width, in inches.
WIDTH = 10.0
#: Width of the dashboard, in inches (two charts side by side).
DASHBOARD_WIDTH = 12.0

# Bin lengths plot_timeline picks from when freq is not given: the shortest with <= _MAX_BINS bins.
_AUTO_FREQS = ("1s", "2s", "5s", "10s", "15s", "30s", "1min", "2min", "5min", "10min", "15min",
               "30min", "1h", "2h", "3h", "6h", "12h", "1D")
_MAX_BINS = 150


# --- helpers ----------------------------------------------------------------------------------


def status_color(status: str, /) -> str:
    """The colour of a status in every chart (grey for a status smtpkit does not know)."""
    return STATUS_COLORS.get(status, OTHER_COLOR)


def _axes(ax: Axes | None, height: float) -> Axes:
    """The caller's Axes, or one on a new pyplot figure (so a notebook shows it by itself)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=(WIDTH, height), layout="constrained")
    return new


def _height(rows: int, *, base: float = 1.6, per_row: float = 0.42, least: float = 2.6) -> float:
    return max(least, base + per_row * rows)


def _style(ax: Axes, *, grid: Literal["x", "y", "both"] = "x") -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis=grid, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)


def _thousands(axis: Any, *, integer: bool = True) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    if integer:
        axis.set_major_locator(MaxNLocator(nbins="auto", integer=True, steps=[1, 2, 2.5, 5, 10]))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, _text(message), ha="center", va="center", transform=ax.transAxes,
            color="#666666", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


@functools.cache
def _drawable(font_path: str) -> frozenset[int]:
    from matplotlib import ft2font

    return frozenset(ft2font.FT2Font(font_path).get_charmap())


def _font_codepoints() -> frozenset[int]:
    from matplotlib import font_manager

    return _drawable(font_manager.findfont(font_manager.FontProperties()))


def _text(label: object, *, domain: bool = False) -> str:
    """A label the default font can draw: punycode for such domains, escapes otherwise, and no
    mathtext (``$`` literal)."""
    text = str(label)
    drawable = _font_codepoints()
    if any(ord(ch) not in drawable or not ch.isprintable() for ch in text):
        if domain:
            parts = []
            for part in text.split("."):
                try:
                    part.encode("ascii")
                    parts.append(part)
                except UnicodeEncodeError:
                    parts.append("xn--" + part.encode("punycode").decode("ascii"))
            text = ".".join(parts)
        else:
            text = "".join(
                ch if ord(ch) in drawable and ch.isprintable() else ch.encode(
                    "unicode_escape").decode("ascii")
                for ch in text
            )
    return text.replace("$", r"\$")


def _legend_outside(
    ax: Axes,
    *,
    title: str | None = None,
    handles: Sequence[Any] | None = None,
    below: bool = False,
) -> None:
    """A legend beside the Axes (or below it, in columns), never over the data."""
    kwargs: dict[str, Any] = {"frameon": False, "title": title}
    if below:
        kwargs.update(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    else:
        kwargs.update(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if handles is not None:
        kwargs["handles"] = handles
    ax.legend(**kwargs)


def _orientation(method: Any) -> dict[str, Any]:
    """Horizontal boxes/violins: ``orientation=`` since matplotlib 3.10, ``vert=`` before."""
    if "orientation" in inspect.signature(method).parameters:
        return {"orientation": "horizontal"}
    return {"vert": False}  # pragma: no cover - matplotlib < 3.10


def _is_domain(by: str | None) -> bool:
    return by == "domain"


# --- funnel -----------------------------------------------------------------------------------


def plot_funnel(stages: pd.DataFrame, /, *, ax: Axes | None = None) -> Axes:
    """Horizontal bars of the funnel stages, each labelled with its count and share.

    ``stages`` is the frame of ``smtpkit.funnel(cleaned, outcomes)``.

    Example:
        >>> from matplotlib.figure import Figure
        >>> import smtpkit
        >>> from smtpkit.outcomes import outcomes_frame
        >>> sent = outcomes_frame([{"recipient": "a@x.com", "status": "sent"}])
        >>> plot_funnel(smtpkit.funnel(None, sent), ax=Figure().add_subplot()).get_xlabel()
        'recipients'
    """
    report._check_frame(stages, "stages", "plot_funnel")
    report._require(stages, ["count"], name="stages (the frame of smtpkit.funnel)",
                    function="plot_funnel")
    ax = _axes(ax, _height(len(stages)))
    names = [str(name) for name in stages.index]
    counts = pd.to_numeric(stages["count"], errors="coerce").fillna(0).astype("int64").to_numpy()
    ax.set_title("Funnel: from the contact list to the inbox")
    ax.set_xlabel(_text(names[0]) if names else "rows")
    ax.set_ylabel("stage")
    if not names:
        _no_data(ax, "no stages")
        return ax
    y = np.arange(len(names))
    bars = ax.barh(y, counts, color=[_FUNNEL_COLORS.get(n, _LATENCY_COLOR) for n in names])
    ax.set_yticks(y, [_text(n) for n in names])
    ax.invert_yaxis()
    first = int(counts[0])
    labels = [f"{c:,} ({c / first:.1%})" if first else f"{c:,}" for c in counts]
    ax.bar_label(bars, labels, padding=3, fontsize=9)
    ax.set_xlim(0, max(1, int(counts.max())) * 1.22)  # room for the labels
    _thousands(ax.xaxis)
    _style(ax)
    return ax


# --- outcomes ---------------------------------------------------------------------------------


def plot_outcomes(
    outcomes: pd.DataFrame,
    /,
    *,
    by: str = "segment",
    top: int | None = 10,
    normalize: bool = False,
    legend: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Stacked bars of the statuses per group (``by``: a column such as ``"segment"``, or
    ``"domain"``), largest group on top; ``top`` groups, the rest pooled; ``normalize`` shows
    shares instead of counts; ``legend=False`` leaves the status legend out (the dashboard draws
    one for all its charts).

    Example:
        >>> from matplotlib.figure import Figure
        >>> from smtpkit.outcomes import outcomes_frame
        >>> frame = outcomes_frame([{"recipient": "a@x.com", "status": "failed"}])
        >>> ax = plot_outcomes(frame, by="domain", ax=Figure().add_subplot())
        >>> [c.get_label() for c in ax.containers]
        ['failed']
    """
    table = report.summarize(outcomes, by=by, top=top)
    ax = _axes(ax, _height(len(table)))
    ax.set_title(_text(f"Outcomes by {by}" + (" (share)" if normalize else "")))
    ax.set_xlabel("share of recipients" if normalize else "recipients")
    ax.set_ylabel(_text(by))
    if table.empty:
        _no_data(ax, "no outcomes")
        return ax
    statuses = [c for c in table.columns if c != "total" and not str(c).endswith("_rate")]
    y = np.arange(len(table))
    total = table["total"].to_numpy(dtype=float)
    left = np.zeros(len(table))
    for status in statuses:
        counts = table[status].to_numpy(dtype=float)
        if not counts.any():
            continue
        values = counts / total if normalize else counts
        ax.barh(y, values, left=left, color=status_color(status), label=_text(status),
                edgecolor="white", linewidth=0.5)
        left += values
    ax.set_yticks(y, [_text(g, domain=_is_domain(by)) for g in table.index])
    ax.invert_yaxis()
    if normalize:
        from matplotlib.ticker import PercentFormatter

        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlim(0, 1)
    else:
        for row, value in enumerate(total):
            ax.text(value, row, f" {int(value):,}", va="center", fontsize=9, color=_INK)
        ax.set_xlim(0, max(1.0, float(total.max())) * 1.12)
        _thousands(ax.xaxis)
    if legend:
        _legend_outside(ax, title="status")
    _style(ax)
    return ax


# --- latency ----------------------------------------------------------------------------------


def plot_latency(
    outcomes: pd.DataFrame,
    /,
    *,
    by: str | None = "domain",
    top: int | None = 8,
    kind: Literal["box", "violin"] = "box",
    log: bool = False,
    ax: Axes | None = None,
) -> Axes:
    """Latency distribution per group (top ``top`` by number of measurements, the rest pooled).

    ``kind="box"``: box from p25 to p75 with the median, whiskers from p5 to p95, a diamond at
    p99. ``kind="violin"``: the density with the median and p5/p95 marks. ``log`` uses a
    logarithmic latency axis (useful when a few servers are far slower).

    Example:
        >>> from matplotlib.figure import Figure
        >>> from smtpkit.outcomes import outcomes_frame
        >>> frame = outcomes_frame([{"recipient": "a@x.com", "status": "sent", "latency_ms": 12.0}])
        >>> plot_latency(frame, ax=Figure().add_subplot()).get_xlabel()
        'latency (ms)'
    """
    if kind not in ("box", "violin"):
        raise InputError(f"plot_latency() takes kind='box' or kind='violin', not {kind!r}.")
    report._check_frame(outcomes, "outcomes", "plot_latency")
    report._require(outcomes, ["latency_ms"], name="outcomes", function="plot_latency")
    values = pd.to_numeric(outcomes["latency_ms"], errors="coerce").astype("Float64")
    measured = values.notna().to_numpy()
    subset = outcomes[measured]
    if by is None:
        groups = pd.Series("all", index=subset.index, dtype=object)
    else:
        report.group_labels(outcomes.iloc[:0], by, function="plot_latency")
        groups = report.group_labels(subset, by, top=top, function="plot_latency")
    ms = values[measured].astype(float).to_numpy()
    sizes = groups.value_counts().to_dict()
    order = report._group_order(sizes, sizes)
    ax = _axes(ax, _height(len(order), base=1.8))
    ax.set_title(_text(f"Latency per {by}" if by else "Latency"))
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel(_text(by or "all recipients"))
    if not order:
        _no_data(ax, "no latency measured")
        return ax
    labels = groups.to_numpy()
    data = [ms[labels == group] for group in order]
    positions = np.arange(1, len(order) + 1)
    if kind == "box":
        ax.boxplot(
            data, positions=positions, whis=(5, 95), showfliers=False, patch_artist=True,
            widths=0.6, boxprops={"facecolor": _LATENCY_COLOR, "edgecolor": _INK},
            medianprops={"color": _INK, "linewidth": 1.6}, **_orientation(ax.boxplot),
        )
        p99 = [float(np.quantile(d, 0.99)) for d in data]
        ax.scatter(p99, positions, marker="D", s=18, color=_INK, zorder=3, label="p99")
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles = [
            Patch(facecolor=_LATENCY_COLOR, edgecolor=_INK, label="p25–p75, line at median"),
            Line2D([], [], color=_INK, label="whiskers p5–p95"),
            Line2D([], [], color=_INK, marker="D", linestyle="none", markersize=5, label="p99"),
        ]
    else:
        parts = ax.violinplot(
            data, positions=positions, showmedians=True, showextrema=False,
            quantiles=[[0.05, 0.95]] * len(data), widths=0.8, **_orientation(ax.violinplot),
        )
        for body in cast(list[Any], parts["bodies"]):
            body.set_facecolor(_LATENCY_COLOR)
            body.set_edgecolor(_INK)
            body.set_alpha(0.9)
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles = [
            Patch(facecolor=_LATENCY_COLOR, edgecolor=_INK, label="density"),
            Line2D([], [], color=_INK, label="median and p5/p95"),
        ]
    ax.set_yticks(positions, [f"{_text(g, domain=_is_domain(by))} (n={sizes[g]:,})"
                              for g in order])
    ax.set_ylim(len(order) + 0.6, 0.4)  # largest group on top
    if log:
        ax.set_xscale("log")
    else:
        ax.set_xlim(left=0)
        _thousands(ax.xaxis, integer=False)
    _legend_outside(ax, handles=handles, below=True)
    _style(ax)
    return ax


# --- timeline ---------------------------------------------------------------------------------


def _auto_freq(attempts: pd.DataFrame) -> str:
    times = report._attempt_times(attempts, "plot_timeline").dropna()
    if times.empty:
        return "1s"
    span = (times.max() - times.min()).total_seconds()
    for freq in _AUTO_FREQS:
        if span / pd.Timedelta(freq).total_seconds() <= _MAX_BINS:
            return freq
    return f"{int(np.ceil(span / 86400 / _MAX_BINS))}D"


def plot_timeline(
    attempts: pd.DataFrame, /, *, freq: str | None = None, ax: Axes | None = None
) -> Axes:
    """Progress of the campaign over time from its attempts frame.

    Filled areas (left axis): how many recipients have each latest status, so deferred
    recipients that are retried and then sent move from orange to green. Lines (right axis, a
    twin of ``ax``): attempts per second, solid, and retries per second, dotted. ``freq`` is the
    bin length (chosen for about 150 bins when not given).

    Example:
        >>> from matplotlib.figure import Figure
        >>> from smtpkit.outcomes import attempts_frame
        >>> frame = attempts_frame([{"recipient": "a@x.com", "attempt": 1, "status": "sent",
        ...                          "finished_at": 1.5}])
        >>> plot_timeline(frame, ax=Figure().add_subplot()).get_ylabel()
        'recipients by latest status'
    """
    report._check_frame(attempts, "attempts", "plot_timeline")
    chosen = freq if freq is not None else _auto_freq(attempts)
    frame = report.timeline(attempts, freq=chosen)
    ax = _axes(ax, 4.4)
    step = pd.Timedelta(chosen)
    ax.set_title(_text(f"Progress and throughput over time (bins of {chosen})"))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("recipients by latest status")
    if frame.empty:
        _no_data(ax, "no timed attempts")
        return ax
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.lines import Line2D

    starts = pd.DatetimeIndex(frame.index).tz_convert("UTC").tz_localize(None)
    # One more edge than bins, so the last bin is drawn with its width too.
    x = np.append(starts.to_numpy(), (starts[-1] + step).to_datetime64())
    statuses = [c.removeprefix("recipients_") for c in frame.columns
                if c.startswith("recipients_") and frame[c].any()]
    if statuses:
        layers = [np.append(v, v[-1]) for v in
                  (frame[f"recipients_{s}"].to_numpy(dtype=float) for s in statuses)]
        ax.stackplot(x, layers, colors=[status_color(s) for s in statuses],
                     labels=[_text(s) for s in statuses], step="post", alpha=0.9)
    _thousands(ax.yaxis)
    twin = ax.twinx()
    rate = frame["per_second"].to_numpy(dtype=float)
    retries = frame["retries"].to_numpy(dtype=float) / step.total_seconds()
    twin.plot(x, np.append(rate, rate[-1]), drawstyle="steps-post", color=_INK, linewidth=1.3,
              label="attempts per second")
    twin.plot(x, np.append(retries, retries[-1]), drawstyle="steps-post", color=_INK,
              linewidth=1.3, linestyle=":", label="retries per second")
    twin.set_ylabel("attempts per second")
    twin.set_ylim(bottom=0, top=max(1.0, float(rate.max())) * 1.15)
    twin.spines["top"].set_visible(False)
    _thousands(twin.yaxis, integer=False)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(bottom=0)
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color=_INK, linewidth=1.3, label="attempts per second"),
        Line2D([], [], color=_INK, linewidth=1.3, linestyle=":", label="retries per second"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.08, 1.0), frameon=False,
              title="recipients / rate")
    ax.spines["top"].set_visible(False)
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    return ax


# --- bounce reasons ---------------------------------------------------------------------------


def plot_bounce_reasons(
    bounces: pd.DataFrame, /, *, top: int | None = 10, ax: Axes | None = None
) -> Axes:
    """Stacked bars of bounces and complaints per reason, coloured by category (hard bounce,
    soft bounce, delay, complaint, unparsed; see ``smtpkit.report.bounce_reasons``).

    Takes a frame of ``smtpkit.read_bounces`` or an outcome frame after ``apply_bounces``.

    Example:
        >>> import pandas as pd
        >>> from matplotlib.figure import Figure
        >>> frame = pd.DataFrame({"kind": ["bounce"], "reason": ["user_unknown"], "hard": [True]})
        >>> ax = plot_bounce_reasons(frame, ax=Figure().add_subplot())
        >>> [c.get_label() for c in ax.containers]
        ['hard bounce']
    """
    table = report.bounce_reasons(bounces, top=top)
    ax = _axes(ax, _height(len(table)))
    ax.set_title("Bounces and complaints by reason")
    ax.set_xlabel("bounce and complaint notices")
    ax.set_ylabel("reason")
    if table.empty:
        _no_data(ax, "no bounces or complaints")
        return ax
    y = np.arange(len(table))
    left = np.zeros(len(table))
    for category in (c for c in table.columns if c != "total"):
        counts = table[category].to_numpy(dtype=float)
        ax.barh(y, counts, left=left, color=BOUNCE_COLORS.get(category, OTHER_COLOR),
                label=_text(category), edgecolor="white", linewidth=0.5)
        left += counts
    ax.set_yticks(y, [_text(reason) for reason in table.index])
    ax.invert_yaxis()
    totals = table["total"].to_numpy()
    for row, value in enumerate(totals):
        ax.text(value, row, f" {int(value):,}", va="center", fontsize=9, color=_INK)
    ax.set_xlim(0, max(1, int(totals.max())) * 1.12)
    _thousands(ax.xaxis)
    _legend_outside(ax, title="category")
    _style(ax)
    return ax


# --- dashboard --------------------------------------------------------------------------------


def _headline(outcomes: pd.DataFrame) -> str:
    summary = report.summarize(outcomes)
    total = len(outcomes)
    if not total:
        return "no recipients"
    sent = int(summary.loc[list(report.DELIVERED_STATUSES), "count"].sum())
    parts = [f"{total:,} recipients", f"{sent / total:.1%} sent (250)"]
    for status in ("bounced", "complained", "failed", "deferred", "unknown"):
        count = int(cast(Any, summary.loc[status, "count"]))
        if count:
            parts.append(f"{count / total:.1%} {status}")
    return " · ".join(parts)


def dashboard(
    cleaned: pd.DataFrame | None,
    outcomes: pd.DataFrame,
    /,
    *,
    attempts: pd.DataFrame | None = None,
    bounces: pd.DataFrame | None = None,
    top: int = 8,
    title: str = "Campaign dashboard",
) -> Figure:
    """One figure with the funnel, outcomes per segment and per domain, latency, the timeline
    (with ``attempts``) and the bounce reasons (with ``bounces``, or an outcome frame that went
    through ``apply_bounces``). Panels without data are left out.

    Returns the Figure, not shown: a notebook displays it as the cell's value; save it with
    ``fig.savefig("dashboard.png")``.

    Example:
        >>> from smtpkit.outcomes import outcomes_frame
        >>> fig = dashboard(None, outcomes_frame([{"recipient": "a@x.com", "status": "sent"}]))
        >>> [ax.get_title() for ax in fig.axes][:1]
        ['Funnel: from the contact list to the inbox']
    """
    report._check_frame(outcomes, "outcomes", "dashboard")
    report._require(outcomes, ["recipient", "status"], name="outcomes", function="dashboard")
    stages = report.funnel(cleaned, outcomes)
    panels: list[tuple[bool, Any]] = [(False, lambda ax: plot_funnel(stages, ax=ax))]
    has_segments = "segment" in outcomes.columns and outcomes["segment"].notna().any()
    if has_segments:
        panels.append((False, lambda ax: plot_outcomes(outcomes, by="segment", top=top,
                                                       legend=False, ax=ax)))
    if attempts is not None:
        panels.append((True, lambda ax: plot_timeline(attempts, ax=ax)))
    panels.append((False, lambda ax: plot_outcomes(outcomes, by="domain", top=top,
                                                   legend=False, ax=ax)))
    if "latency_ms" in outcomes.columns and outcomes["latency_ms"].notna().any():
        panels.append((False, lambda ax: plot_latency(outcomes, top=top, ax=ax)))
    bounce_source = bounces if bounces is not None else (
        outcomes if "bounce_kind" in outcomes.columns else None)
    if bounce_source is not None and not report.bounce_reasons(bounce_source).empty:
        panels.append((False, lambda ax: plot_bounce_reasons(bounce_source, top=top, ax=ax)))

    rows: list[list[Any]] = []
    pending: list[Any] = []
    for wide, draw in panels:
        if wide:
            rows.append([draw])
        else:
            pending.append(draw)
            if len(pending) == 2:
                rows.append(pending)
                pending = []
    if pending:
        rows.append(pending)

    header_height = 1.0
    figure = _detached_figure(figsize=(DASHBOARD_WIDTH, 4.0 * len(rows) + header_height))
    header, body = cast(
        Sequence[Any], figure.subfigures(2, 1, height_ratios=[header_height, 4.0 * len(rows)])
    )
    header.suptitle(f"{_text(title)}\n{_text(_headline(outcomes))}", fontsize=13)
    _status_legend(header, outcomes)
    grid = body.add_gridspec(len(rows), 2)
    for index, row in enumerate(rows):
        if len(row) == 1:
            row[0](body.add_subplot(grid[index, :]))
        else:
            row[0](body.add_subplot(grid[index, 0]))
            row[1](body.add_subplot(grid[index, 1]))
    return figure


def _status_legend(header: Any, outcomes: pd.DataFrame) -> None:
    """One legend of the status colours for every chart of the dashboard, under its title."""
    from matplotlib.patches import Patch

    present = set(report._status_labels(outcomes))
    statuses = [s for s in report._status_order(present) if s in present]
    if statuses:
        handles = [Patch(facecolor=status_color(s), label=_text(s)) for s in statuses]
        header.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
                      title="status (the same colour in every chart)")


def _detached_figure(figsize: tuple[float, float]) -> Figure:
    """A Figure not tracked by pyplot: shown once in a notebook as the cell's value (pyplot is
    imported so that Jupyter's inline display is set up), never twice, never leaked."""
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=figsize, layout="constrained")
    plt.close(figure)
    return figure

