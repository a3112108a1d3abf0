"""smtpkit: run an email campaign end to end from a notebook, on pandas DataFrames.

Clean a contact list, send it in segmented batches over SMTP, get every per-recipient outcome
back as a frame, fold bounces back in, and plot the delivery results.

Public names are loaded on first use (``smtpkit.clean`` imports ``smtpkit.clean`` the module only
when asked), so ``import smtpkit`` stays fast and light. Importing it registers the
``df.smtpkit`` accessor.

Example:
    >>> import smtpkit
    >>> smtpkit.SMTPConfig("127.0.0.1", 2525, tls="none").server
    '127.0.0.1:2525'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import outcomes as _outcomes_module  # noqa: F401  (bound before the function below)
from .errors import (
    CampaignAborted,
    ConfigError,
    InputError,
    JournalError,
    MissingColumnError,
    SandboxError,
    SmtpkitError,
    TemplateError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "load_contacts": "contacts",
    "clean": "clean",
    "clean_report": "clean",
    "Resolver": "dns",
    "StaticBackend": "dns",
    "resolve_mx": "dns",
    "segment": "segment",
    "batches": "segment",
    "Template": "compose",
    "render": "compose",
    "preview": "compose",
    "check": "compose",
    "SMTPConfig": "config",
    "MXDelivery": "config",
    "Secret": "config",
    "verify": "verify",
    "VerifyReport": "verify",
    "send": "send",
    "asend": "send",
    "RetryPolicy": "send",
    "Journal": "journal",
    "Outcome": "outcomes",
    "STATUSES": "outcomes",
    "parse_bounce": "bounces",
    "read_bounces": "bounces",
    "apply_bounces": "bounces",
    "suppressions": "bounces",
    "IMAPSource": "bounces",
    "BounceRecord": "bounces",
    "summarize": "report",
    "funnel": "report",
    "latency": "report",
    "timeline": "report",
    "codes": "report",
    "report_html": "report",
    "plot_funnel": "plot",
    "plot_outcomes": "plot",
    "plot_latency": "plot",
    "plot_timeline": "plot",
    "plot_bounce_reasons": "plot",
    "dashboard": "plot",
    "Sandbox": "sandbox",
    "World": "sandbox",
}

__all__ = [
    "CampaignAborted",
    "ConfigError",
    "InputError",
    "JournalError",
    "MissingColumnError",
    "SandboxError",
    "SmtpkitError",
    "TemplateError",
    "attempts",
    "outcomes",
    *_LAZY,
]


def outcomes(journal: Any, campaign: str, /) -> Any:
    """The latest outcome of every recipient of ``campaign``, read from the journal file.

    Works from any process at any time, also while the campaign is running.
    """
    from .journal import read_outcomes

    return read_outcomes(journal, campaign)


def attempts(journal: Any, campaign: str, /) -> Any:
    """Every SMTP attempt of ``campaign`` (one row per attempt), read from the journal file."""
    from .journal import read_attempts

    return read_attempts(journal, campaign)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'smtpkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


from . import accessor as _accessor  # noqa: E402,F401  (registers df.smtpkit)

# A function named like its module must be bound eagerly: once anything imports the submodule,
# the import system sets the package attribute to the module, and __getattr__ is not asked.
from .clean import clean  # noqa: E402
from .segment import segment  # noqa: E402
from .verify import verify  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from .bounces import BounceRecord, IMAPSource, apply_bounces, parse_bounce, read_bounces, suppressions
    from .clean import clean, clean_report
    from .compose import Template, check, preview, render
    from .config import MXDelivery, Secret, SMTPConfig
    from .contacts import load_contacts
    from .dns import Resolver, StaticBackend, resolve_mx
    from .journal import Journal
    from .outcomes import STATUSES, Outcome
    from .plot import (
        dashboard,
        plot_bounce_reasons,
        plot_funnel,
        plot_latency,
        plot_outcomes,
        plot_timeline,
    )
    from .report import codes, funnel, latency, report_html, summarize, timeline
    from .sandbox import Sandbox, World
    from .segment import batches, segment
    from .send import RetryPolicy, asend, send
    from .verify import VerifyReport, verify
