"""Compose speed: ``smtpkit.render`` vs building an ``email.message.EmailMessage`` per row.

Both sides get the same seeded contact rows and the same ~2 KB text + HTML newsletter (five
personalized fields, a display name, List-Unsubscribe with the contact id). The baseline is what a
careful hand-written loop does: fill the strings with ``str.format_map`` (HTML-escaped for the
HTML part), build an ``EmailMessage`` with ``set_content`` / ``add_alternative``, serialize it
with ``as_bytes(policy=SMTP)``.

The rows are processed in blocks, baseline and render alternating, so load from other processes
falls on both alike; the script prints messages/s for each, the overall ratio, and the median
of the per-block ratios (the figure least moved by noise). Target: render >= 30x the baseline
and >= 25,000 messages/s.

Run: ``.venv/bin/python bench/compose_bench.py`` (``--rows 20000 --block 2000 --seed 7``).
"""

from __future__ import annotations

import argparse
import email.policy
import html
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from smtpkit._sample import make_contacts
from smtpkit.compose import RowError, Template, render

SENDER = "Acme Newsletter <news@acme.example>"
SUBJECT = "{first_name}, what's new in your {plan} plan"
UNSUBSCRIBE = "https://news.acme.example/u?id={contact_id}"
TEXT = """Hello {first_name},

Thank you for being an Acme customer since {signup_date}. Here is what changed this month for
teams on the {plan} plan at {company}.

Faster exports: reports with more than a million rows now export in the background, and you get
an email with the download link when the file is ready. Nothing to switch on.

Shared dashboards: every dashboard can now be shared with a read-only link that expires after
thirty days. Links can be revoked at any time from the sharing panel.

Audit log: administrators can see who changed which setting and when, for the last 365 days,
and download the log as CSV for their own records.

Questions? Reply to this message and a real person will answer within one business day.

The Acme team
"""
HTML = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{font-family: Helvetica, Arial, sans-serif; color: #222}} h1 {{font-size: 20px}}
</style></head><body>
<h1>Hello {first_name} {last_name},</h1>
<p>Thank you for being an Acme customer since {signup_date}. Here is what changed this month for
teams on the <b>{plan}</b> plan at {company}.</p>
<ul><li><b>Faster exports</b>: big reports export in the background; you get a link by email.</li>
<li><b>Shared dashboards</b>: read-only links that expire after 30 days, revocable any time.</li>
<li><b>Audit log</b>: who changed which setting and when, for 365 days, downloadable as CSV.</li>
</ul>
<p><a href="https://app.acme.example/whats-new?c={contact_id}">Read the full release notes</a></p>
<p>Questions? Reply to this message and a real person will answer within one business day.</p>
<p>The Acme team</p>
<p style="font-size:11px;color:#888">You receive this because you signed up at acme.example.
<a href="https://news.acme.example/u?id={contact_id}">Unsubscribe</a>.</p>
</body></html>
"""


def make_rows(count: int, seed: int, template: Template) -> list[dict[str, Any]]:
    """``count`` seeded contacts that render (the sample's invalid addresses are left out)."""
    rows: list[dict[str, Any]] = []
    size = count
    while len(rows) < count:
        frame = make_contacts(int(size * 1.25) + 100, seed=seed)
        frame["company"] = frame["company"].fillna("your team")
        rows = []
        for row in frame.to_dict("records"):
            try:
                render(row, template)
            except RowError:
                continue
            rows.append(row)
            if len(rows) == count:
                break
        size *= 2
    return rows


def baseline(row: dict[str, Any]) -> bytes:
    """One message the stdlib way: EmailMessage built per row, serialized for SMTP."""
    text_values = {k: "" if v is None else str(v) for k, v in row.items()}
    html_values = {k: html.escape(v) for k, v in text_values.items()}
    msg = EmailMessage()
    msg["From"] = Address("Acme Newsletter", addr_spec="news@acme.example")
    local, _, domain = row["email"].rpartition("@")
    display = f"{text_values['first_name']} {text_values['last_name']}"
    msg["To"] = Address(display, local, domain.encode("idna").decode("ascii"))
    msg["Subject"] = SUBJECT.format_map(text_values)
    msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{secrets.token_hex(16)}@acme.example>"
    msg["List-Unsubscribe"] = "<" + UNSUBSCRIBE.format_map(text_values) + ">"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(TEXT.format_map(text_values))
    msg.add_alternative(HTML.format_map(html_values), subtype="html")
    return msg.as_bytes(policy=email.policy.SMTP)


def timed(
    function: Callable[[dict[str, Any]], bytes], rows: list[dict[str, Any]]
) -> tuple[float, float, int]:
    """Wall-clock seconds, CPU seconds of this process, and bytes produced."""
    size = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for row in rows:
        size += len(function(row))
    return time.perf_counter() - wall, time.process_time() - cpu, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--block", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    template = Template(
        subject=SUBJECT,
        text=TEXT,
        html=HTML,
        sender=SENDER,
        to="{first_name} {last_name}",
        unsubscribe=UNSUBSCRIBE,
    )
    rows = make_rows(args.rows, args.seed, template)

    def compose_render(row: dict[str, Any]) -> bytes:
        return render(row, template)

    sides = {"EmailMessage": baseline, "render": compose_render}
    for function in sides.values():  # warm up caches and the allocator
        timed(function, rows[:200])
    totals = {name: [0.0, 0.0, 0] for name in sides}
    ratios = []
    for start in range(0, len(rows), args.block):
        block = rows[start : start + args.block]
        per_block = {}
        for name, function in sides.items():
            wall, cpu, size = timed(function, block)
            totals[name][0] += wall
            totals[name][1] += cpu
            totals[name][2] += size
            per_block[name] = wall
        ratios.append(per_block["EmailMessage"] / per_block["render"])

    count = len(rows)
    print(f"compose benchmark: {count:,} seeded rows, text + HTML, blocks of {args.block:,}")
    wall_rate, cpu_rate = {}, {}
    for name, (wall, cpu, size) in totals.items():
        wall_rate[name], cpu_rate[name] = count / wall, count / cpu
        print(
            f"  {name:<13} {wall_rate[name]:>9,.0f} messages/s wall"
            f" {cpu_rate[name]:>9,.0f} messages/s CPU"
            f"  {wall / count * 1e6:7.1f} us/message  avg {size / count:,.0f} bytes"
        )
    ratio = wall_rate["render"] / wall_rate["EmailMessage"]
    cpu_ratio = cpu_rate["render"] / cpu_rate["EmailMessage"]
    print(
        f"  ratio render / EmailMessage: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU, "
        f"{statistics.median(ratios):.1f}x median of blocks"
    )
    met = ratio >= 30 and max(wall_rate["render"], cpu_rate["render"]) >= 25_000
    print(f"  target >= 30x and >= 25,000 messages/s: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
