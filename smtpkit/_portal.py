"""One private background event loop that runs smtpkit's async core for sync callers.

The sync functions analysts call (``send``, ``clean(check_mx=True)``, ``verify`` ...) hand their
coroutine to :func:`run`, which executes it on a single event loop living in a daemon thread. That
works the same from a plain script, from pytest, and from inside Jupyter, whose own loop is already
running in the main thread (``asyncio.run`` would refuse there, and ``nest_asyncio`` is not used).

A ``KeyboardInterrupt`` (Ctrl-C, or Jupyter's "interrupt kernel") while waiting cancels the
coroutine, gives it a moment to clean up (close connections, commit the journal), then re-raises.

Example:
    >>> import asyncio
    >>> from smtpkit._portal import run
    >>> async def answer() -> int:
    ...     await asyncio.sleep(0)
    ...     return 42
    >>> run(answer())
    42
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["CANCEL_GRACE_SECONDS", "run"]

T = TypeVar("T")

#: How long a cancelled coroutine may take to clean up after Ctrl-C before ``run`` gives up on it.
CANCEL_GRACE_SECONDS = 5.0
# The waiting thread wakes this often so that a signal is noticed promptly on every platform.
_POLL_SECONDS = 0.05

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _portal_loop() -> asyncio.AbstractEventLoop:
    """Return the portal loop, starting its daemon thread on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=serve, name="smtpkit-portal", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread = loop, thread
        return _loop


def run(coro: Coroutine[Any, Any, T], /) -> T:
    """Run ``coro`` on the portal loop and return its result (or raise its exception).

    Safe to call from any thread except the portal thread itself, including a thread whose own
    event loop is running (Jupyter). Calling it from a coroutine that already runs on the portal
    loop would deadlock, so that raises ``RuntimeError``; ``await`` the coroutine instead.
    """
    loop = _portal_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError(
            "smtpkit._portal.run() was called from the portal loop itself; await the coroutine "
            "instead of running it synchronously."
        )
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    task_ready = threading.Event()
    task_box: list[asyncio.Task[T]] = []

    def start() -> None:
        task = loop.create_task(coro)
        task_box.append(task)
        task_ready.set()

        def transfer(t: asyncio.Task[T]) -> None:
            if t.cancelled():
                done.set_exception(asyncio.CancelledError())
            elif (exc := t.exception()) is not None:
                done.set_exception(exc)
            else:
                done.set_result(t.result())

        task.add_done_callback(transfer)

    loop.call_soon_threadsafe(start)
    try:
        # Wait without result(timeout=...): on 3.11 concurrent.futures.TimeoutError *is* the
        # builtin TimeoutError, so a coroutine raising TimeoutError would look like "not yet".
        while not concurrent.futures.wait([done], timeout=_POLL_SECONDS).done:
            pass
        return done.result()
    except KeyboardInterrupt:
        _cancel_and_wait(loop, task_ready, task_box, done)
        raise


def _cancel_and_wait(
    loop: asyncio.AbstractEventLoop,
    task_ready: threading.Event,
    task_box: list[asyncio.Task[Any]],
    done: concurrent.futures.Future[Any],
) -> None:
    """Cancel the task and give it up to CANCEL_GRACE_SECONDS to finish its cleanup."""
    task_ready.wait(CANCEL_GRACE_SECONDS)
    if task_box:
        loop.call_soon_threadsafe(task_box[0].cancel)
    try:
        done.exception(timeout=CANCEL_GRACE_SECONDS)
    except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
        pass
