"""The portal runs coroutines for sync callers: from plain code, threads and a running loop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import default_sigint

from smtpkit import _portal


async def _add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


def test_run_returns_the_result() -> None:
    assert _portal.run(_add(2, 3)) == 5


def test_run_raises_the_coroutines_exception() -> None:
    async def boom() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        _portal.run(boom())


def test_one_loop_for_every_call() -> None:
    async def loop_id() -> int:
        return id(asyncio.get_running_loop())

    assert _portal.run(loop_id()) == _portal.run(loop_id())


def test_run_inside_a_running_loop_like_jupyter() -> None:
    async def cell() -> int:
        # A notebook cell calling a sync smtpkit function while the kernel's loop runs.
        assert asyncio.get_running_loop().is_running()
        return _portal.run(_add(20, 22))

    assert asyncio.run(cell()) == 42


def test_run_from_many_threads_at_once() -> None:
    results: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        value = _portal.run(_add(i, i))
        with lock:
            results.append(value)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [2 * i for i in range(8)]


def test_run_from_the_portal_loop_itself_is_refused() -> None:
    async def nested() -> None:
        _portal.run(_add(1, 1))

    with pytest.raises(RuntimeError, match="await the coroutine"):
        _portal.run(nested())


def test_keyboard_interrupt_cancels_the_coroutine_and_lets_it_clean_up(tmp_path) -> None:
    marker = tmp_path / "cleaned-up"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from smtpkit import _portal

        async def campaign():
            try:
                print("started", flush=True)
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                open({str(marker)!r}, "w").write("yes")
                raise

        try:
            _portal.run(campaign())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
        preexec_fn=default_sigint,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 3
    assert "interrupted" in out
    assert marker.read_text() == "yes"


def test_a_timeout_error_from_the_coroutine_is_raised_not_waited_on() -> None:
    # concurrent.futures.TimeoutError is the builtin TimeoutError on 3.11: the portal must not
    # mistake the coroutine's own TimeoutError for "no result yet" and wait forever.
    async def times_out() -> None:
        await asyncio.sleep(0)
        raise TimeoutError("the server did not answer")

    result: list[BaseException] = []

    def call() -> None:
        try:
            _portal.run(times_out())
        except BaseException as exc:
            result.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "run() kept waiting after the coroutine raised TimeoutError"
    assert isinstance(result[0], TimeoutError) and "did not answer" in str(result[0])
