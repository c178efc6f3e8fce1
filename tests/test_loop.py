"""The harness's event-loop thread: ``call`` runs a coroutine there, bounded by its timeout."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from harness.qemu import loop as hloop


class Waited(Exception):
    pass


def test_call_returns_the_coroutines_value_from_the_loop_thread():
    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert hloop.call(where, 5.0, Waited) == "harness-qemu-loop"


def test_call_raises_what_the_coroutine_raises():
    async def fails() -> None:
        await asyncio.sleep(0)
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        hloop.call(fails, 5.0, Waited)


def test_a_timeout_cancels_the_coroutine_and_raises_the_callers_error():
    seen: list[str] = []

    async def hangs() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    start = time.monotonic()
    with pytest.raises(Waited):
        hloop.call(hangs, 0.2, Waited)
    assert time.monotonic() - start < 5.0
    hloop.call_soon(lambda: None)   # the loop ran the cancellation by now
    assert seen == ["cancelled"]


def test_call_refuses_the_loop_thread_itself():
    async def nothing() -> None:
        return None

    with pytest.raises(RuntimeError, match="loop thread"):
        hloop.call_soon(lambda: hloop.call(nothing, 1.0, Waited))
