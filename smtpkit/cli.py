"""The ``smtpkit`` command: ``demo``, ``sandbox``, ``clean``, ``verify``, ``send``, ``bounces``,
``report``.

Each sub-command has an ``_add_<name>`` function that declares its arguments (with an example in
its ``--help``) and a ``_run_<name>`` function that does the work and returns the exit status.

Example:
    $ smtpkit demo
    $ smtpkit clean data/contacts.csv -o cleaned.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import SmtpkitError

if TYPE_CHECKING:
    from .bounces import IMAPSource

__all__ = ["main"]

Runner = Callable[[argparse.Namespace], int]


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _parser_for(
    sub: Subparsers, name: str, help_text: str, example: str
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# --- demo -----------------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    p = _parser_for(
        sub,
        "demo",
        "Run the end-to-end demo campaign on the embedded sandbox; writes an HTML report.",
        "smtpkit demo --out smtpkit-demo   # then open smtpkit-demo/report.html",
    )
    p.add_argument(
        "--out", default="smtpkit-demo", help="folder for the report (default: %(default)s)"
    )
    p.add_argument(
        "--contacts",
        default=None,
        help="contact list with the columns of data/contacts.csv (email, first_name, last_name, "
        "plan, contact_id, opt_in); default: data/contacts.csv",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the sandbox world")
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return _run_demo


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_SEED, run_demo

    seed = DEMO_SEED if args.seed is None else args.seed
    run_demo(args.out, contacts=args.contacts, progress=not args.no_progress, seed=seed)
    return 0


# --- sandbox --------------------------------------------------------------------------------


def _add_sandbox(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    p = _parser_for(
        sub,
        "sandbox",
        "Run the embedded sandbox SMTP server until Ctrl-C; prints host, port and credentials.",
        "smtpkit sandbox --port 2525 --mailbox sandbox-mail",
    )
    p.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    p.add_argument("--seed", type=int, default=None, help="seed of the simulated world")
    p.add_argument(
        "--mailbox", default=None, help="Maildir for late bounces (default: a temporary folder)"
    )
    p.add_argument(
        "--accept-all",
        action="store_true",
        help="accept every message instead of the demo world's realistic mix",
    )
    return _run_sandbox


def _run_sandbox(args: argparse.Namespace) -> int:
    import signal
    import time

    from .sandbox import Sandbox, World

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    world = World() if args.accept_all else World.default()
    box = Sandbox(world, port=args.port, auth=True, mailbox=args.mailbox, seed=args.seed)
    previous = signal.signal(signal.SIGTERM, interrupt)
    box.start()
    try:
        password = box.password.reveal() if box.password is not None else ""
        print(f"smtpkit sandbox listening on {box.host} port {box.port}")
        print("  STARTTLS with the CA file below; AUTH PLAIN or LOGIN with these credentials")
        print(f"  CA file:  {box.ca_file}")
        print(f"  username: {box.username}")
        print(f"  password: {password}")
        print(f"  Maildir:  {box.mailbox}")
        print("Press Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        delivered = len(box.deliveries())
        box.stop()
        signal.signal(signal.SIGTERM, previous)
    print(f"stopped after {delivered} deliveries.", flush=True)
    return 0


# --- clean ----------------------------------------------------------------------------------


def _add_clean(sub: Subparsers) -> Runner:
    p = _parser_for(
        sub,
        "clean",
        "Clean a contact list: validate, normalize, dedupe; a reason per row.",
        "smtpkit clean data/contacts.csv -o cleaned.csv",
    )
    p.add_argument("input", help="contact list: .csv, .xlsx or .parquet")
    p.add_argument(
        "-o", "--output", default=None, help="cleaned list (.csv or .parquet; default: none)"
    )
    p.add_argument("--column", default=None, help="the address column (default: found by name)")
    p.add_argument("--check-mx", action="store_true", help="look up each domain's MX in the DNS")
    p.add_argument(
        "--dns-zone",
        default=None,
        metavar="JSON",
        help="with --check-mx: answer from recorded DNS answers instead of the network",
    )
    p.add_argument(
        "--suppress", default=None, metavar="FILE", help="CSV or text file of addresses to skip"
    )
    return _run_clean


def _run_clean(args: argparse.Namespace) -> int:
    from .clean import clean, clean_report
    from .contacts import load_contacts
    from .errors import ConfigError

    if args.dns_zone and not args.check_mx:
        raise ConfigError("--dns-zone only makes sense with --check-mx; add --check-mx.")
    resolver = None
    if args.dns_zone:
        from .dns import Resolver, StaticBackend

        resolver = Resolver(backend=StaticBackend.from_json(args.dns_zone))
    frame = load_contacts(args.input, column=args.column)
    cleaned = clean(frame, check_mx=args.check_mx, resolver=resolver, suppress=args.suppress)
    print(repr(clean_report(cleaned)))
    if args.output:
        if args.output.lower().endswith((".parquet", ".pq")):
            cleaned.to_parquet(args.output)
        else:
            cleaned.to_csv(args.output, index=False)
        sendable = int(cleaned["sendable"].sum())
        print(f"wrote {args.output} ({len(cleaned):,} rows, {sendable:,} sendable)")
    return 0


# --- verify ---------------------------------------------------------------------------------


def _add_verify(sub: Subparsers) -> Runner:
    p = _parser_for(
        sub,
        "verify",
        "Check an SMTP configuration before a campaign: connect, TLS, EHLO, AUTH, and optionally "
        "one test message. The server comes from the SMTP_HOST, SMTP_PORT, SMTP_TLS, "
        "SMTP_USERNAME, SMTP_PASSWORD, SMTP_CA_FILE ... environment variables; without "
        "SMTP_PASSWORD the password is asked for (hidden) when SMTP_USERNAME is set. Exits 0 when "
        "the server is ready, 1 when a step failed.",
        "SMTP_HOST=smtp.example.com SMTP_USERNAME=ann@example.com smtpkit verify \\\n"
        "    --send-test-to ann@example.com",
    )
    p.add_argument("--send-test-to", default=None, metavar="ADDRESS",
                   help="also send one short test message to this address")
    p.add_argument("--sender", default=None, metavar="ADDRESS",
                   help="sender of the test message (default: the username, when an address)")
    return _run_verify


def _run_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    report = verify(_config_from_env(), send_test_to=args.send_test_to, sender=args.sender)
    print(report)
    return 0 if report.ok else 1


def _config_from_env() -> Any:
    """``SMTPConfig.from_env()``; with SMTP_USERNAME but no SMTP_PASSWORD, ask for the password
    (hidden) when it is first needed, instead of taking it on the command line."""
    import os

    from .config import Secret, SMTPConfig

    username = os.environ.get("SMTP_USERNAME")
    if username and not os.environ.get("SMTP_PASSWORD"):
        rest = {k: v for k, v in os.environ.items() if k != "SMTP_USERNAME"}
        config = SMTPConfig.from_env(environ=rest)
        return config.replace(username=username,
                              password=Secret.prompt(f"SMTP password for {username}: "))
    return SMTPConfig.from_env()


# --- send -----------------------------------------------------------------------------------


def _add_send(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    p = _parser_for(
        sub,
        "send",
        "Send a campaign from a cleaned list and a template. The SMTP server comes from the "
        "SMTP_HOST, SMTP_PORT, SMTP_TLS, SMTP_USERNAME, SMTP_PASSWORD ... environment variables "
        "(or --mx for direct delivery). Running the same command again resumes the campaign.",
        "SMTP_HOST=smtp.example.com SMTP_USERNAME=ann SMTP_PASSWORD=... \\\n"
        "    smtpkit send cleaned.csv --template welcome.toml --campaign spring -o outcomes.csv\n"
        "\n"
        "welcome.toml:\n"
        '  subject = "Hello {first_name}"\n'
        '  sender = "Acme News <news@acme.example>"\n'
        '  text_file = "welcome.txt"      # or text = "..."; html / html_file likewise\n'
        '  unsubscribe = "https://acme.example/unsubscribe?id={contact_id}"',
    )
    p.add_argument("input", help="contact list (.csv, .parquet or .xlsx), e.g. from smtpkit clean")
    p.add_argument("--template", required=True, metavar="TOML", help="the message template")
    p.add_argument("--campaign", required=True, help="campaign name (the key to resume it)")
    p.add_argument("--journal", default="smtpkit.db", help="journal file (default: %(default)s)")
    p.add_argument("--mx", action="store_true", help="deliver to each domain's MX hosts")
    p.add_argument("--concurrency", type=int, default=8, help="connections (default: %(default)s)")
    p.add_argument("--rate", type=float, default=None, help="messages per second at most")
    p.add_argument("--segment", default=None, metavar="COLUMN", help="send segment by segment")
    p.add_argument("--notify", default=None, metavar="ADDRESS", help="mail a failure summary")
    p.add_argument("--dry-run", action="store_true", help="render and check, send nothing")
    p.add_argument("-o", "--output", default=None, help="write the outcomes (.csv or .parquet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return _run_send


def _load_template(path: str) -> Any:
    import tomllib
    from pathlib import Path

    from .compose import Template
    from .errors import InputError

    source = Path(path)
    try:
        spec = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"The template file {path!r} cannot be read as TOML: {exc}.") from None
    for part in ("text", "html"):
        name = spec.pop(f"{part}_file", None)
        if name is not None:
            if part in spec:
                raise InputError(f"{path}: give {part} or {part}_file, not both.")
            try:
                spec[part] = (source.parent / name).read_text(encoding="utf-8")
            except OSError as exc:
                raise InputError(f"{path}: {part}_file {name!r} cannot be read: {exc}.") from None
    if "attachments" in spec:
        spec["attachments"] = [str(source.parent / a) for a in spec["attachments"]]
    known = {"subject", "text", "html", "sender", "reply_to", "headers", "attachments",
             "unsubscribe", "to"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise InputError(f"{path}: unknown template key(s) {', '.join(unknown)}; use "
                         f"{', '.join(sorted(known))}, text_file or html_file.")
    return Template(**spec)


# Columns ``smtpkit clean`` writes as True/False; read back as booleans, the rest stays text.
_CLEAN_FLAGS = ("valid", "duplicate", "role", "disposable", "smtputf8", "mx_ok", "suppressed",
                "sendable")


def _read_cleaned_list(path: str) -> Any:
    """Read a contact list as text (leading zeros and "NA" cells kept, as ``load_contacts``
    does) and turn the flag columns of a cleaned list back into booleans."""
    import pandas as pd

    from .contacts import load_contacts

    frame = load_contacts(path)
    for column in _CLEAN_FLAGS:
        if column in frame.columns:
            text = frame[column].astype("string").str.strip().str.lower()
            if text.isin(["true", "false", ""]).all():
                frame[column] = text.map({"true": True, "false": False}).astype("boolean")
    assert isinstance(frame, pd.DataFrame)
    return frame


def _run_send(args: argparse.Namespace) -> int:
    from .send import send

    frame = _read_cleaned_list(args.input)
    template = _load_template(args.template)
    config: Any = "mx" if args.mx else _config_from_env()
    result = send(
        frame, template, config, campaign=args.campaign, journal=args.journal,
        segment=args.segment, concurrency=args.concurrency, rate=args.rate,
        dry_run=args.dry_run, notify=args.notify, progress=not args.no_progress,
    )
    counts = result["status"].value_counts()
    listed = ", ".join(f"{status} {int(n):,}" for status, n in counts.items())
    print(f"campaign {args.campaign!r}{' (dry run)' if args.dry_run else ''}: {listed} "
          f"of {len(result):,} rows")
    if args.output:
        if args.output.lower().endswith((".parquet", ".pq")):
            result.to_parquet(args.output)
        else:
            result.to_csv(args.output)
        print(f"wrote {args.output} ({len(result):,} rows)")
    not_sent = int(result["status"].isin(["failed", "deferred", "unknown"]).sum())
    return 0 if not_sent == 0 or args.dry_run else 3


# --- bounces --------------------------------------------------------------------------------


def _add_bounces(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    p = _parser_for(
        sub,
        "bounces",
        "Read bounces, complaints and auto-replies from a Maildir, mbox, .eml folder or IMAP.",
        "smtpkit bounces ~/Maildir -o bounces.csv\n"
        "  IMAP_PASSWORD=... smtpkit bounces imaps://bounces@imap.example.com/INBOX -o b.csv",
    )
    p.add_argument(
        "source",
        help="a .eml file, a folder of .eml files, an mbox file, a Maildir, or "
        "imaps://USER@HOST[:PORT]/FOLDER (password from $IMAP_PASSWORD; "
        "imap://... uses STARTTLS)",
    )
    p.add_argument("-o", "--output", default=None, help="CSV file for the rows (default: none)")
    p.add_argument("--since", default=None, help="only reports that arrived then or later")
    p.add_argument("--ca-file", default=None, help="CA certificates (PEM) for the IMAP server")
    p.add_argument("--state-file", default=None,
                   help="IMAP: remember what was read here, and read only new mail next time")
    p.add_argument("--journal", default=None, help="also record the reports in this journal")
    p.add_argument("--campaign", default=None, help="campaign name for --journal")
    return _run_bounces


def _bounce_source(args: argparse.Namespace) -> str | IMAPSource:
    import os
    from urllib.parse import unquote, urlsplit

    from .bounces import IMAPSource
    from .errors import ConfigError

    if not args.source.startswith(("imap://", "imaps://")):
        return args.source
    url = urlsplit(args.source)
    password = os.environ.get("IMAP_PASSWORD")
    if not url.username or not url.hostname:
        raise ConfigError("An IMAP source looks like imaps://USER@HOST[:PORT]/FOLDER.")
    if not password:
        raise ConfigError("Set IMAP_PASSWORD to the IMAP password (it is never a URL part).")
    implicit = url.scheme == "imaps"
    return IMAPSource(
        url.hostname,
        url.port or (993 if implicit else 143),
        unquote(url.username),
        password,
        folder=unquote(url.path.lstrip("/")) or "INBOX",
        tls="implicit" if implicit else "starttls",
        ca_file=args.ca_file,
        state_file=args.state_file,
    )


def _run_bounces(args: argparse.Namespace) -> int:
    from .bounces import read_bounces, suppressions

    frame = read_bounces(_bounce_source(args), since=args.since)
    if args.output:
        frame.to_csv(args.output, index=False)
    if args.journal:
        from .journal import Journal

        added = Journal(args.journal).record_bounces(args.campaign, frame)
        print(f"recorded {added:,} new report(s) in {args.journal}")
    if frame.empty:
        print("no reports found")
    else:
        counts = frame.groupby(["kind", "reason"]).size().rename("rows").reset_index()
        print(counts.to_string(index=False))
    print(f"{len(frame):,} row(s); {len(suppressions(frame)):,} address(es) to suppress"
          + (f"; wrote {args.output}" if args.output else ""))
    return 0


# --- report ---------------------------------------------------------------------------------


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    p = _parser_for(
        sub,
        "report",
        "Write a self-contained HTML report of a campaign from its journal.",
        "smtpkit report smtpkit.db --campaign spring -o report.html --dashboard dashboard.png",
    )
    p.add_argument("journal", help="the journal file that smtpkit send wrote (e.g. smtpkit.db)")
    p.add_argument(
        "--campaign", default=None, help="campaign name (may be left out when there is only one)"
    )
    p.add_argument("-o", "--output", default="report.html", help="HTML file (default: %(default)s)")
    p.add_argument("--title", default=None, help="page title (default: the campaign's name)")
    p.add_argument("--dashboard", default=None, metavar="PNG", help="also save the dashboard image")
    return _run_report


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import InputError
    from .journal import Journal, read_attempts, read_outcomes
    from .report import report_html, summarize

    campaign = args.campaign
    if campaign is None:
        if not Path(args.journal).is_file():
            raise InputError(
                f"There is no journal at {args.journal!r}; pass the file that smtpkit send wrote."
            )
        names = Journal(args.journal).campaigns()["campaign"].tolist()
        if len(names) != 1:
            listed = ", ".join(repr(n) for n in names) or "none"
            raise InputError(
                f"The journal {args.journal!r} holds {len(names)} campaigns ({listed}); "
                f"choose one with --campaign NAME."
            )
        campaign = names[0]
    outcomes = read_outcomes(args.journal, campaign)
    attempts = read_attempts(args.journal, campaign)
    bounces = Journal(args.journal).bounces(campaign)
    title = args.title or f"Campaign report: {campaign}"
    report_html(None, outcomes, attempts=attempts, bounces=bounces, path=args.output, title=title)
    print(summarize(outcomes).to_string())
    print(f"wrote {args.output} ({len(outcomes):,} recipients, {len(attempts):,} attempts)")
    if args.dashboard:
        from .plot import dashboard

        target = Path(args.dashboard)
        target.parent.mkdir(parents=True, exist_ok=True)
        dashboard(None, outcomes, attempts=attempts, bounces=bounces, title=title).savefig(
            target, dpi=100
        )
        print(f"wrote {args.dashboard}")
    return 0


# --------------------------------------------------------------------------------------------


_COMMANDS = (_add_demo, _add_sandbox, _add_clean, _add_verify, _add_send, _add_bounces, _add_report)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smtpkit`` console script."""
    parser = argparse.ArgumentParser(
        prog="smtpkit",
        description="Run an email campaign end to end: clean, send, read bounces, report.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners: dict[str, Runner] = {}
    for add in _COMMANDS:
        name = add.__name__.removeprefix("_add_")
        runners[name] = add(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return runners[args.command](args)
    except SmtpkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
