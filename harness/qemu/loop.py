"""The harness's own asyncio event loop, on one long-lived background thread.

``qemu.qmp`` is asynchronous; the harness is used from synchronous code (pytest tests,
the CLI).  All QMP clients live on this one loop, which keeps reading events and
draining logs while the caller's thread does other work; callers submit coroutines with
:func:`call`, which always takes a timeout.

QEMU processes are also spawned *from this thread*: the parent-death signal is tied to
the thread that forked the child, and this thread lives as long as the process, so a
QEMU started from a short-lived worker thread does not die when that thread ends.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_owner_pid: int | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The harness loop, started on first use (and again in a forked child)."""
    global _loop, _thread, _owner_pid
    with _lock:
        if _loop is None or _owner_pid != os.getpid() or not _thread or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                ready.set()
                loop.run_forever()

            thread = threading.Thread(target=run, name="harness-qemu-loop", daemon=True)
            thread.start()
            if not ready.wait(10):
                raise RuntimeError("the harness event loop thread did not start within 10 s")
            _loop, _thread, _owner_pid = loop, thread, os.getpid()
        return _loop


def in_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def call(coro_factory: Callable[[], Awaitable[T]], timeout: float,
         on_timeout: Callable[[], BaseException]) -> T:
    """Run ``coro_factory()`` on the harness loop and wait at most ``timeout`` seconds.

    On timeout the coroutine is cancelled and ``on_timeout()`` is raised; it builds an
    error that says what was waited for (with log tails), so each caller decides the text.
    """
    if in_loop_thread():
        raise RuntimeError("harness.qemu.loop.call() must not be used from the loop thread")
    loop = get_loop()

    async def bounded() -> T:
        return await asyncio.wait_for(coro_factory(), timeout)

    future = asyncio.run_coroutine_threadsafe(bounded(), loop)
    try:
        # The inner wait_for enforces the timeout; the outer one is a backstop in case the
        # loop itself is wedged.
        return future.result(timeout + 5.0)
    except (asyncio.TimeoutError, TimeoutError):
        future.cancel()
        raise on_timeout() from None


def call_soon(fn: Callable[[], T], timeout: float = 30.0) -> T:
    """Run a plain function on the loop thread and return its result."""
    loop = get_loop()
    result: dict[str, object] = {}
    done = threading.Event()

    def wrapper() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc
        finally:
            done.set()

    loop.call_soon_threadsafe(wrapper)
    if not done.wait(timeout):
        raise TimeoutError(f"the harness event loop did not run {fn!r} within {timeout} s")
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]
