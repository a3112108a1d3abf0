"""The send engine's scheduler: which message goes next, and when.

Messages wait in one queue per recipient domain; domains take turns (round robin), so one big
provider cannot starve the others. A message leaves its queue when:

* the global pace allows it (a token bucket in messages/s, plus an optional sliding-hour cap),
* its domain's pace and concurrency allow it (``per_domain`` limits), and
* its domain is not being slowed down: a throttling reply (451 4.7.x, 452, 454, a 421 about
  rates) doubles the domain's extra spacing and halves its concurrency (once per episode);
  each accepted message raises its rate by ``_RECOVER_RATE`` messages/s and its concurrency by
  a quarter (AIMD), so a throttled domain slows down instead of burning its retries, and comes
  back quickly when the server lets it. A 421 that only closes the connection goes again at
  once on a new one.

Retries wait in a time-ordered heap until their backoff has passed. New rows are pulled from
the source (which renders them) only when few messages are buffered, so a campaign of any size
holds a bounded number of rendered messages in memory.

A domain that is held back (at its concurrency cap, paced, or slowed down after throttling)
must not hold up the others: its messages may fill the buffer while those of other domains
wait behind them in the list. So when nothing buffered may go, the scheduler keeps pulling
rows until one may; and a held-back domain keeps at most ``_KEEP`` rendered messages — its
further rows are *parked* unrendered (a position each, 8 bytes) and rendered when it can take
them again, in their original order.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import heapq
import itertools
import math
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .journal import RecipientRecord

__all__ = ["Item", "Pace", "Scheduler", "Source"]

# Extra spacing (seconds) a domain gets on its first throttling reply, and at most.
_THROTTLE_FIRST = 0.25
_THROTTLE_MAX = 30.0
# Messages per second the domain's rate grows by per accepted message (the ease-back): the
# spacing is halved, doubled... by throttling (multiplicative decrease) and its rate raised by
# this much per success (additive increase), so a domain that waited long after a throttling
# episode is back near full speed after a few accepted messages, not after as many halvings.
_RECOVER_RATE = 2.0
# Rendered messages a held-back domain keeps waiting; its further rows are parked unrendered
# and rendered this many at a time when it may send again.
_KEEP = 32
# Rows looked at per call while searching for one that may go now (bounds one call's work).
_SEARCH = 20_000


@dataclasses.dataclass(slots=True, eq=False)
class Item:
    """One message on its way: the rendered bytes and the bookkeeping of its attempts."""

    rec: RecipientRecord
    domain: str
    recipient: str
    sender: str
    data: bytes
    smtputf8: bool
    attempts: int = 0  # SMTP attempts so far, previous runs included (numbers attempt rows)
    tries: int = 0  # attempts in this run that count against the retry policy
    throttled: int = 0
    first_attempt_at: float | None = None
    last: Any = None  # the last SMTPReply


class Pace:
    """A token bucket (GCRA) in events per second, with an optional cap per sliding hour.

    Example:
        >>> p = Pace(per_second=2)
        >>> p.wait(0.0), p.take(0.0), p.wait(0.0) > 0
        (0.0, None, True)
    """

    __slots__ = ("_hour", "_tat", "burst", "interval", "per_hour")

    def __init__(self, *, per_second: float | None = None, per_hour: int | None = None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        # allow a short burst (50 ms worth) so timer granularity does not cost throughput
        self.burst = max(self.interval, 0.05 if per_second and per_second > 20 else 0.0)
        self.per_hour = per_hour
        self._tat = -math.inf
        self._hour: collections.deque[float] = collections.deque()

    def wait(self, now: float) -> float:
        """Seconds until the next event may happen (0 when it may happen now)."""
        wait = 0.0
        if self.interval:
            wait = max(0.0, self._tat - self.burst + self.interval - now)
        if self.per_hour is not None:
            hour = self._hour
            while hour and hour[0] <= now - 3600.0:
                hour.popleft()
            if len(hour) >= self.per_hour:
                wait = max(wait, hour[0] + 3600.0 - now)
        return wait

    def seed(self, times: Sequence[float]) -> None:
        """Count events that happened before (ascending times on this pace's clock) against
        the hourly cap, such as the attempts of earlier runs of the same campaign."""
        if self.per_hour is not None and times:
            self._hour.extendleft(reversed(times))

    def take(self, now: float) -> None:
        """Record one event at ``now``."""
        if self.interval:
            self._tat = max(self._tat, now) + self.interval
        if self.per_hour is not None:
            self._hour.append(now)


class Source(Protocol):
    """Where the scheduler gets new messages (``smtpkit._send_plan.RowSource``)."""

    def peek(self) -> str | None:
        """The recipient domain of the next row, or None when there are no more rows."""

    def take(self) -> Item | None:
        """Render the next row (None: it cannot be rendered; the source recorded why)."""

    def skip(self) -> int:
        """Pass over the next row unrendered; its position, for ``render`` later."""

    def render(self, positions: Sequence[int], /) -> list[Item]:
        """Render rows passed over, in this order."""


class _Domain:
    __slots__ = ("cap", "extra", "head", "inflight", "limit", "next_at", "pace", "parked",
                 "queue", "throttled_at")

    def __init__(self, limit: int | None, pace: Pace | None) -> None:
        self.queue: collections.deque[Item] = collections.deque()
        self.parked = array("q")  # positions of rows set aside unrendered; from ``head`` on
        self.head = 0
        self.inflight = 0
        self.limit = limit if limit is not None else math.inf
        self.cap: float = self.limit
        self.pace = pace
        self.extra = 0.0  # adaptive spacing after throttling replies
        self.next_at = 0.0
        self.throttled_at = -math.inf

    @property
    def waiting(self) -> bool:
        return bool(self.queue) or self.head < len(self.parked)

    def held_back(self, now: float) -> bool:
        """True when the domain may not take a message now."""
        return self.inflight >= self.cap or self.next_at > now or (
            self.pace is not None and self.pace.wait(now) > 0
        )


class Scheduler:
    """Hands out messages to the workers under every limit; see the module docstring.

    ``source`` gives the rows to send and renders them; ``limits(domain)`` gives the domain's
    (concurrency, Pace) — called once per domain.
    """

    def __init__(
        self,
        source: Source,
        *,
        pace: Pace | None,
        limits: Callable[[str], tuple[int | None, Pace | None]],
        buffer: int,
        clock: Callable[[], float] = time.monotonic,
        history: Sequence[tuple[float, str]] = (),
    ) -> None:
        self._source = source
        self._exhausted = False
        self._pace = pace
        self._limits = limits
        self._buffer = max(1, buffer)
        self._clock = clock
        self._domains: dict[str, _Domain] = {}
        # domains with queued or parked items, in turn
        self._turns: collections.deque[str] = collections.deque()
        self._delayed: list[tuple[float, int, Item]] = []
        self._seq = itertools.count()
        self._queued = 0  # rendered items in the domains' queues
        self._parked = 0  # rows set aside unrendered
        self.inflight = 0
        self._stopped = False
        self._changed = asyncio.Event()
        self._paused_until = 0.0
        self._refill_soon = False
        self._failure: BaseException | None = None  # raised by a refill outside a worker
        # (time on ``clock``, domain) of earlier attempts, for the hourly caps
        self._history: dict[str, list[float]] = {}
        for at, domain in history:
            self._history.setdefault(domain, []).append(at)
        if pace is not None:
            pace.seed(sorted(at for at, _ in history))

    # -- feeding -------------------------------------------------------------------------
    def _domain(self, name: str) -> _Domain:
        state = self._domains.get(name)
        if state is None:
            limit, pace = self._limits(name)
            if pace is not None:
                pace.seed(sorted(self._history.get(name, ())))
            state = self._domains[name] = _Domain(limit, pace)
        return state

    def _enqueue(self, item: Item, *, front: bool = False) -> None:
        state = self._domain(item.domain)
        if not state.waiting:
            self._turns.append(item.domain)
        if front:
            state.queue.appendleft(item)
        else:
            state.queue.append(item)
        self._queued += 1

    def _fill(self, now: float, *, until_ready: bool = False) -> None:
        """Pull rows until ``buffer`` messages wait; with ``until_ready``, also beyond that
        until one that may go now is buffered (parking rows of held-back domains)."""
        if self._exhausted or self._stopped:
            return
        source = self._source
        looked = 0
        while until_ready or self._queued < self._buffer:
            domain = source.peek()
            if domain is None:
                self._exhausted = True
                return
            state = self._domain(domain)
            if state.head < len(state.parked) or (
                (len(state.queue) >= _KEEP or self._queued >= self._buffer)
                and state.held_back(now)
            ):
                if not state.waiting:
                    self._turns.append(domain)
                state.parked.append(source.skip())
                self._parked += 1
            else:
                item = source.take()
                if item is not None:
                    self._enqueue(item)
                    if until_ready and not self._domains[item.domain].held_back(now):
                        return
            looked += 1
            if looked >= _SEARCH:
                return

    def _unpark(self, state: _Domain) -> None:
        """Render the next parked rows of a domain that may send again."""
        while not state.queue and state.head < len(state.parked):
            start = state.head
            state.head = min(len(state.parked), start + _KEEP)
            positions = state.parked[start : state.head]
            self._parked -= len(positions)
            if state.head == len(state.parked):
                state.parked, state.head = array("q"), 0
            for item in self._source.render(positions):
                state_of = self._domain(item.domain)
                if state_of is not state and not state_of.waiting:
                    self._turns.append(item.domain)
                state_of.queue.append(item)
                self._queued += 1

    def _release_due(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, item = heapq.heappop(delayed)
            self._enqueue(item)

    # -- handing out -----------------------------------------------------------------------
    def _pick(self, now: float) -> tuple[Item | None, float]:
        """The next item allowed now, or None and how long until something may be."""
        soonest = math.inf
        turns = self._turns
        domains = self._domains
        for _ in range(len(turns)):
            name = turns[0]
            state = domains[name]
            if state.inflight >= state.cap:
                turns.rotate(-1)
                continue
            wait = state.next_at - now
            if state.pace is not None:
                wait = max(wait, state.pace.wait(now))
            if wait > 0:
                soonest = min(soonest, wait)
                turns.rotate(-1)
                continue
            if not state.queue:
                self._unpark(state)
                if not state.queue:  # none of them could be rendered (each recorded as failed)
                    turns.popleft()
                    continue
            item = state.queue.popleft()
            self._queued -= 1
            if state.waiting:
                turns.rotate(-1)
            else:
                turns.popleft()
            state.inflight += 1
            self.inflight += 1
            if state.pace is not None:
                state.pace.take(now)
            if state.extra:
                state.next_at = now + state.extra
            return item, 0.0
        return None, soonest

    def _next(self, now: float) -> tuple[Item | None, float]:
        """``_pick``, pulling more rows when nothing buffered may go now."""
        item, soonest = self._pick(now)
        if item is None and not self._exhausted and not self._stopped:
            self._fill(now, until_ready=True)
            item, soonest = self._pick(now)
            if item is None and not self._exhausted:
                soonest = 0.0  # the search stopped early: go on with it soon
        return item, soonest

    async def get(self) -> Item | None:
        """The next message to send, waiting as the limits require; None when all are done."""
        while True:
            if self._failure is not None:
                raise self._failure
            if self._stopped:
                return None
            now = self._clock()
            if self._paused_until > now:
                await self._sleep(self._paused_until - now)
                continue
            self._fill(now)
            self._release_due(now)
            if self._pace is not None:
                wait = self._pace.wait(now)
                if wait > 0 and (self._queued or self._parked or self._delayed):
                    await self._sleep(wait)
                    continue
            item, soonest = self._next(now)
            if item is not None:
                if self._pace is not None:
                    self._pace.take(now)
                return item
            if self._delayed:
                soonest = min(soonest, self._delayed[0][0] - now)
            if (
                self._exhausted
                and not self._queued
                and not self._parked
                and not self._delayed
                and self.inflight == 0
            ):
                self._wake()  # let the other workers see that everything is done
                return None
            await self._sleep(soonest if soonest != math.inf else None)

    def try_get(self) -> Item | None:
        """The next message if one may go right now, else None (never waits).

        It takes a message already rendered when there is one, and leaves refilling the
        buffer for after the caller's write (``call_soon``): rendering is then not between a
        server's reply and the next message on that connection.
        """
        if self._failure is not None:
            raise self._failure
        if self._stopped:
            return None
        now = self._clock()
        if self._paused_until > now:
            return None
        if self._queued == 0:
            self._fill(now)
        elif not self._refill_soon and not self._exhausted and self._queued < self._buffer:
            self._refill_soon = True
            asyncio.get_running_loop().call_soon(self._refill)
        self._release_due(now)
        if self._pace is not None and self._pace.wait(now) > 0:
            return None
        item, _ = self._next(now)
        if item is not None and self._pace is not None:
            self._pace.take(now)
        return item

    def _refill(self) -> None:
        self._refill_soon = False
        try:
            self._fill(self._clock())
        except BaseException as exc:  # a worker raises it (a loop callback would drop it)
            self._failure = exc
            self._wake()

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called: nothing new is handed out."""
        return self._stopped

    async def _sleep(self, seconds: float | None) -> None:
        self._changed.clear()
        try:
            if seconds is None:
                await self._changed.wait()
            else:
                await asyncio.wait_for(self._changed.wait(), max(seconds, 0.0005))
        except TimeoutError:
            pass

    def _wake(self) -> None:
        self._changed.set()

    # -- results ---------------------------------------------------------------------------
    def done(self, item: Item) -> None:
        """The transaction of ``item`` is over (whatever its result)."""
        state = self._domains[item.domain]
        state.inflight -= 1
        self.inflight -= 1
        self._wake()

    def succeeded(self, domain: str) -> None:
        """Ease the domain's adaptive slowdown after an accepted message."""
        state = self._domains.get(domain)
        if state is not None and (state.extra or state.cap < state.limit):
            state.extra = 1.0 / (1.0 / state.extra + _RECOVER_RATE) if state.extra > 0.01 \
                else 0.0
            state.cap = min(state.limit, state.cap + 0.25)
            # the next message need not wait out the spacing set before this success
            state.next_at = min(state.next_at, self._clock() + state.extra)
            self._wake()

    def throttle(self, item: Item) -> float:
        """Slow ``item``'s domain down and put the item back first in line; returns the new
        spacing (seconds)."""
        state = self._domain(item.domain)
        now = self._clock()
        # Replies to messages sent at the same time report one overload, not several: slow
        # down once per episode (an episode lasts as long as the current spacing).
        if now - state.throttled_at > max(state.extra, _THROTTLE_FIRST):
            state.throttled_at = now
            state.extra = min(_THROTTLE_MAX, max(state.extra * 2.0, _THROTTLE_FIRST))
            state.cap = max(1.0, min(state.cap, state.inflight + 1) / 2.0)
        state.next_at = max(state.next_at, now + state.extra)
        self._enqueue(item, front=True)
        self._wake()
        return state.extra

    def requeue(self, item: Item) -> None:
        """Put ``item`` back first in line, to go again at once (on another connection)."""
        self._enqueue(item, front=True)
        self._wake()

    def retry(self, item: Item, delay: float) -> None:
        """Send ``item`` again after ``delay`` seconds."""
        heapq.heappush(self._delayed, (self._clock() + delay, next(self._seq), item))
        self._wake()

    def pause(self, seconds: float) -> None:
        """Hand out nothing for ``seconds`` (the circuit breaker's pause)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._wake()

    def stop(self) -> None:
        """Hand out nothing more; workers finish their current message and end."""
        self._stopped = True
        self._wake()

    @property
    def waiting(self) -> int:
        """Messages buffered, parked or waiting for a retry (not counting those in flight)."""
        return self._queued + self._parked + len(self._delayed)
