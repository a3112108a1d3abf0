"""Shared test helpers: components that may be missing, and the public corpora."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: ../shared/corpora beside the checkout (absent on a user's machine: those tests skip).
CORPORA = ROOT.parent / "shared" / "corpora"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_component(name: str, available: bool, how_to_get: str) -> None:
    """Skip when a system component is missing; under CI=true, fail instead.

    Example: ``require_component("dovecot", shutil.which("dovecot") is not None,
    "apt-get install dovecot-imapd")``.
    """
    if available:
        return
    message = f"missing component: {name} (install with: {how_to_get})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires every component, see .ci/run", pytrace=False)
    pytest.skip(message)


def corpus(name: str) -> Path:
    """The folder of one public corpus; skips the test when ../shared/corpora is absent."""
    folder = CORPORA / name
    if not folder.is_dir():
        pytest.skip(f"corpus {name!r} not found at {folder} (only present beside a dev checkout)")
    return folder


def default_sigint() -> None:
    """``preexec_fn`` for a child that must get Ctrl-C as KeyboardInterrupt: a shell starts
    background jobs (``cmd &``, nohup) with SIGINT ignored, and the child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
