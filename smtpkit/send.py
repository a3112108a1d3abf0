"""The campaign engine: send a frame's rows over SMTP; every outcome back as a frame.

``send(frame, template, config, campaign=...)`` renders one personalized message per row
(``compose``), hands it to a pool of SMTP connections (``transport``) under global, per-domain
and adaptive limits, retries what failed temporarily, and records every attempt in a journal
(``journal``) so that a crash, a kernel restart or Ctrl-C loses nothing and sends nothing twice:
running the same call again resumes. It returns one row per input row, same index, with the
columns of :data:`smtpkit.outcomes.OUTCOME_COLUMNS`.

Statuses:

``sent``
    The server answered 250 to the message data. Not yet proof of delivery (a bounce may
    follow; see ``smtpkit.apply_bounces``).
``deferred``
    Temporarily refused (4xx, greylisting, throttling, connection refused or lost before the
    message data, DNS timeout) and the retries ran out; or, in direct MX delivery, none of the
    domain's MX hosts could be reached over verified TLS (``tls_failed``, ``tls_unavailable``:
    not retried within the run). Running the same send again retries it.
``failed``
    Permanently refused (5xx, such as ``user_unknown``), or the row cannot become a message
    (``missing_field``, ``unsafe_header``, ``invalid_recipient``, ``smtputf8_required`` ...).
    Never retried by the server's verdict; a row that failed before reaching a server is
    rendered again on the next run (after you fixed the data).
``unknown``
    The connection broke after the final "." and before the reply, so the server may have
    accepted the message (RFC 1047). Never re-sent automatically: a duplicate is worse.
``skipped``
    Not attempted: not ``sendable`` after cleaning (with its ``reason``), ``duplicate`` of an
    earlier row's address, ``suppressed`` (hard bounce or complaint recorded in the journal),
    no usable address (``missing_address`` / ``invalid_address``), or a dry run.

The envelope sender is VERP-style, one per recipient: ``bounces+<token>@<sender domain>``
(``verp=``), so a bounce names the recipient it is about; the token identifies the campaign
and recipient in the journal (``envelope_sender`` column).

Slow domains: every recipient domain has its own queue and limits (``per_domain``, and an
adaptive slowdown after throttling replies), and a domain that has to wait never holds up the
others: rows for it are set aside unrendered while the rest of the list goes on. A 421 that
only closes the connection (a server's limit of messages per connection) is answered by
reconnecting at once; a 421 about rates, or one on a fresh connection, slows the domain down.
An hourly cap (``Limit(per_hour=...)``) counts the attempts of earlier runs of the campaign
in the journal.

Speed: messages are rendered from a compiled template a chunk of rows at a time, off the path
between a server's reply and the next message; each connection carries many messages with
pipelined commands (the next envelope travels with the current content); the journal's
per-message intent is a store into a memory-mapped file and its outcomes are handed in groups
to a writer process that commits them on another core; outcomes are kept in compact columns
(no Python object per recipient) from which the returned frame is built. About 11,000-13,000
messages/s to Postfix's smtp-sink here, about 2.3x raw aiosmtplib, and memory that does not
grow with the list beyond the input and returned frames; see ``bench/send_bench.py``.

Example:
    >>> import pandas as pd, smtpkit
    >>> from smtpkit.sandbox import Sandbox
    >>> frame = pd.DataFrame({"email": ["ann@example.com", "bob@example.com"],
    ...                       "first_name": ["Ann", "Bob"]})
    >>> template = smtpkit.Template(subject="Hi {first_name}", text="Hello {first_name}!",
    ...                             sender="news@shop.example")
    >>> with Sandbox(tls=False) as box:
    ...     result = smtpkit.send(frame, template, box.config, campaign="doc",
    ...                           journal=None, progress=False)
    >>> result["status"].tolist()
    ['sent', 'sent']
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import os
import random
import re
import time
import warnings
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from . import _portal
from ._send_journal import attempt_record
from ._send_plan import (
    Plan,
    RowSource,
    Verp,
    plan_rows,
    recipient_domain,
    record_for,
    templates_by_segment,
)
from ._send_report import Progress, notify_message, notify_text
from ._send_results import Results
from ._send_routes import TLS_REASONS, Pool, Route, Router
from ._send_sched import Item, Pace, Scheduler
from .compose import RowError, Template
from .config import MXDelivery, SMTPConfig
from .errors import CampaignAborted, ConfigError, InputError, JournalError, MissingColumnError
from .journal import (
    STATUS_CODES,
    CampaignLog,
    Journal,
    NullLog,
    RecipientRecord,
    _label_text,
    has_bounces,
)
from .outcomes import OUTCOME_COLUMNS, OUTCOME_DTYPES, coerce_dtypes
from .segment import require_unique_columns
from .transport import Envelope, SMTPConnection, SMTPReply, TransportError

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MX_DOMAIN_CONCURRENCY",
    "DRY_RUN_COLUMNS",
    "CircuitBreaker",
    "Limit",
    "RetryPolicy",
    "asend",
    "send",
]

#: SMTP connections (and messages in flight) at once, by default.
DEFAULT_CONCURRENCY = 8
#: Connections per recipient domain at once in direct MX delivery, unless ``per_domain`` says.
DEFAULT_MX_DOMAIN_CONCURRENCY = 4
#: Extra columns of a dry run's frame.
DRY_RUN_COLUMNS: tuple[str, ...] = ("would", "size", "detail")
# Seconds messages already on the wire may take to finish after Ctrl-C.
_GRACE_SECONDS = 0.5
_FINAL_CODES = frozenset(
    STATUS_CODES[s] for s in ("sent", "failed", "unknown", "bounced", "complained")
)
_NOT_ERRORS = frozenset({"greylisted", "throttled", "connection_closed"})


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How temporary failures are retried within one run.

    Parameters:
        attempts: tries per recipient for temporary failures (the first one included).
        backoff: seconds before the first retry; each next wait is ``factor`` times longer,
            at most ``max_backoff``, randomized by +- ``jitter`` (a share).
        throttle_limit: throttling replies tolerated per recipient. They slow the domain
            down and do not use up ``attempts``; past this many the row is ``deferred``. A
            421 that only closes the connection (``connection_closed``, e.g. after the
            server's limit of messages per connection) counts here too, and is tried again at
            once on a new connection without slowing down.

    Example:
        >>> p = RetryPolicy(backoff=1.0, factor=2.0, jitter=0.0)
        >>> [p.delay(n) for n in (1, 2, 3)]
        [1.0, 2.0, 4.0]
    """

    attempts: int = 5
    backoff: float = 5.0
    factor: float = 3.0
    max_backoff: float = 600.0
    jitter: float = 0.25
    throttle_limit: int = 50

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or \
                self.attempts < 1:
            raise ConfigError(f"RetryPolicy attempts must be a whole number of at least 1; got "
                              f"{self.attempts!r}.")
        for name in ("backoff", "factor", "max_backoff", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value >= 0
            ):
                raise ConfigError(f"RetryPolicy {name} must be a number of at least 0; got "
                                  f"{value!r}.")
        if self.factor < 1:
            raise ConfigError(f"RetryPolicy factor must be at least 1; got {self.factor!r}.")
        if self.jitter >= 1:
            raise ConfigError(f"RetryPolicy jitter must be below 1; got {self.jitter!r}.")
        if isinstance(self.throttle_limit, bool) or not isinstance(self.throttle_limit, int) \
                or self.throttle_limit < 0:
            raise ConfigError("RetryPolicy throttle_limit must be a whole number of at least 0.")

    def delay(self, retry: int, /, *, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
        base = min(self.max_backoff, self.backoff * self.factor ** max(0, retry - 1))
        if self.jitter and rng is not None:
            base *= rng.uniform(1 - self.jitter, 1 + self.jitter)
        return base


@dataclasses.dataclass(frozen=True)
class Limit:
    """A sending limit: messages per second, per sliding hour, and connections at once.

    ``rate=Limit(per_second=50, per_hour=20_000)`` limits the campaign;
    ``per_domain={"yahoo.com": Limit(per_second=5, concurrency=2), "*": 20}`` limits each
    recipient domain (a plain number means messages per second; ``"*"`` is every other domain).

    Example:
        >>> Limit(per_second=5).per_second
        5
    """

    per_second: float | None = None
    per_hour: int | None = None
    concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.per_second is not None and (
            isinstance(self.per_second, bool) or not isinstance(self.per_second, int | float)
            or not (math.isfinite(self.per_second) and self.per_second > 0)
        ):
            raise ConfigError(f"per_second must be a number above 0; got {self.per_second!r}.")
        for name in ("per_hour", "concurrency"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{name} must be a whole number of at least 1; got {value!r}.")

    def pace(self) -> Pace | None:
        if self.per_second is None and self.per_hour is None:
            return None
        return Pace(per_second=self.per_second, per_hour=self.per_hour)


@dataclasses.dataclass(frozen=True)
class CircuitBreaker:
    """Stop (or pause) a campaign whose recent attempts mostly fail, instead of burning the list.

    Over the last ``window`` attempts (once there are ``min_attempts``), if more than
    ``max_error_rate`` of them failed (permanent or temporary refusals and connection errors;
    greylisting and throttling do not count), the campaign stops with ``CampaignAborted``
    (``pause=None``) or sends nothing for ``pause`` seconds and goes on.

    Example:
        >>> CircuitBreaker(max_error_rate=0.3).window
        100
    """

    window: int = 100
    min_attempts: int = 50
    max_error_rate: float = 0.5
    pause: float | None = None

    def __post_init__(self) -> None:
        for name in ("window", "min_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CircuitBreaker {name} must be a whole number of at least 1.")
        if not 0 < self.max_error_rate <= 1:
            raise ConfigError("CircuitBreaker max_error_rate must be above 0 and at most 1.")
        if self.pause is not None and not self.pause > 0:
            raise ConfigError("CircuitBreaker pause must be a number of seconds above 0, or None.")


class _Breaker:
    def __init__(self, config: CircuitBreaker) -> None:
        self.config = config
        self.recent: collections.deque[str | None] = collections.deque(maxlen=config.window)
        self.errors = 0  # how many of ``recent`` are errors (kept as attempts come and go)

    def observe(self, reply: SMTPReply) -> str | None:
        """Record one attempt; return a description when the breaker trips."""
        error = None if reply.kind == "ok" or reply.reason in _NOT_ERRORS else reply.reason
        recent = self.recent
        if len(recent) == recent.maxlen and recent[0] is not None:
            self.errors -= 1  # the oldest attempt leaves the window
        recent.append(error)
        if error is not None:
            self.errors += 1
        n = len(recent)
        if n < self.config.min_attempts or self.errors / n <= self.config.max_error_rate:
            return None
        errors = [e for e in recent if e is not None]
        top = collections.Counter(errors).most_common(3)
        recent.clear()
        self.errors = 0
        listed = ", ".join(f"{reason} ({count})" for reason, count in top)
        return f"{len(errors)} of the last {n} attempts failed: {listed}"


def _check_options(
    frame: Any,
    *,
    campaign: Any,
    concurrency: Any,
    rate: Any,
    per_domain: Any,
    retries: Any,
    notify: Any,
    breaker: Any,
) -> tuple[Pace | None, dict[str, Limit], list[str]]:
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"send() takes a pandas DataFrame first, not {type(frame).__name__}.")
    require_unique_columns(frame)
    if not isinstance(campaign, str) or not campaign.strip() or len(campaign) > 200 or \
            re.search(r"[\x00-\x1f\x7f]", campaign):
        raise ConfigError(
            "campaign must be a short name such as 'spring-sale' (no line breaks); it names the "
            "campaign in the journal so that running the same send again resumes it."
        )
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or \
            not 1 <= concurrency <= 1000:
        raise ConfigError(f"concurrency must be a whole number from 1 to 1000; got "
                          f"{concurrency!r}.")
    if rate is None:
        pace = None
    elif isinstance(rate, Limit):
        if rate.concurrency is not None:
            raise ConfigError("rate=Limit(...) limits messages per second and per hour; set the "
                              "number of connections with concurrency= instead.")
        pace = rate.pace()
    elif isinstance(rate, int | float) and not isinstance(rate, bool):
        pace = Limit(per_second=rate).pace()
    else:
        raise ConfigError(f"rate must be messages per second (a number) or a Limit(...); got "
                          f"{rate!r}.")
    limits: dict[str, Limit] = {}
    if per_domain is not None:
        if not isinstance(per_domain, Mapping):
            raise ConfigError('per_domain must be a dict such as {"yahoo.com": 5} (messages/s) '
                              'or {"yahoo.com": Limit(per_second=5, concurrency=2)}.')
        for domain, value in per_domain.items():
            if not isinstance(domain, str) or not domain.strip():
                raise ConfigError(f"per_domain keys are domain names; got {domain!r}.")
            if isinstance(value, Limit):
                limit = value
            elif isinstance(value, int | float) and not isinstance(value, bool):
                limit = Limit(per_second=value)
            else:
                raise ConfigError(f"per_domain[{domain!r}] must be messages per second or a "
                                  f"Limit(...); got {value!r}.")
            key = "*" if domain.strip() == "*" else _ascii_domain(domain)
            limits[key] = limit
    if not isinstance(retries, RetryPolicy):
        raise ConfigError(f"retries must be a RetryPolicy(...); got {retries!r}.")
    if breaker is not None and not isinstance(breaker, CircuitBreaker):
        raise ConfigError(f"breaker must be a CircuitBreaker(...) or None; got {breaker!r}.")
    notify_to: list[str] = []
    if notify is not None:
        items = [notify] if isinstance(notify, str) else notify
        if not isinstance(items, Sequence) or not items:
            raise ConfigError("notify must be an address such as 'ops@example.com' (or a list).")
        for address in items:
            if not isinstance(address, str) or not re.fullmatch(
                r"[^@\s<>\x00-\x1f\x7f]+@[^@\s<>\x00-\x1f\x7f]+\.[^@\s<>\x00-\x1f\x7f]+", address
            ):
                raise ConfigError(f"notify address {address!r} is not an address such as "
                                  "'ops@example.com'.")
            notify_to.append(address)
    return pace, limits, notify_to


def _ascii_domain(domain: str) -> str:
    name = domain.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            import idna

            name = idna.encode(name, uts46=True).decode("ascii")
        except Exception as exc:
            raise ConfigError(f"per_domain key {domain!r} is not a valid domain name.") from exc
    return name


def _relays(config: Any) -> Sequence[SMTPConfig] | MXDelivery:
    if isinstance(config, str) and config.lower() == "mx":
        return MXDelivery()
    if isinstance(config, MXDelivery):
        return config
    if isinstance(config, SMTPConfig):
        return (config,)
    if isinstance(config, list | tuple) and config and all(
        isinstance(c, SMTPConfig) for c in config
    ):
        return tuple(config)
    raise ConfigError(
        "config must be an SMTPConfig, a list of them (round robin with failover), 'mx' (direct "
        f"delivery to each domain's mail servers) or an MXDelivery; got {config!r}."
    )


def _template_columns(template: Template | Mapping[str, Template], frame: pd.DataFrame
                      ) -> list[str]:
    templates = [template] if isinstance(template, Template) else (
        list(template.values()) if isinstance(template, Mapping) else []
    )
    if not templates or not all(isinstance(t, Template) for t in templates):
        raise InputError(
            "template must be a smtpkit.Template, or a dict {segment: Template} together with "
            f"segment='<column>'; got {type(template).__name__}."
        )
    fields: set[str] = set().union(*(t.fields for t in templates))
    missing = sorted(fields - set(frame.columns))
    if missing:
        raise MissingColumnError(
            f"The template uses columns the frame does not have: {', '.join(map(repr, missing))};"
            f" the frame has {', '.join(map(repr, frame.columns))}."
        )
    return sorted(fields)


def _suppressed(journal: str | None) -> Any:
    if journal is None or not os.path.exists(journal):
        return None

    def read() -> set[str]:
        from .journal import suppressed_addresses

        return suppressed_addresses(journal)

    return read


class _Run:
    """One call of ``asend`` after its arguments were checked."""

    def __init__(
        self,
        frame: pd.DataFrame,
        plan: Plan,
        *,
        template: Template | Mapping[str, Template],
        columns: list[str],
        router: Router,
        campaign: str,
        journal: str | None,
        synchronous: str,
        concurrency: int,
        pace: Pace | None,
        limits: dict[str, Limit],
        retries: RetryPolicy,
        breaker: CircuitBreaker | None,
        verp: Verp,
        progress: bool,
        options: dict[str, Any],
    ) -> None:
        self.frame = frame
        self.plan = plan
        self.template_of = templates_by_segment(template, plan)
        self.columns = columns
        self.router = router
        self.campaign = campaign
        self.journal = journal
        self.synchronous = synchronous
        self.concurrency = concurrency
        self.pace = pace
        self.limits = limits
        self.retries = retries
        self.breaker = _Breaker(breaker) if breaker is not None else None
        self.verp = verp
        self.show_progress = progress
        self.options = options
        self.rng = random.Random()
        self.progress: Progress | None = None
        self.results = Results(plan.rows)
        self.log: CampaignLog | NullLog | None = None
        self.scheduler: Scheduler | None = None

    # -- the whole run ---------------------------------------------------------------------
    async def execute(self) -> pd.DataFrame:
        plan = self.plan
        first = self.template_of(int(plan.order[0])) if len(plan.order) else None
        if self.journal is not None:
            log, state = CampaignLog.open(
                self.journal, self.campaign, identity=plan.identity, rows=plan.rows,
                to_send=plan.to_send, sender=first.sender if first is not None else None,
                options=self.options, synchronous=self.synchronous, describe=self._describe,
            )
            self.log = log
        else:
            null = NullLog(self.campaign)
            state = null.state(plan.rows)
            self.log = null
        finish = "interrupted"
        try:
            work = self._work(state.status, state.attempts)
            pool = Pool(self.router)
            if len(work):
                await self._preflight(pool)
            self._record_planned(state.status, state.attempts)
            if len(work):
                await self._send(work, state.attempts, pool)
            finish = "finished"
        except CampaignAborted:
            finish = "aborted"
            raise
        finally:
            if self.progress is not None:
                self.progress.close()
            self.log.finish(finish)
        if self.results.complete and not (
            self.journal is not None and has_bounces(self.journal, self.campaign)
        ):
            result = self.results.frame(plan.addresses)  # this run settled every row
        else:  # rows settled by earlier runs, or bounces to fold in: the journal has it all
            assert isinstance(self.log, CampaignLog)
            result = self.log.outcome_frame(plan.rows)
        result.index = self.frame.index
        return result

    def partial_frame(self) -> pd.DataFrame:
        """The outcome of every row so far, after the run stopped early (rows not tried yet
        are all-NA): from the journal when there is one, else from this run's records."""
        if self.journal is not None and os.path.exists(self.journal):
            from .journal import _connect, _finish_outcomes, _read_outcome_rows

            conn = _connect(self.journal, create=False)
            try:
                rows = _read_outcome_rows(conn, self.campaign)
            finally:
                conn.close()
            frame = _finish_outcomes(rows, pd.DataFrame(), labels=False)
            frame.index = pd.Index(rows["position"].to_numpy())
            return frame.reindex(pd.RangeIndex(self.plan.rows))
        return self.results.frame(self.plan.addresses)

    def _describe(self, position: int) -> RecipientRecord | None:
        """The journal record of a row that a crash left in flight (same frame: checked)."""
        plan = self.plan
        if not 0 <= position < plan.rows:
            return None
        at = np.array([position])
        (address,), (key,) = Plan.values(plan.addresses, at), plan.keys_at(at)
        if address is None or key is None:
            return None
        return record_for(plan, position, (address, key), label=self.frame.index[position],
                          template=self.template_of(position), campaign=self.campaign,
                          verp=self.verp)

    def _work(self, status: np.ndarray, attempts: np.ndarray) -> np.ndarray:
        """Positions still to send: never sent, deferred, or failed before reaching a server."""
        order = self.plan.order
        codes = status[order]
        final = np.isin(codes, list(_FINAL_CODES)) & ~(
            (codes == STATUS_CODES["failed"]) & (attempts[order] == 0)
        )
        return order[~final]

    def _record_planned(self, status: np.ndarray, attempts: np.ndarray) -> None:
        """Record the rows this run will not send (skipped), unless they were sent before."""
        assert self.log is not None
        plan = self.plan
        planned = np.flatnonzero(~pd.isna(plan.skip_status))
        index = self.frame.index
        keep = ~(np.isin(status[planned], list(_FINAL_CODES)) & (attempts[planned] > 0))
        planned = planned[keep]  # rows sent before stay as they are
        addresses = Plan.values(plan.addresses, planned)
        keys = plan.keys_at(planned)
        for i, position in enumerate(planned.tolist()):
            rec = RecipientRecord(
                position=position,
                row_label=_label_text(index[position]),
                recipient=addresses[i],
                rkey=keys[i],
                segment=None if plan.segments is None else plan.segments[position],
            )
            kind, reason = str(plan.skip_status[position]), str(plan.skip_reason[position])
            self.log.record_final(rec, kind, reason)
            self.results.record(position, status=kind, reason=reason, segment=rec.segment,
                                attempts=int(attempts[position]))
        self.log.flush()

    async def _preflight(self, pool: Pool) -> None:
        """Relay mode: open the first connection before anything is recorded, so a wrong
        password, TLS problem or unreachable server stops the campaign with nothing sent."""
        if self.router.direct:
            return
        route = self.router.relay_route()
        conn = await pool.acquire(route)
        if isinstance(conn, TransportError):
            raise CampaignAborted(
                f"Campaign {self.campaign!r} did not start: {conn} Nothing was sent."
            ) from None
        pool.release(conn, route.key)

    # -- sending ---------------------------------------------------------------------------
    async def _send(self, work: np.ndarray, attempts: np.ndarray, pool: Pool) -> None:
        plan = self.plan
        segment_totals = None
        if plan.segments is not None:
            names, counts = np.unique(plan.segments[work].astype(str), return_counts=True)
            order = list(dict.fromkeys(plan.segments[work].tolist()))
            totals = dict(zip(names.tolist(), counts.tolist(), strict=True))
            segment_totals = {str(n): totals[str(n)] for n in order}
        self.progress = Progress(len(work), enabled=self.show_progress, campaign=self.campaign,
                                 segment_totals=segment_totals)
        source = RowSource(
            self.frame, plan, work, template_of=self.template_of, columns=self.columns,
            campaign=self.campaign, verp=self.verp, attempts=attempts,
            on_row_error=self._row_failed,
        )
        scheduler = self.scheduler = Scheduler(
            source, pace=self.pace, limits=self._domain_limits,
            buffer=2 * self.concurrency + 32, history=self._last_hour(),
        )
        workers = [asyncio.ensure_future(self._worker(scheduler, pool))
                   for _ in range(self.concurrency)]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            # Ctrl-C: nothing new; messages on the wire get a moment to finish, then stop
            scheduler.stop()
            await asyncio.wait(workers, timeout=_GRACE_SECONDS)
            await self._cancel(workers)
            pool.abort()
            raise
        failure = next((t.exception() for t in done if not t.cancelled() and t.exception()),
                       None)
        if failure is not None:
            scheduler.stop()
            timeout = max(c.timeout for c in self.router.relays) if self.router.relays else 30.0
            await asyncio.wait(workers, timeout=timeout + 1)
            await self._cancel(workers)
            await pool.close()
            raise failure
        await pool.close()

    def _last_hour(self) -> list[tuple[float, str]]:
        """(monotonic time, domain) of this campaign's attempts in the last hour, earlier
        runs included, when an hourly cap must count them."""
        hourly = (self.pace is not None and self.pace.per_hour is not None) or any(
            limit.per_hour is not None for limit in self.limits.values())
        if not hourly or self.log is None:
            return []
        now_wall, now_mono = time.time(), time.monotonic()
        return [(now_mono - (now_wall - started), recipient_domain(recipient))
                for started, recipient in self.log.recent_attempts(now_wall - 3600.0)]

    @staticmethod
    async def _cancel(workers: Sequence[asyncio.Future[None]]) -> None:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    def _domain_limits(self, domain: str) -> tuple[int | None, Pace | None]:
        limit = self.limits.get(domain) or self.limits.get("*")
        if limit is None:
            if self.router.direct:
                return DEFAULT_MX_DOMAIN_CONCURRENCY, None
            return None, None
        concurrency = limit.concurrency
        if concurrency is None and self.router.direct:
            concurrency = DEFAULT_MX_DOMAIN_CONCURRENCY
        return concurrency, limit.pace()

    def _row_failed(self, rec: RecipientRecord, error: RowError) -> None:
        assert self.log is not None and self.progress is not None
        self.log.record_final(rec, "failed", error.reason, detail=error.detail)
        self.results.record(rec.position, status="failed", reason=error.reason,
                            message=error.detail, message_id=rec.message_id,
                            segment=rec.segment, envelope_sender=rec.envelope_sender)
        self.progress.add("failed", rec.segment)

    async def _worker(self, scheduler: Scheduler, pool: Pool) -> None:
        item: Item | None = None
        held: tuple[SMTPConnection, Route] | None = None  # a connection whose next message
        try:                                              # (item) was pipelined ahead on it
            while True:
                if item is None:
                    item = await scheduler.get()
                    if item is None:
                        return
                elif scheduler.stopped:  # nothing new after a stop, even if announced
                    scheduler.done(item)
                    item = None
                    return
                try:
                    item, held = await self._one(item, pool, scheduler, held)
                except BaseException:
                    item = None
                    raise
        finally:
            if held is not None:
                held[0].abort()  # its server waits for a message that will not come
            if item is not None:
                scheduler.done(item)

    async def _one(
        self,
        item: Item,
        pool: Pool,
        scheduler: Scheduler,
        held: tuple[SMTPConnection, Route] | None,
    ) -> tuple[Item | None, tuple[SMTPConnection, Route] | None]:
        """Send ``item``; return the next item if its envelope was pipelined ahead, with the
        connection that now has to carry it."""
        try:
            started = time.time()
            if held is not None and held[0].usable:
                conn, route = held
            else:
                if held is not None:
                    pool.release(held[0], held[1].key)  # broken: the pool closes it
                route_or_reply = await self.router.route(item.domain)
                if isinstance(route_or_reply, SMTPReply):
                    self._settle(item, route_or_reply, server=None, started=started,
                                 latency=None)
                    return None, None
                route = route_or_reply
                acquired = await pool.acquire(route)
                if isinstance(acquired, TransportError):
                    self._settle(item, acquired.reply, server=acquired.server, started=started,
                                 latency=None)
                    return None, None
                conn = acquired
            ahead = await self._transaction(item, conn, started, scheduler)
            if ahead is not None:
                return ahead, (conn, route)
            pool.release(conn, route.key)
            return None, None
        finally:
            scheduler.done(item)

    async def _transaction(self, item: Item, conn: SMTPConnection, started: float,
                           scheduler: Scheduler) -> Item | None:
        log = self.log
        assert log is not None
        attempt = item.attempts + 1
        stage = 0  # 0 before the intent, 1 writing it, 2 the data may be on the wire
        hook = None
        if log.persistent:
            def hook() -> Awaitable[None] | None:
                nonlocal stage
                stage = 1
                waiter = log.intent(item.rec, attempt, started, conn.server)
                if waiter.done():  # on disk for any process already
                    stage = 2
                    return None

                async def synced() -> None:  # synchronous="full": wait for the disk
                    nonlocal stage
                    await waiter
                    stage = 2

                return synced()

        ahead: Item | None = None
        failed: Exception | None = None

        def lookahead() -> Envelope | None:
            # relays only: in MX delivery the next message may be for another server
            nonlocal ahead, failed
            if self.router.direct:
                return None
            try:
                ahead = scheduler.try_get()
            except Exception as exc:  # raised once this message is through and recorded
                failed = exc
                return None
            if ahead is None:
                return None
            return Envelope(ahead.sender, (ahead.recipient,), ahead.data, ahead.smtputf8, True)

        carried = conn.messages  # messages this connection took before this one
        t0 = time.perf_counter()
        try:
            # Item data is compose output: CRLF line endings only (canonical)
            replies = await conn.send(item.sender, [item.recipient], item.data,
                                      smtputf8=item.smtputf8, before_data=hook,
                                      lookahead=lookahead, canonical=True)
        except asyncio.CancelledError:
            conn.abort()
            if ahead is not None:
                scheduler.done(ahead)
            if stage == 2:
                reply = SMTPReply(None, None, "Stopped (Ctrl-C) after the message data went out.",
                                  "unknown", "interrupted_after_data", "message")
                self._settle(item, reply, server=conn.server, started=started, latency=None)
            elif stage == 1:
                reply = SMTPReply(None, None, "Stopped (Ctrl-C) before the message data went out.",
                                  "transient", "interrupted", "data")
                self._record(item, reply, conn.server, started, None, "deferred", final=True)
            raise
        except JournalError:
            conn.abort()
            if ahead is not None:
                scheduler.done(ahead)
            raise
        latency = (time.perf_counter() - t0) * 1000.0
        try:
            self._settle(item, replies[item.recipient], server=conn.server, started=started,
                         latency=latency, fresh=carried == 0)
        except BaseException:
            if ahead is not None:
                conn.abort()
                scheduler.done(ahead)
            raise
        if failed is not None:
            raise failed
        return ahead

    def _settle(self, item: Item, reply: SMTPReply, *, server: str | None, started: float,
                latency: float | None, fresh: bool = True) -> None:
        """Decide what the reply means for the row, record it, and requeue if it goes on.

        ``fresh``: the reply came on a connection that had carried no message before. A server
        that closes its connections (421) after some messages on each is answered by
        reconnecting at once; one that closes them before the first message is slowed down
        like a throttling one, since reconnecting does not help.
        """
        scheduler = self.scheduler
        assert scheduler is not None
        kind = reply.kind
        if kind == "ok":
            self._record(item, reply, server, started, latency, "sent", final=True)
            scheduler.succeeded(item.domain)
        elif kind == "unknown":
            self._record(item, reply, server, started, latency, "unknown", final=True)
        elif reply.stops_campaign and not self.router.direct:
            # about the account or the connection, not this recipient: keep it retryable
            self._record(item, reply, server, started, latency, "deferred", final=True)
            raise CampaignAborted(self._abort_text(reply, server))
        elif reply.reason in TLS_REASONS and self.router.direct:
            # no MX host of the domain could be reached over verified TLS: about its servers,
            # not the recipient, and the same for the rest of this run; a later run tries again
            self._record(item, reply, server, started, latency, "deferred", final=True)
        elif kind == "permanent":
            self._record(item, reply, server, started, latency, "failed", final=True)
        elif reply.reason == "connection_closed" and not fresh and \
                item.throttled < self.retries.throttle_limit:
            item.throttled += 1
            self._record(item, reply, server, started, latency, "deferred", final=False)
            scheduler.requeue(item)
        elif (reply.throttled or reply.reason == "connection_closed") and \
                item.throttled < self.retries.throttle_limit:
            item.throttled += 1
            self._record(item, reply, server, started, latency, "deferred", final=False)
            scheduler.throttle(item)
        else:
            item.tries += 1
            if item.tries < self.retries.attempts:
                self._record(item, reply, server, started, latency, "deferred", final=False)
                scheduler.retry(item, self.retries.delay(item.tries, rng=self.rng))
            else:
                self._record(item, reply, server, started, latency, "deferred", final=True)
        if self.breaker is not None:
            tripped = self.breaker.observe(reply)
            if tripped is not None:
                self._trip(tripped)

    def _record(self, item: Item, reply: SMTPReply, server: str | None, started: float,
                latency: float | None, status: str, *, final: bool) -> None:
        assert self.log is not None and self.progress is not None
        attempts = item.attempts = item.attempts + 1
        first = item.first_attempt_at
        if first is None:
            first = item.first_attempt_at = started
        finished = time.time()
        message = reply.message or None
        # one tuple for the journal and the run's results (_journal_writer.ATTEMPT_FIELDS)
        record = attempt_record(item.rec, attempts, status, reply.reason, reply.code,
                                reply.enhanced, message, started, finished, latency, server)
        self.log.record_attempt(record)
        self.results.add_attempt(record, first)
        if final:
            self.progress.add(status, item.rec.segment)

    def _trip(self, what: str) -> None:
        assert self.breaker is not None and self.scheduler is not None
        pause = self.breaker.config.pause
        if pause is None:
            raise CampaignAborted(
                f"The circuit breaker stopped campaign {self.campaign!r}: {what}. Nothing more "
                "was sent; check the list and the server, then run the same send again to "
                "resume (or pass breaker=None)."
            )
        warnings.warn(f"smtpkit: campaign {self.campaign!r} paused for {pause:g} s: {what}.",
                      RuntimeWarning, stacklevel=2)
        self.scheduler.pause(pause)

    def _abort_text(self, reply: SMTPReply, server: str | None) -> str:
        where = f" at {server}" if server else ""
        if reply.reason == "sender_rejected":
            cause = (f"the server{where} refused the envelope sender ({reply}). Check that the "
                     "account may send as the template's sender; verp='bounces@<your domain>' "
                     "or verp=False changes the envelope sender")
        elif reply.reason in ("auth_failed", "auth_unavailable"):
            cause = f"logging in{where} failed ({reply}); check the username and password"
        elif reply.reason.startswith("tls"):
            cause = f"TLS{where} failed ({reply.message}); see smtpkit.verify(config)"
        else:
            cause = f"the server{where} refused the session ({reply})"
        return (f"Campaign {self.campaign!r} stopped: {cause}. Everything attempted is in the "
                "journal; run the same send again to resume.")


async def asend(
    frame: pd.DataFrame,
    template: Template | Mapping[str, Template],
    config: SMTPConfig | Sequence[SMTPConfig] | MXDelivery | Literal["mx"],
    /,
    *,
    campaign: str,
    journal: str | os.PathLike[str] | Journal | None = "smtpkit.db",
    segment: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rate: float | Limit | None = None,
    per_domain: Mapping[str, float | Limit] | None = None,
    retries: RetryPolicy = RetryPolicy(),
    dry_run: bool = False,
    notify: str | Sequence[str] | None = None,
    progress: bool = True,
    breaker: CircuitBreaker | None = CircuitBreaker(),
    verp: bool | str = True,
    keep_columns: bool | Sequence[str] = False,
    suppress: bool = True,
) -> pd.DataFrame:
    """Send one message per row and return the outcome of every row (see ``send``)."""
    pace, limits, notify_to = _check_options(
        frame, campaign=campaign, concurrency=concurrency, rate=rate, per_domain=per_domain,
        retries=retries, notify=notify, breaker=breaker,
    )
    relays = _relays(config)
    columns = _template_columns(template, frame)
    verp_rule = Verp.parse(verp)
    path: str | None
    synchronous = "normal"
    if journal is None:
        path = None
    elif isinstance(journal, Journal):
        path, synchronous = journal.path, journal.synchronous
    elif isinstance(journal, str | os.PathLike):
        path = os.fspath(journal)
    else:
        raise ConfigError(f"journal must be a file path, a smtpkit.Journal or None; got "
                          f"{journal!r}.")
    plan = plan_rows(frame, segment=segment,
                     suppressed=_suppressed(path) if suppress else None)
    templates_by_segment(template, plan)  # every segment has a template, before anything
    if dry_run:
        result = _dry_run(frame, plan, template, columns, campaign=campaign, verp=verp_rule,
                          journal=path)
    else:
        run = _Run(
            frame, plan, template=template, columns=columns, router=Router(relays),
            campaign=campaign, journal=path, synchronous=synchronous, concurrency=concurrency,
            pace=pace, limits=limits, retries=retries, breaker=breaker, verp=verp_rule,
            progress=progress,
            options={"concurrency": concurrency, "rate": rate, "segment": segment,
                     "verp": verp, "mode": "mx" if isinstance(relays, MXDelivery) else "relay",
                     "index_names": [None if n is None else str(n) for n in frame.index.names]},
        )
        try:
            result = await run.execute()
        except CampaignAborted as stop:
            if notify_to:  # best effort: the campaign's own error is what the caller sees
                try:
                    await _notify(run.partial_frame(), run, relays, notify_to, stopped=stop)
                except Exception as exc:
                    warnings.warn(f"smtpkit: the summary of the stopped campaign could not be "
                                  f"mailed: {exc}", RuntimeWarning, stacklevel=2)
            raise
        if notify_to:
            await _notify(result, run, relays, notify_to)
    return _with_input_columns(result, frame, keep_columns)


def send(
    frame: pd.DataFrame,
    template: Template | Mapping[str, Template],
    config: SMTPConfig | Sequence[SMTPConfig] | MXDelivery | Literal["mx"],
    /,
    *,
    campaign: str,
    journal: str | os.PathLike[str] | Journal | None = "smtpkit.db",
    segment: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rate: float | Limit | None = None,
    per_domain: Mapping[str, float | Limit] | None = None,
    retries: RetryPolicy = RetryPolicy(),
    dry_run: bool = False,
    notify: str | Sequence[str] | None = None,
    progress: bool = True,
    breaker: CircuitBreaker | None = CircuitBreaker(),
    verp: bool | str = True,
    keep_columns: bool | Sequence[str] = False,
    suppress: bool = True,
) -> pd.DataFrame:
    """Send one personalized message per row; return every row's outcome (same index).

    Parameters:
        template: a ``smtpkit.Template``, or ``{segment: Template}`` (``"*"`` for the rest)
            with ``segment=``.
        config: an ``SMTPConfig``; a list of them (round robin, failing over to the next);
            ``"mx"`` to deliver straight to each domain's MX hosts; or an ``MXDelivery``
            (``box.mx`` of a Sandbox).
        campaign: the campaign's name in the journal. Running the same call again resumes it:
            ``sent`` / ``failed`` / ``unknown`` rows are never sent again, ``deferred`` ones are
            retried. A frame with other rows to send raises ``JournalError``.
        journal: the SQLite journal file (or a ``Journal``); None keeps no journal (no resume).
        segment: a column (from ``smtpkit.segment``) naming each row's segment; segments are
            sent in order (category order, or order of first appearance) and counted apart.
        concurrency: SMTP connections at once.
        rate: messages per second for the whole campaign, or ``Limit(per_second=...,
            per_hour=...)``.
        per_domain: ``{domain: messages per second or Limit(...)}``; ``"*"`` for other domains.
        retries: a ``RetryPolicy``: attempts and backoff for temporary failures.
        dry_run: render and check every row, send nothing, write no journal; the frame says
            what would happen (``would``: send / skip / fail / done, ``size``, ``detail``).
        notify: an address (or list) that gets a summary mail when the campaign ends with rows
            not sent (failed, deferred, unknown), or stops early with ``CampaignAborted``
            (best effort: a summary that cannot be sent only warns).
        progress: show a ``tqdm.auto`` bar with live counts.
        breaker: a ``CircuitBreaker`` (None to disable).
        verp: True for ``bounces+<token>@<sender domain>`` envelope senders, an address such
            as ``"returns@mail.example.com"`` for another prefix/domain, False for the template
            sender.
        keep_columns: True (or a list of names) to add the input's columns to the result
            (names the result already has get the suffix ``_input``).
        suppress: skip addresses with a hard bounce or complaint recorded in the journal.

    Raises (before anything is sent): ``InputError`` / ``MissingColumnError`` / ``ConfigError``
    for unusable arguments; ``JournalError`` when the journal belongs to another frame or
    another process is sending this campaign; ``CampaignAborted`` when the server refuses the
    login, the TLS, the greeting or the sender (also mid-campaign, with everything attempted
    recorded), or the circuit breaker trips. Ctrl-C stops within a second; run the same call
    again to resume.

    Example:
        result = smtpkit.send(cleaned, template, SMTPConfig.from_env(), campaign="spring")
        result["status"].value_counts()
    """
    return _portal.run(
        asend(
            frame, template, config, campaign=campaign, journal=journal, segment=segment,
            concurrency=concurrency, rate=rate, per_domain=per_domain, retries=retries,
            dry_run=dry_run, notify=notify, progress=progress, breaker=breaker, verp=verp,
            keep_columns=keep_columns, suppress=suppress,
        )
    )


def _dry_run(
    frame: pd.DataFrame,
    plan: Plan,
    template: Template | Mapping[str, Template],
    columns: list[str],
    *,
    campaign: str,
    verp: Verp,
    journal: str | None,
) -> pd.DataFrame:
    """Render every row that would be sent; report what would happen, send nothing."""
    rows = plan.rows
    status = np.full(rows, "skipped", dtype=object)
    reason = np.asarray(plan.skip_reason, dtype=object).copy()
    reason[pd.isna(reason)] = None
    would = np.where(pd.isna(plan.skip_status), "send", "skip").astype(object)
    size = np.full(rows, None, dtype=object)
    detail = np.full(rows, None, dtype=object)
    message_id = np.full(rows, None, dtype=object)
    sender = np.full(rows, None, dtype=object)
    previous = _previous_statuses(journal, campaign, rows)
    failures: dict[int, RowError] = {}
    positions = plan.order
    if previous is not None:
        done = np.isin(previous[positions], list(_FINAL_CODES))
        for position in positions[done].tolist():
            would[position] = "done"
            names = {v: k for k, v in STATUS_CODES.items()}
            reason[position] = f"already_{names[int(previous[position])]}"
        positions = positions[~done]
    items = RowSource(
        frame, plan, positions, template_of=templates_by_segment(template, plan),
        columns=columns, campaign=campaign, verp=verp, attempts=np.zeros(rows, dtype=np.int32),
        on_row_error=lambda rec, error: failures.__setitem__(rec.position, error),
    )
    for item in items:
        p = item.rec.position
        reason[p] = "dry_run"
        size[p] = len(item.data)
        message_id[p] = item.rec.message_id
        sender[p] = item.sender
    for p, error in failures.items():
        would[p] = "fail"
        reason[p] = error.reason
        detail[p] = error.detail
    result = pd.DataFrame({
        "recipient": pd.Series(plan.addresses), "status": status, "reason": reason,
        "smtp_code": None, "smtp_status": None, "smtp_message": None, "attempts": 0,
        "first_attempt_at": None, "last_attempt_at": None, "latency_ms": None,
        "message_id": message_id,
        "segment": plan.segments if plan.segments is not None else None,
        "server": None, "envelope_sender": sender,
    }, columns=list(OUTCOME_COLUMNS))
    coerce_dtypes(result, OUTCOME_DTYPES)
    result["would"] = pd.array(would, dtype="string")
    result["size"] = pd.array(size, dtype="Int64")
    result["detail"] = pd.array(detail, dtype="string")
    result.index = frame.index
    return result


def _previous_statuses(journal: str | None, campaign: str, rows: int) -> np.ndarray | None:
    if journal is None or not os.path.exists(journal):
        return None
    from .journal import previous_statuses

    return previous_statuses(journal, campaign, rows)


def _with_input_columns(result: pd.DataFrame, frame: pd.DataFrame,
                        keep: bool | Sequence[str]) -> pd.DataFrame:
    if keep is False:
        return result
    names = list(frame.columns) if keep is True else list(keep)
    unknown = [n for n in names if n not in frame.columns]
    if unknown:
        raise MissingColumnError(f"keep_columns names columns the frame does not have: "
                                 f"{', '.join(map(repr, unknown))}.")
    extra = frame[names].rename(
        columns={n: f"{n}_input" for n in names if n in result.columns}
    )
    return pd.concat([result, extra], axis=1)


async def _notify(result: pd.DataFrame, run: _Run, relays: Sequence[SMTPConfig] | MXDelivery,
                  to: list[str], *, stopped: CampaignAborted | None = None) -> None:
    """Mail the failure summary when rows were not sent (or the campaign stopped early); a
    failure to do so only warns."""
    status = result["status"]
    bad = int(status.isin(["failed", "deferred", "unknown"]).sum())
    if stopped is not None:
        bad += int(status.isna().sum())  # rows the campaign did not get to
    elif bad == 0:
        return
    first = run.template_of(int(run.plan.order[0])) if len(run.plan.order) else None
    sender = first.sender_address if first is not None else "smtpkit@localhost.localdomain"
    text = notify_text(result, campaign=run.campaign, journal=run.journal,
                       stopped=None if stopped is None else str(stopped))
    data = notify_message(text, sender=sender, recipients=to, campaign=run.campaign, failed=bad,
                          stopped=stopped is not None)
    router = Router(relays)
    problems: list[str] = []
    for address in to:
        route = await router.route(recipient_domain(address))
        if isinstance(route, SMTPReply):
            problems.append(f"{address}: {route.message}")
            continue
        pool = Pool(router)
        conn = await pool.acquire(route)
        if isinstance(conn, TransportError):
            problems.append(f"{address}: {conn}")
            continue
        try:
            reply = (await conn.send(sender, [address], data))[address]
        finally:
            await pool.close()
            await conn.close()
        if not reply.ok:
            problems.append(f"{address}: {reply}")
    if problems:
        warnings.warn(
            "smtpkit: the failure summary could not be mailed: " + "; ".join(problems),
            RuntimeWarning, stacklevel=3,
        )
