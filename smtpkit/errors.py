"""The one exception family of smtpkit.

Every exception smtpkit raises on purpose is a :class:`SmtpkitError`; each subclass also
subclasses the builtin it is closest to, so ``except ValueError`` keeps working for callers who
do not know smtpkit. Exceptions are for the caller's mistakes and for conditions that must stop
a whole campaign; a failure on one row is data in the outcome frame, never an exception.

Messages are whole sentences that say what to do.

Example:
    >>> from smtpkit.errors import ConfigError, SmtpkitError
    >>> issubclass(ConfigError, ValueError) and issubclass(ConfigError, SmtpkitError)
    True
"""

from __future__ import annotations

__all__ = [
    "CampaignAborted",
    "ConfigError",
    "InputError",
    "JournalError",
    "MissingColumnError",
    "SandboxError",
    "SmtpkitError",
    "TemplateError",
]


class SmtpkitError(Exception):
    """Base class of every error smtpkit raises on purpose."""


class ConfigError(SmtpkitError, ValueError):
    """An option or a combination of options is invalid (raised when the value is built)."""


class InputError(SmtpkitError, ValueError):
    """The data handed in cannot be used as a whole (wrong type, unreadable file, ...)."""


class MissingColumnError(InputError, KeyError):
    """A column the call needs is not in the frame; the message names the columns there are."""

    def __str__(self) -> str:  # KeyError would repr() the message and add quotes
        return str(self.args[0]) if self.args else ""


class TemplateError(SmtpkitError, ValueError):
    """A message template cannot be compiled (syntax error, unsafe constant header, ...)."""


class JournalError(SmtpkitError, RuntimeError):
    """The campaign journal cannot be used: wrong file, changed input on resume, locked, ..."""


class CampaignAborted(SmtpkitError, RuntimeError):
    """The campaign was stopped early because going on would burn the list or the account.

    Raised for a rejected sender (5xx on MAIL FROM), a 554 greeting, an authentication failure,
    a TLS downgrade, or an open circuit breaker. Everything attempted before is in the journal.
    """


class SandboxError(SmtpkitError, RuntimeError):
    """The embedded sandbox SMTP server could not start or was used wrongly."""
