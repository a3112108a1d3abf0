"""Charts: each renders to a non-empty PNG with its title, labels and the fixed status colours."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in tests; set before pyplot is imported anywhere

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from test_report import Campaign, make_campaign

import smtpkit
from smtpkit import plot, report
from smtpkit.errors import InputError, MissingColumnError
from smtpkit.outcomes import STATUSES, attempts_frame, outcomes_frame


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return make_campaign(800, seed=5)


@pytest.fixture(autouse=True)
def strict_matplotlib(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Charts never call plt.show(), never warn (missing glyphs, bad layouts), never leak."""

    def no_show(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("smtpkit must not call plt.show()")

    monkeypatch.setattr(plt, "show", no_show)
    before = set(plt.get_fignums())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
    for number in set(plt.get_fignums()) - before:
        plt.close(number)


def new_axes(height: float = 4.0) -> Axes:
    return Figure(figsize=(10, height), layout="constrained").add_subplot()


def png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    data = buffer.getvalue()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return data


def colour(artist: Any) -> str:
    return to_hex(artist.get_facecolor() if not isinstance(artist, PolyCollection)
                  else artist.get_facecolor()[0], keep_alpha=False)


def tick_labels(ax: Axes, axis: str) -> list[str]:
    png(ax.figure)  # tick labels are final only once drawn
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks]


# --- colours ----------------------------------------------------------------------------------


def test_every_status_has_its_own_colour() -> None:
    assert set(plot.STATUS_COLORS) == set(STATUSES)
    assert len(set(plot.STATUS_COLORS.values())) == len(STATUSES)
    assert plot.status_color("failed") == plot.STATUS_COLORS["failed"]
    assert plot.status_color("queued") == plot.OTHER_COLOR
    with pytest.raises(TypeError):
        plot.STATUS_COLORS["failed"] = "#000000"  # type: ignore[index]


# --- each chart -------------------------------------------------------------------------------


def test_plot_funnel(campaign: Campaign) -> None:
    stages = smtpkit.funnel(campaign.cleaned, campaign.applied)
    ax = plot.plot_funnel(stages, ax=new_axes())
    assert ax.get_title() == "Funnel: from the contact list to the inbox"
    assert ax.get_xlabel() == "contacts" and ax.get_ylabel() == "stage"
    bars = ax.containers[0]
    assert [round(p.get_width()) for p in bars] == stages["count"].tolist()
    by_stage = dict(zip(stages.index, bars, strict=True))
    assert colour(by_stage["sent"]) == plot.STATUS_COLORS["sent"]
    assert colour(by_stage["bounced"]) == plot.STATUS_COLORS["bounced"]
    assert colour(by_stage["complained"]) == plot.STATUS_COLORS["complained"]
    assert tick_labels(ax, "y") == list(report.FUNNEL_STAGES)
    labels = [t.get_text() for t in ax.texts]
    assert labels[0] == f"{len(campaign.cleaned):,} (100.0%)"
    assert len(png(ax.figure)) > 10_000


@pytest.mark.parametrize("by", ["segment", "domain"])
def test_plot_outcomes_stacks_statuses_in_their_colours(campaign: Campaign, by: str) -> None:
    ax = plot.plot_outcomes(campaign.applied, by=by, top=6, ax=new_axes(5))
    assert ax.get_title() == f"Outcomes by {by}"
    assert ax.get_xlabel() == "recipients" and ax.get_ylabel() == by
    summary = smtpkit.summarize(campaign.applied, by=by, top=6)
    drawn = [c.get_label() for c in ax.containers]
    assert drawn == [s for s in STATUSES if summary[s].sum() > 0]
    for container in ax.containers:
        status = container.get_label()
        assert {colour(p) for p in container} == {plot.STATUS_COLORS[status]}
        assert [p.get_width() for p in container] == summary[status].tolist()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == drawn
    groups = tick_labels(ax, "y")
    assert groups == list(summary.index)
    if by == "domain":
        assert groups[0] == "gmail.com" and groups[-1].endswith(" others)")
    assert len(png(ax.figure)) > 10_000


def test_plot_outcomes_uses_thousands_separators_and_shares() -> None:
    rows = [{"recipient": f"u{i}@x.com", "status": "sent" if i % 10 else "failed",
             "segment": "A" if i % 3 else "B"} for i in range(4_000)]
    frame = outcomes_frame(rows)
    ax = plot.plot_outcomes(frame, ax=new_axes())
    assert any("," in label for label in tick_labels(ax, "x"))
    assert any(t.get_text() == " 2,666" for t in ax.texts)  # the total of segment A
    shares = plot.plot_outcomes(frame, normalize=True, ax=new_axes())
    assert shares.get_xlabel() == "share of recipients"
    assert tick_labels(shares, "x")[-1] == "100%"
    widths = [sum(p.get_width() for p in bars) for bars in zip(*shares.containers, strict=True)]
    assert widths == pytest.approx([1.0, 1.0])


def test_plot_latency_box_and_violin(campaign: Campaign) -> None:
    ax = plot.plot_latency(campaign.applied, top=5, ax=new_axes(5))
    assert ax.get_title() == "Latency per domain"
    assert ax.get_xlabel() == "latency (ms)" and ax.get_ylabel() == "domain"
    table = smtpkit.latency(campaign.applied, top=5)
    expected = [f"{g} (n={n:,})" for g, n in table["count"].items()]
    assert tick_labels(ax, "y") == expected
    p99 = ax.collections[0].get_offsets()[:, 0]
    assert list(p99) == pytest.approx(table["p99_ms"].tolist())
    assert len(png(ax.figure)) > 10_000
    violin = plot.plot_latency(campaign.applied, kind="violin", log=True, ax=new_axes(5))
    assert violin.get_xscale() == "log"
    assert len(png(violin.figure)) > 10_000
    with pytest.raises(InputError, match="kind='box' or kind='violin'"):
        plot.plot_latency(campaign.applied, kind="bars")  # type: ignore[arg-type]


def test_plot_timeline_shows_status_areas_rate_and_retries(campaign: Campaign) -> None:
    ax = plot.plot_timeline(campaign.attempts, ax=new_axes(4.4))
    assert ax.get_title().startswith("Progress and throughput over time (bins of ")
    assert ax.get_xlabel() == "time (UTC)"
    assert ax.get_ylabel() == "recipients by latest status"
    twin = next(a for a in ax.figure.axes if a is not ax)
    assert twin.get_ylabel() == "attempts per second"
    areas = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [a.get_label() for a in areas] == ["sent", "deferred", "failed", "unknown"]
    assert [colour(a) for a in areas] == [plot.STATUS_COLORS[s] for s in
                                          ("sent", "deferred", "failed", "unknown")]
    rate, retries = twin.get_lines()
    assert rate.get_linestyle() == "-" and retries.get_linestyle() == ":"
    assert max(retries.get_ydata()) > 0  # the retries are visible
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-2:] == ["attempts per second", "retries per second"]
    assert len(png(ax.figure)) > 10_000


def test_plot_timeline_picks_bins_for_the_span() -> None:
    frame = attempts_frame([
        {"recipient": f"u{i}@x.com", "attempt": 1, "status": "sent", "finished_at": 60.0 * i}
        for i in range(240)  # four hours
    ])
    ax = plot.plot_timeline(frame, ax=new_axes())
    assert ax.get_title().endswith("(bins of 2min)")
    assert len(png(ax.figure)) > 5_000


def test_plot_bounce_reasons(campaign: Campaign) -> None:
    ax = plot.plot_bounce_reasons(campaign.bounces, ax=new_axes())
    assert ax.get_title() == "Bounces and complaints by reason"
    assert ax.get_ylabel() == "reason" and ax.get_xlabel() == "bounce and complaint notices"
    drawn = {c.get_label(): c for c in ax.containers}
    assert list(drawn) == ["hard bounce", "soft bounce", "delay", "complaint"]
    for category, container in drawn.items():
        assert {colour(p) for p in container} == {plot.BOUNCE_COLORS[category]}
    assert plot.BOUNCE_COLORS["hard bounce"] == plot.STATUS_COLORS["bounced"]
    assert "auto_reply" not in tick_labels(ax, "y")
    from_outcomes = plot.plot_bounce_reasons(campaign.applied, ax=new_axes())
    assert [c.get_label() for c in from_outcomes.containers] == ["hard bounce", "soft bounce",
                                                                 "complaint"]
    assert len(png(ax.figure)) > 5_000


# --- awkward data -----------------------------------------------------------------------------

EMPTY_CASES: list[Any] = [
    pytest.param(lambda: plot.plot_funnel(smtpkit.funnel(None, outcomes_frame([])), ax=new_axes()),
                 "Funnel: from the contact list to the inbox", id="funnel"),
    pytest.param(lambda: plot.plot_outcomes(outcomes_frame([]), ax=new_axes()),
                 "Outcomes by segment", id="outcomes"),
    pytest.param(lambda: plot.plot_latency(outcomes_frame([]), ax=new_axes()),
                 "Latency per domain", id="latency-empty"),
    pytest.param(lambda: plot.plot_latency(outcomes_frame(
        [{"recipient": "a@x.com", "status": "unknown"}]), ax=new_axes()),
        "Latency per domain", id="latency-all-na"),
    pytest.param(lambda: plot.plot_timeline(attempts_frame([]), ax=new_axes()),
                 "Progress and throughput over time (bins of 1s)", id="timeline"),
    pytest.param(lambda: plot.plot_bounce_reasons(pd.DataFrame({"kind": ["auto_reply"]}),
                                                  ax=new_axes()),
                 "Bounces and complaints by reason", id="bounces-only-auto-replies"),
]


@pytest.mark.parametrize(("draw", "title"), EMPTY_CASES)
def test_charts_of_no_data_render_with_a_note(draw: Callable[[], Axes], title: str) -> None:
    ax = draw()
    assert ax.get_title() == title
    assert ax.get_xlabel() and ax.get_ylabel()
    assert len(png(ax.figure)) > 2_000


def test_labels_the_font_cannot_draw_are_shown_in_ascii() -> None:
    frame = outcomes_frame([
        {"recipient": "a@例え.jp", "status": "sent", "segment": "$5 to $10", "latency_ms": 5.0},
        {"recipient": "b@bücher.example.de", "status": "sent", "segment": "line\nbreak",
         "latency_ms": 6.0},
    ])
    domains = tick_labels(plot.plot_outcomes(frame, by="domain", ax=new_axes()), "y")
    assert sorted(domains) == ["bücher.example.de", "xn--r8jz45g.jp"]
    segments = tick_labels(plot.plot_outcomes(frame, by="segment", ax=new_axes()), "y")
    # "\$" is drawn as a literal dollar: no mathtext between the two dollars
    assert sorted(segments) == [r"\$5 to \$10", r"line\nbreak"]


def test_a_missing_column_is_a_clear_error() -> None:
    frame = outcomes_frame([{"recipient": "a@x.com", "status": "sent"}]).drop(columns="segment")
    with pytest.raises(MissingColumnError, match="'segment' in the frame"):
        plot.plot_outcomes(frame, by="segment")
    with pytest.raises(MissingColumnError, match=r"plot_funnel\(\) needs the column\(s\) 'count'"):
        plot.plot_funnel(frame)


def test_without_ax_each_chart_gets_its_own_pyplot_figure(campaign: Campaign) -> None:
    before = set(plt.get_fignums())
    axes = [
        plot.plot_funnel(smtpkit.funnel(campaign.cleaned, campaign.outcomes)),
        plot.plot_outcomes(campaign.outcomes),
        plot.plot_latency(campaign.outcomes),
        plot.plot_timeline(campaign.attempts),
        plot.plot_bounce_reasons(campaign.bounces),
    ]
    assert len(set(plt.get_fignums()) - before) == 5  # a notebook shows each once
    for ax in axes:
        assert ax.figure.get_figwidth() == plot.WIDTH
        assert len(png(ax.figure)) > 5_000


# --- dashboard --------------------------------------------------------------------------------


def test_dashboard_has_every_panel_and_is_not_left_in_pyplot(campaign: Campaign) -> None:
    before = set(plt.get_fignums())
    figure = smtpkit.dashboard(campaign.cleaned, campaign.applied, attempts=campaign.attempts,
                               bounces=campaign.bounces)
    assert isinstance(figure, matplotlib.figure.Figure)
    assert set(plt.get_fignums()) == before  # shown once as the cell's value, never twice
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles[0] == "Funnel: from the contact list to the inbox"
    assert titles[1:] == ["Outcomes by segment", titles[2], "Outcomes by domain",
                          "Latency per domain", "Bounces and complaints by reason"]
    assert titles[2].startswith("Progress and throughput over time")
    header = figure.subfigs[0]
    heading = header._suptitle.get_text()
    assert heading.startswith("Campaign dashboard\n800 recipients · ")
    assert [t.get_text() for t in header.legends[0].get_texts()] == list(STATUSES)
    assert figure.get_figwidth() == plot.DASHBOARD_WIDTH
    assert len(png(figure)) > 50_000


def test_dashboard_leaves_out_panels_without_data(campaign: Campaign) -> None:
    outcomes = campaign.outcomes.drop(columns=["segment"])
    figure = plot.dashboard(None, outcomes)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["Funnel: from the contact list to the inbox", "Outcomes by domain",
                      "Latency per domain"]
    empty = plot.dashboard(None, outcomes_frame([]))
    assert [ax.get_title() for ax in empty.axes] == ["Funnel: from the contact list to the inbox",
                                                     "Outcomes by domain"]
    assert len(png(empty)) > 5_000
