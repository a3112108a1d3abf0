"""What a running send shows and tells: the progress bar, and the failure summary mail.

The bar (``tqdm.auto``: a widget in Jupyter, text in a terminal) counts rows that reached a
final status in this run and shows live ``sent / deferred / failed / unknown`` counts, plus
per-segment progress when the campaign has segments. It refreshes at most a few times a
second, so it costs nothing per message.

When a campaign ends with failures (or stops early with ``CampaignAborted``) and ``notify=`` is
given, :func:`notify_text` is mailed to that address: counts per status and the most frequent
errors.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, cast

import pandas as pd

__all__ = ["Progress", "notify_message", "notify_text"]

_REFRESH_SECONDS = 0.25
_SHOWN = ("sent", "deferred", "failed", "unknown")


class Progress:
    """Live counts of final statuses in this run, and a tqdm bar when ``enabled``."""

    def __init__(
        self,
        total: int,
        *,
        enabled: bool,
        campaign: str,
        segment_totals: dict[str, int] | None = None,
    ) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.by_segment: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.segment_totals = segment_totals or {}
        self.total = total
        self._shown = 0
        self._last = 0.0
        self._bar: Any = None
        if enabled and total > 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=f"campaign {campaign}", unit="msg",
                             dynamic_ncols=True)

    def add(self, status: str, segment: str | None = None) -> None:
        """One row reached ``status`` (final for this run)."""
        self.counts[status] += 1
        if segment is not None:
            self.by_segment[segment][status] += 1
        if self._bar is not None:
            now = time.monotonic()
            if now - self._last >= _REFRESH_SECONDS:
                self._last = now
                self._refresh()

    def _refresh(self) -> None:
        parts = [f"{name} {self.counts[name]:,}" for name in _SHOWN if self.counts[name]]
        if self.segment_totals:
            parts += [
                f"[{name} {sum(self.by_segment[name].values()):,}/{total:,}]"
                for name, total in self.segment_totals.items()
            ]
        self._bar.set_postfix_str(" · ".join(parts), refresh=False)
        done = sum(self.counts.values())
        self._bar.update(done - self._shown)  # draws the bar with the counts above
        self._shown = done

    def close(self) -> None:
        if self._bar is not None:
            self._refresh()
            self._bar.close()
            self._bar = None


def notify_text(result: pd.DataFrame, *, campaign: str, journal: str | None,
                stopped: str | None = None) -> str:
    """The plain-text failure summary of a campaign; ``stopped`` is why it stopped early
    (the ``CampaignAborted`` message), if it did."""
    counts = result["status"].value_counts()
    if stopped is None:
        lines = [f"Campaign {campaign!r} finished with failures.", ""]
    else:
        lines = [f"Campaign {campaign!r} stopped before the end:", "", f"  {stopped}", ""]
    lines += [f"  {status:<10} {int(counts.get(status, 0)):>9,}"
              for status in ("sent", "deferred", "failed", "unknown", "skipped")]
    untried = int(result["status"].isna().sum())
    if untried:
        lines.append(f"  {'not tried':<10} {untried:>9,}")
    lines.append(f"  {'total':<10} {len(result):>9,}")
    bad = result[result["status"].isin(["failed", "deferred", "unknown"])]
    if len(bad):
        top = (
            bad.assign(code=bad["smtp_code"].astype("string").fillna("-"))
            .groupby(["status", "reason", "code"], dropna=False)
            .size()
            .sort_values(ascending=False)
            .head(10)
        )
        lines += ["", "Most frequent problems (status, reason, SMTP code: rows):"]
        for key, n in top.items():
            status, reason, code = cast(tuple[str, str, str], key)
            lines.append(f"  {status}, {reason}, {code}: {n:,}")
    lines += [""]
    if journal is not None:
        again = "to resume" if stopped is not None else "to retry the deferred rows"
        lines.append(
            f"Details: smtpkit.outcomes({journal!r}, {campaign!r}); run the same send again "
            f"{again}."
        )
    return "\n".join(lines) + "\n"


def notify_message(
    text: str, *, sender: str, recipients: Sequence[str], campaign: str, failed: int,
    stopped: bool = False,
) -> bytes:
    """The summary as message bytes (a plain stdlib ``EmailMessage``: one message, no hurry)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    what = "stopped early, " if stopped else ""
    message["Subject"] = f"smtpkit campaign {campaign}: {what}{failed:,} rows not sent"
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
