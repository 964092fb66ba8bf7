"""The admission gate: bounded holders, a bounded queue, a bounded wait, no slot lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from app.web.admission import AdmissionGate
from app.web.request_body import TransferFloor
from tests.support.event_loop import run_in_new_loop

ResultT = TypeVar("ResultT")


def run(scenario: Callable[[], Coroutine[Any, Any, ResultT]]) -> ResultT:
    return run_in_new_loop(scenario)


def test_up_to_the_limit_enter_at_once_and_the_next_is_refused_without_a_queue() -> None:
    async def scenario() -> list[bool]:
        gate = AdmissionGate(2, queue=0, wait=1)
        return [await gate.acquire(), await gate.acquire(), await gate.acquire()]

    assert run(scenario) == [True, True, False]


def test_a_waiter_gets_the_slot_a_holder_releases() -> None:
    async def scenario() -> tuple[bool, int]:
        gate = AdmissionGate(1, queue=1, wait=5)
        assert await gate.acquire()
        waiting = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0.01)
        gate.release()
        return await waiting, gate.held

    assert run(scenario) == (True, 1)


def test_a_waiter_is_refused_after_the_wait_and_leaves_the_queue() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = AdmissionGate(1, queue=1, wait=0.05)
        assert await gate.acquire()
        refused = await gate.acquire()
        gate.release()
        # The timed-out waiter took nothing with it: the slot is free again.
        return refused, await gate.acquire()

    assert run(scenario) == (False, True)


def test_only_queue_many_wait_the_rest_are_refused_at_once() -> None:
    async def scenario() -> list[bool]:
        gate = AdmissionGate(1, queue=2, wait=0.5)
        assert await gate.acquire()
        waiters = [asyncio.create_task(gate.acquire()) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert waiters[2].done()
        assert waiters[2].result() is False
        gate.release()
        gate.release()  # the first waiter's slot, handed on to the second
        return [await waiter for waiter in waiters]

    assert run(scenario) == [True, True, False]


def test_a_cancelled_waiter_does_not_lose_a_slot() -> None:
    async def scenario() -> int:
        gate = AdmissionGate(1, queue=4, wait=5)
        assert await gate.acquire()
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.release()
        assert await gate.acquire()
        gate.release()
        return gate.held

    assert run(scenario) == 0


@pytest.mark.parametrize(
    ("elapsed", "received", "left"),
    [
        (0, 0, 5),  # within the grace period: the grace period is the bound
        (5, 0, 0),  # grace over, nothing sent: due now
        (10, 20_000, 10),  # 2,000 B/s kept up to 20 s
        (95, 1_000_000, 5),  # fast, but the deadline is near
    ],
)
def test_the_transfer_floor_says_how_long_the_next_bytes_may_take(
    elapsed: float, received: int, left: float
) -> None:
    floor = TransferFloor(deadline_seconds=100, min_bytes_per_second=1000, grace_seconds=5)
    assert floor.seconds_left(elapsed, received) == pytest.approx(left)
