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

from .errors import SmtpkitError

__all__ = ["main"]

Runner = Callable[[argparse.Namespace], int]


def _parser_for(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, example: str
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
        "Run the end-to-end demo campaign on the embedded sandbox.",
        "smtpkit demo",
    )
    p.add_argument("--out", default="smtpkit-demo", help="folder for the report (default: %(default)s)")
    return _run_demo


def _run_demo(args: argparse.Namespace) -> int:
    print(
        "smtpkit demo is not built yet: it needs the Sandbox (issue 3), clean (issue 4), compose "
        "(issue 5), the send engine (issue 6), bounces (issue 7) and the report (issue 8)."
    )
    return 0


# --- sandbox --------------------------------------------------------------------------------


def _add_sandbox(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    _parser_for(
        sub,
        "sandbox",
        "Run the embedded sandbox SMTP server until Ctrl-C; prints host, port and credentials.",
        "smtpkit sandbox",
    )
    return _not_built("sandbox", "the Sandbox (issue 3)")


# --- clean ----------------------------------------------------------------------------------


def _add_clean(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    _parser_for(
        sub,
        "clean",
        "Clean a contact list: validate, normalize, dedupe; a reason per row.",
        "smtpkit clean data/contacts.csv -o cleaned.csv",
    )
    return _not_built("clean", "clean (issue 4)")


# --- verify ---------------------------------------------------------------------------------


def _add_verify(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    _parser_for(
        sub,
        "verify",
        "Check an SMTP configuration before a campaign: connect, TLS, EHLO, AUTH.",
        "SMTP_HOST=smtp.example.com SMTP_USERNAME=ann smtpkit verify",
    )
    return _not_built("verify", "verify (issue 5)")


# --- send -----------------------------------------------------------------------------------


def _add_send(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    _parser_for(
        sub,
        "send",
        "Send a campaign from a cleaned list and a template.",
        "smtpkit send cleaned.csv --template welcome.toml --campaign spring",
    )
    return _not_built("send", "the send engine (issue 6)")


# --- bounces --------------------------------------------------------------------------------


def _add_bounces(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    _parser_for(
        sub,
        "bounces",
        "Read bounces, complaints and auto-replies from a Maildir, mbox, .eml folder or IMAP.",
        "smtpkit bounces ~/Maildir -o bounces.csv",
    )
    return _not_built("bounces", "bounces (issue 7)")


# --- report ---------------------------------------------------------------------------------


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Runner:
    _parser_for(
        sub,
        "report",
        "Write a self-contained HTML report of a campaign from its journal.",
        "smtpkit report smtpkit.db --campaign spring -o report.html",
    )
    return _not_built("report", "the report (issue 8)")


# --------------------------------------------------------------------------------------------


def _not_built(name: str, what: str) -> Runner:
    def run(args: argparse.Namespace) -> int:
        print(f"smtpkit {name} is not built yet; it needs {what}.", file=sys.stderr)
        return 2

    return run


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
