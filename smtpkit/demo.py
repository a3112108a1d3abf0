"""The ``smtpkit demo`` campaign: the whole pipeline on the embedded sandbox, in under a minute.

``run_demo(out)`` does what an analyst does, with the decisions of ``notebooks/01_clean_list``:

1. reads ``data/contacts.csv`` (beside the package in a checkout; outside one, the same seeded
   list from ``smtpkit._sample.make_contacts``);
2. starts a :class:`~smtpkit.sandbox.Sandbox` running ``World.default()`` (STARTTLS and AUTH,
   unknown users, greylisting, throttling, dropped connections, late bounces and complaints;
   its resolver answers the DNS of its world);
3. cleans the list, applies the suggested typo fixes (``gmial.com`` -> ``gmail.com`` ...) and
   cleans again checking every domain's MX hosts with the sandbox's resolver, then leaves out
   throwaway domains and contacts who did not opt in (``sendable`` off, with the reason
   ``disposable`` / ``no_consent``, so the rows stay in every count);
4. segments by plan, with one template per plan, and sends to the sandbox with a progress bar,
   journal in ``out``;
5. waits for the late bounces and complaints (until the sandbox has written every one it
   scheduled, bounded by the world's longest delay), reads them from the Maildir and applies
   them, recording them in the journal;
6. prints a summary, and writes ``report.html``, ``dashboard.png`` and what the sandbox received
   (``sandbox-deliveries.csv``) into ``out``.

Every run is a fresh campaign: the journal, Maildir and report of a previous run in ``out`` are
replaced (a new sandbox has no memory of earlier deliveries, so resuming would report on mail
that no server holds). The world's seed is fixed (``DEMO_SEED``), so every run meets the same
refusals, bounces and complaints; only timing-dependent events (greylisting, throttling) vary.
``docs/dashboard.png`` in the repository is a run's ``dashboard.png``.

Example:
    >>> result = run_demo("smtpkit-demo", progress=False)  # doctest: +SKIP
    >>> result.summary.loc["all", "recipients"]  # doctest: +SKIP
    5000
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import InputError, MissingColumnError, SandboxError

if TYPE_CHECKING:
    from .dns import Resolver

__all__ = [
    "CAMPAIGN",
    "CHECKOUT_CONTACTS",
    "DEMO_SEED",
    "SUMMARY_COLUMNS",
    "DemoResult",
    "decide",
    "demo_templates",
    "run_demo",
    "summary_table",
]

#: The campaign's name in the demo journal.
CAMPAIGN = "demo"
#: Seed of the sandbox world: the same refusals, bounces and complaints on every run.
DEMO_SEED = 0
#: Columns of :func:`summary_table`: recipients, then one count per status (they add up).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "recipients", "sent", "bounced", "complained", "failed", "deferred", "unknown", "skipped",
)
# The files a run writes into its folder (a new run replaces them).
_JOURNAL = "journal.db"
_MAILDIR = "Maildir"
# Marks a folder as the demo's own, so a second run may empty it (and nothing else ever is).
_MARKER = ".smtpkit-demo"
_REPORT = "report.html"
_DASHBOARD = "dashboard.png"
_DELIVERIES = "sandbox-deliveries.csv"
#: The contact list of a source checkout (absent when smtpkit is installed as a package).
CHECKOUT_CONTACTS = Path(__file__).resolve().parent.parent / "data" / "contacts.csv"
_SENDER = "Acme Analytics <news@acme-analytics.example>"
_UNSUBSCRIBE = "https://acme-analytics.example/unsubscribe?contact={contact_id}"


@dataclasses.dataclass(frozen=True, repr=False)
class DemoResult:
    """What one demo run produced: the files it wrote and the frames behind them.

    ``outcomes`` is the send's outcome frame with the bounces applied (``apply_bounces``),
    ``deliveries`` what the sandbox accepted (``Sandbox.deliveries()``), ``summary`` the table
    the demo prints (:func:`summary_table`).
    """

    out: Path
    campaign: str
    journal: Path
    mailbox: Path
    report: Path
    dashboard: Path
    deliveries_file: Path
    contacts_source: str
    cleaned: pd.DataFrame
    outcomes: pd.DataFrame
    attempts: pd.DataFrame
    bounces: pd.DataFrame
    deliveries: pd.DataFrame
    summary: pd.DataFrame
    send_seconds: float
    seconds: float

    def __repr__(self) -> str:
        return (
            f"<DemoResult campaign={self.campaign!r} recipients={len(self.outcomes):,} "
            f"report={str(self.report)!r} in {self.seconds:.1f} s>"
        )

    def _repr_html_(self) -> str:
        import html

        links = "".join(
            f"<li>{html.escape(name)}: <code>{html.escape(str(path))}</code></li>"
            for name, path in (("report", self.report), ("dashboard", self.dashboard),
                               ("journal", self.journal), ("bounce Maildir", self.mailbox))
        )
        return (
            f"<p><b>smtpkit demo</b>: campaign {html.escape(self.campaign)}, "
            f"{len(self.outcomes):,} recipients, {self.seconds:.1f} s</p><ul>{links}</ul>"
            + self.summary.to_html()
        )


def demo_templates() -> dict[str, Any]:
    """One :class:`~smtpkit.compose.Template` per plan (``free``, ``pro``, ``enterprise``), and
    one for any other segment (key ``"*"``). They use the columns ``first_name``,
    ``last_name``, ``plan`` and ``contact_id``."""
    from .compose import Template

    footer = (
        "\n\nYou get this because you have an Acme Analytics account ({plan} plan).\n"
        "Unsubscribe: https://acme-analytics.example/unsubscribe?contact={contact_id}\n"
    )
    bodies = {
        "free": (
            "{first_name}, your dashboards can do more",
            "Hi {first_name},\n\nthe free plan keeps 30 days of history. Pro keeps everything "
            "and adds scheduled reports; try it free for 14 days.",
        ),
        "pro": (
            "What's new in Pro this month, {first_name}",
            "Hi {first_name},\n\nscheduled reports now go to Slack and Teams, and exports are "
            "three times faster. Thanks for being a Pro customer.",
        ),
        "enterprise": (
            "Your quarterly account review, {first_name}",
            "Hi {first_name},\n\nyour account team would like to review this quarter's usage "
            "with you. Reply to this message to pick a date.",
        ),
        "*": (
            "News from Acme Analytics, {first_name}",
            "Hi {first_name},\n\nhere is what is new at Acme Analytics this month.",
        ),
    }
    return {
        plan: Template(
            sender=_SENDER,
            subject=subject,
            text=text + footer,
            to="{first_name} {last_name}",
            unsubscribe=_UNSUBSCRIBE,
            headers={"X-Campaign": CAMPAIGN},
        )
        for plan, (subject, text) in bodies.items()
    }


def decide(contacts: pd.DataFrame, /, *, resolver: Resolver | None = None) -> pd.DataFrame:
    """Clean ``contacts`` with notebook 1's decisions; a new frame with a ``segment`` column.

    Typo suggestions are applied and the list cleaned again (with ``resolver``, checking each
    domain's MX hosts the second time); throwaway domains and contacts whose ``opt_in`` is not
    true are not sendable (reasons ``disposable`` and ``no_consent``); the segment is the
    ``plan``.
    """
    from .clean import clean
    from .segment import segment

    first = clean(contacts)
    column = first.attrs.get("smtpkit_email_column", "email")
    fix = first["suggestion"].notna().to_numpy()
    fixed = contacts.copy()
    fixed.loc[fix, column] = first.loc[fix, "suggestion"]
    cleaned = clean(fixed, column=column, check_mx=resolver is not None, resolver=resolver)
    sendable = cleaned["sendable"].astype(bool)
    if "opt_in" in cleaned.columns:
        opted_in = cleaned["opt_in"].astype("string").str.strip().str.lower().isin(["true", "1"])
        no_consent = sendable & ~opted_in.fillna(False).astype(bool)
    else:
        no_consent = pd.Series(False, index=cleaned.index)
    disposable = sendable & cleaned["disposable"].astype(bool)
    decided = cleaned.assign(
        sendable=sendable & ~no_consent & ~disposable,
        reason=cleaned["reason"].mask(no_consent, "no_consent").mask(disposable, "disposable"),
    )
    return segment(decided, by="plan") if "plan" in decided.columns else decided.assign(
        segment="all"
    )


def summary_table(outcomes: pd.DataFrame, /) -> pd.DataFrame:
    """Recipients and the count of each status per segment, and ``all`` (the counts add up)."""
    from .report import summarize

    statuses = list(SUMMARY_COLUMNS[1:])
    overall = summarize(outcomes)["count"]
    rows: dict[str, list[int]] = {}
    if "segment" in outcomes.columns and outcomes["segment"].notna().any():
        per_segment = summarize(outcomes, by="segment")
        for name, row in per_segment.iterrows():
            rows[str(name)] = [int(row["total"])] + [int(row.get(s, 0)) for s in statuses]
    rows["all"] = [len(outcomes)] + [int(overall.get(s, 0)) for s in statuses]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(SUMMARY_COLUMNS))
    table.index.name = "segment"
    return table


def _default_contacts(checkout: Path = CHECKOUT_CONTACTS) -> tuple[pd.DataFrame, str]:
    from .contacts import load_contacts

    if checkout.is_file():
        return load_contacts(checkout), str(checkout)
    from ._sample import DEFAULT_SEED, make_contacts

    frame = make_contacts()
    frame.attrs["smtpkit_email_column"] = "email"
    return frame, f"smtpkit._sample.make_contacts(seed={DEFAULT_SEED}) (no data/contacts.csv here)"


def _contacts(contacts: Any) -> tuple[pd.DataFrame, str]:
    if contacts is None:
        return _default_contacts()
    if isinstance(contacts, pd.DataFrame):
        return contacts, f"a frame of {len(contacts):,} rows"
    if isinstance(contacts, str | os.PathLike):
        from .contacts import load_contacts

        return load_contacts(contacts), os.fspath(contacts)
    raise InputError(
        f"contacts must be a contact file path, a DataFrame or None (the sample list), not "
        f"{type(contacts).__name__}."
    )


def _prepare_folder(out: str | os.PathLike[str]) -> Path:
    """Create ``out``, or empty what an earlier demo run left there (only its own files).

    A folder the demo did not make (no ``.smtpkit-demo`` marker) is never emptied: it may be a
    real Maildir or someone's work; a new or empty folder is taken and marked.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; give the demo a folder for its output (--out).")
    marker = folder / _MARKER
    if folder.is_dir() and any(folder.iterdir()) and not marker.is_file():
        raise InputError(
            f"{folder} is not empty and was not made by smtpkit demo, so the demo will not "
            "write or delete anything there; choose a new or empty folder with --out."
        )
    maildir = folder / _MAILDIR
    if maildir.is_dir():
        unexpected = {p.name for p in maildir.iterdir()} - {"cur", "new", "tmp"}
        if unexpected:
            raise InputError(
                f"{maildir} holds more than a Maildir ({', '.join(sorted(unexpected))}); the "
                "demo will not delete it. Move it away or choose another --out folder."
            )
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text("This folder is written by `smtpkit demo`; each run replaces it.\n")
    for name in (_JOURNAL, f"{_JOURNAL}-wal", f"{_JOURNAL}-shm", _REPORT, _DASHBOARD,
                 _DELIVERIES):
        (folder / name).unlink(missing_ok=True)
    for leftover in folder.glob(f"{_JOURNAL}-inflight-*"):
        leftover.unlink(missing_ok=True)
    if maildir.is_dir():
        shutil.rmtree(maildir)
    return folder


def _say(text: str = "") -> None:
    print(text, flush=True)


def _wait_for_late_mail(box: Any, say: Callable[[str], None]) -> int:
    """Wait until the sandbox has written every late report it scheduled; return how many."""
    expected = box.mail_written + box.mail_pending
    if expected == 0:
        return 0
    longest = float(box.world.late_delay[1])
    try:
        return int(box.wait_for_mail(expected, timeout=longest + 2.0))
    except SandboxError:
        # never reached with the default world; write the rest now rather than wait on
        flushed = box.flush_mail()
        say(f"  {flushed} late reports were still pending; written now")
        return int(box.mail_written)


def run_demo(
    out: str | os.PathLike[str] = "smtpkit-demo",
    *,
    contacts: str | os.PathLike[str] | pd.DataFrame | None = None,
    progress: bool = True,
    seed: int = DEMO_SEED,
) -> DemoResult:
    """Run the demo campaign end to end on the sandbox; write the report into ``out``.

    Parameters:
        contacts: a contact file or frame (default: ``data/contacts.csv``, else the sample).
        progress: show the send's progress bar.
        seed: the sandbox world's seed.

    See the module docstring for the steps. Prints what it does; returns a :class:`DemoResult`.
    """
    from .bounces import apply_bounces, read_bounces
    from .journal import read_attempts
    from .plot import dashboard
    from .report import funnel, report_html
    from .sandbox import Sandbox, World
    from .send import send

    started = time.perf_counter()
    folder = _prepare_folder(out)
    frame, source = _contacts(contacts)
    _say("smtpkit demo: a whole campaign against the embedded sandbox (nothing leaves this "
         "machine)")
    _say(f"  contacts  {len(frame):,} rows from {source}")
    journal = folder / _JOURNAL
    maildir = folder / _MAILDIR
    box = Sandbox(World.default(seed=seed), auth=True, mailbox=maildir)
    box.start()
    try:
        _say(f"  sandbox   {box.host}:{box.port}, STARTTLS and AUTH as {box.username}; "
             "World.default() with seed " + str(seed))
        # the sandbox answers the DNS of its world: the list's domains are checked for MX hosts
        cleaned = decide(frame, resolver=box.resolver)
        templates = demo_templates()
        missing = sorted(
            set().union(*(t.fields for t in templates.values())) - set(cleaned.columns)
        )
        if missing:
            raise MissingColumnError(
                f"The demo's templates need the columns {', '.join(map(repr, missing))}, which "
                f"the contact list ({source}) does not have; use a list like data/contacts.csv."
            )
        to_send = int(cleaned["sendable"].sum())
        _say(f"  cleaned   {to_send:,} to send; typos fixed, duplicates, invalid, throwaway, "
             "mail-less domains and not-opted-in rows left out (each with a reason)")
        # Default retries and no per-domain limits: yahoo.com's throttling (421 after 25 messages
        # on a connection, 452 beyond 120 in 5 s) is met by the engine's adaptive slowdown and
        # does not hold up the other domains.
        send_started = time.perf_counter()
        sent = send(
            cleaned, templates, box.config, campaign=CAMPAIGN, journal=journal,
            segment="segment", progress=progress,
        )
        send_seconds = time.perf_counter() - send_started
        _say(f"  sent      in {send_seconds:.1f} s; waiting for late bounces and complaints ...")
        written = _wait_for_late_mail(box, _say)
        deliveries = box.deliveries()
    finally:
        box.stop()

    bounces = read_bounces(maildir)
    outcomes = apply_bounces(sent, bounces, journal=journal, campaign=CAMPAIGN)
    attempts = read_attempts(journal, CAMPAIGN)
    counted = bounces["kind"].value_counts()
    _say(f"  bounces   {written:,} late reports in {maildir}: "
         + ", ".join(f"{int(n):,} {kind}" for kind, n in counted.items()))
    twice = int((deliveries["delivery_count"] > 1).sum())
    _say(f"  sandbox   accepted {len(deliveries):,} messages; "
         + ("nobody received one twice" if twice == 0 else f"{twice} were duplicates!"))

    summary = summary_table(outcomes)
    _say("")
    _say("Outcome per segment (recipients = the sum of the status columns):")
    _say(summary.to_string())
    _say("")
    stages = funnel(cleaned, outcomes)
    _say("Funnel:")
    _say(stages[["count", "share"]].to_string(formatters={"count": "{:,}".format,
                                                            "share": "{:.1%}".format}))

    deliveries_file = folder / _DELIVERIES
    deliveries.to_csv(deliveries_file, index=False)
    title = "smtpkit demo campaign"
    report_file = folder / _REPORT
    report_html(cleaned, outcomes, attempts=attempts, bounces=bounces, path=report_file,
                title=title)
    dashboard_file = folder / _DASHBOARD
    figure = dashboard(cleaned, outcomes, attempts=attempts, bounces=bounces, title=title)
    figure.savefig(dashboard_file, dpi=100)
    seconds = time.perf_counter() - started
    _say("")
    _say(f"Report:    {report_file.resolve()}")
    _say(f"Dashboard: {dashboard_file.resolve()}")
    _say(f"Journal:   {journal.resolve()} (smtpkit.outcomes(path, {CAMPAIGN!r}) reads it back)")
    _say(f"Done in {seconds:.1f} s.")
    sys.stdout.flush()
    return DemoResult(
        out=folder, campaign=CAMPAIGN, journal=journal, mailbox=maildir, report=report_file,
        dashboard=dashboard_file, deliveries_file=deliveries_file, contacts_source=source,
        cleaned=cleaned, outcomes=outcomes, attempts=attempts, bounces=bounces,
        deliveries=deliveries, summary=summary, send_seconds=send_seconds, seconds=seconds,
    )
