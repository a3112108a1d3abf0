"""The send engine's scheduler: which message goes next, and when.

Messages wait in one queue per recipient domain; domains take turns (round robin), so one big
provider cannot starve the others. A message leaves its queue when:

* the global pace allows it (a token bucket in messages/s, plus an optional sliding-hour cap),
* its domain's pace and concurrency allow it (``per_domain`` limits), and
* its domain is not being slowed down: a throttling reply (421, 451 4.7.x, 452, 454) doubles the
  domain's extra spacing and halves its concurrency; successes ease both back (adaptive
  throttling, AIMD-like), so a throttled domain slows down instead of burning its retries.

Retries wait in a time-ordered heap until their backoff has passed. New messages are pulled
from the producer (which renders them) only when few are buffered, so a campaign of any size
holds a bounded number of messages in memory.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import heapq
import itertools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from .journal import RecipientRecord

__all__ = ["Item", "Pace", "Scheduler"]

# Extra spacing (seconds) a domain gets on its first throttling reply, and at most.
_THROTTLE_FIRST = 0.25
_THROTTLE_MAX = 30.0
# Multiplier of the extra spacing per accepted message (the ease-back).
_EASE = 0.7


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

    def take(self, now: float) -> None:
        """Record one event at ``now``."""
        if self.interval:
            self._tat = max(self._tat, now) + self.interval
        if self.per_hour is not None:
            self._hour.append(now)


class _Domain:
    __slots__ = ("cap", "extra", "inflight", "limit", "next_at", "pace", "queue", "throttled_at")

    def __init__(self, limit: int | None, pace: Pace | None) -> None:
        self.queue: collections.deque[Item] = collections.deque()
        self.inflight = 0
        self.limit = limit if limit is not None else math.inf
        self.cap: float = self.limit
        self.pace = pace
        self.extra = 0.0  # adaptive spacing after throttling replies
        self.next_at = 0.0
        self.throttled_at = -math.inf


class Scheduler:
    """Hands out messages to the workers under every limit; see the module docstring.

    ``source`` yields ready items (it renders them); ``limits(domain)`` gives the domain's
    (concurrency, Pace) — called once per domain.
    """

    def __init__(
        self,
        source: Iterator[Item],
        *,
        pace: Pace | None,
        limits: Callable[[str], tuple[int | None, Pace | None]],
        buffer: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._exhausted = False
        self._pace = pace
        self._limits = limits
        self._buffer = max(1, buffer)
        self._clock = clock
        self._domains: dict[str, _Domain] = {}
        self._turns: collections.deque[str] = collections.deque()  # domains with queued items
        self._delayed: list[tuple[float, int, Item]] = []
        self._seq = itertools.count()
        self._queued = 0
        self.inflight = 0
        self._stopped = False
        self._changed = asyncio.Event()
        self._paused_until = 0.0

    # -- feeding -------------------------------------------------------------------------
    def _domain(self, name: str) -> _Domain:
        state = self._domains.get(name)
        if state is None:
            limit, pace = self._limits(name)
            state = self._domains[name] = _Domain(limit, pace)
        return state

    def _enqueue(self, item: Item, *, front: bool = False) -> None:
        state = self._domain(item.domain)
        if not state.queue:
            self._turns.append(item.domain)
        if front:
            state.queue.appendleft(item)
        else:
            state.queue.append(item)
        self._queued += 1

    def _fill(self) -> None:
        if self._exhausted or self._stopped:
            return
        while self._queued < self._buffer:
            try:
                item = next(self._source)
            except StopIteration:
                self._exhausted = True
                return
            self._enqueue(item)

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
        for _ in range(len(turns)):
            name = turns[0]
            state = self._domains[name]
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
            item = state.queue.popleft()
            self._queued -= 1
            if state.queue:
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

    async def get(self) -> Item | None:
        """The next message to send, waiting as the limits require; None when all are done."""
        while True:
            if self._stopped:
                return None
            now = self._clock()
            if self._paused_until > now:
                await self._sleep(self._paused_until - now)
                continue
            self._fill()
            self._release_due(now)
            if self._pace is not None:
                wait = self._pace.wait(now)
                if wait > 0 and (self._queued or self._delayed):
                    await self._sleep(wait)
                    continue
            item, soonest = self._pick(now)
            if item is not None:
                if self._pace is not None:
                    self._pace.take(now)
                return item
            if self._delayed:
                soonest = min(soonest, self._delayed[0][0] - now)
            if (
                self._exhausted
                and not self._queued
                and not self._delayed
                and self.inflight == 0
            ):
                self._wake()  # let the other workers see that everything is done
                return None
            await self._sleep(soonest if soonest != math.inf else None)

    def try_get(self) -> Item | None:
        """The next message if one may go right now, else None (never waits)."""
        if self._stopped:
            return None
        now = self._clock()
        if self._paused_until > now:
            return None
        self._fill()
        self._release_due(now)
        if self._pace is not None and self._pace.wait(now) > 0:
            return None
        item, _ = self._pick(now)
        if item is not None and self._pace is not None:
            self._pace.take(now)
        return item

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
            state.extra = state.extra * _EASE if state.extra > 0.01 else 0.0
            state.cap = min(state.limit, state.cap + 0.25)

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
        """Messages buffered or waiting for a retry (not counting those in flight)."""
        return self._queued + len(self._delayed)
