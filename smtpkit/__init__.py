"""smtpkit: run an email campaign end to end from a notebook, on pandas DataFrames.

Clean a contact list, send it in segmented batches over SMTP, get every per-recipient outcome
back as a frame, fold bounces back in, and plot the delivery results.

Every public name of the pipeline is importable from here; importing the package registers the
``df.smtpkit`` accessor. matplotlib is imported only when a chart is drawn.

Example:
    >>> import smtpkit
    >>> smtpkit.SMTPConfig("127.0.0.1", 2525, tls="none").server
    '127.0.0.1:2525'
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as _pd

from . import accessor as _accessor  # noqa: F401  (registers df.smtpkit)
from .bounces import (
    BounceRecord,
    IMAPSource,
    apply_bounces,
    parse_bounce,
    read_bounces,
    suppressions,
    verp_token,
)
from .clean import clean, clean_report
from .compose import (
    Attachment,
    RowError,
    Template,
    check,
    make_message_id,
    preview,
    render,
    render_message,
)
from .config import MXDelivery, Secret, SMTPConfig
from .contacts import load_contacts
from .dns import Resolver, StaticBackend, resolve_mx
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
from .send import CircuitBreaker, Limit, RetryPolicy, asend, send
from .verify import VerifyReport, verify

__version__ = "0.1.0"

__all__ = [
    "STATUSES",
    "Attachment",
    "BounceRecord",
    "CampaignAborted",
    "CircuitBreaker",
    "ConfigError",
    "IMAPSource",
    "InputError",
    "Journal",
    "JournalError",
    "Limit",
    "MXDelivery",
    "MissingColumnError",
    "Outcome",
    "Resolver",
    "RetryPolicy",
    "RowError",
    "SMTPConfig",
    "Sandbox",
    "SandboxError",
    "Secret",
    "SmtpkitError",
    "StaticBackend",
    "Template",
    "TemplateError",
    "VerifyReport",
    "World",
    "apply_bounces",
    "asend",
    "attempts",
    "batches",
    "check",
    "clean",
    "clean_report",
    "codes",
    "dashboard",
    "funnel",
    "latency",
    "load_contacts",
    "make_message_id",
    "outcomes",
    "parse_bounce",
    "plot_bounce_reasons",
    "plot_funnel",
    "plot_latency",
    "plot_outcomes",
    "plot_timeline",
    "preview",
    "read_bounces",
    "render",
    "render_message",
    "report_html",
    "resolve_mx",
    "segment",
    "send",
    "summarize",
    "suppressions",
    "timeline",
    "verify",
    "verp_token",
]


# Defined after the imports on purpose: importing the ``smtpkit.outcomes`` module binds the
# package attribute ``outcomes`` to the module; this function takes the name back.
def outcomes(journal: Journal | str | _os.PathLike[str], campaign: str, /) -> _pd.DataFrame:
    """The latest outcome of every recipient of ``campaign``, read from the journal file.

    Works from any process at any time, also while the campaign is running.

    Example:
        >>> import os, tempfile, pandas as pd, smtpkit
        >>> db = os.path.join(tempfile.mkdtemp(), "smtpkit.db")
        >>> hello = smtpkit.Template(sender="news@example.com", subject="Hi", text="Hello")
        >>> with smtpkit.Sandbox() as box:
        ...     _ = smtpkit.send(pd.DataFrame({"email": ["ann@example.com"]}), hello, box.config,
        ...                      campaign="hello", journal=db, progress=False)
        >>> smtpkit.outcomes(db, "hello")["status"].tolist()
        ['sent']
    """
    from .journal import read_outcomes

    return read_outcomes(journal, campaign)


def attempts(journal: Journal | str | _os.PathLike[str], campaign: str, /) -> _pd.DataFrame:
    """Every SMTP attempt of ``campaign`` (one row per attempt), read from the journal file."""
    from .journal import read_attempts

    return read_attempts(journal, campaign)
