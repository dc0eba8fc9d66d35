"""The sidecar's byte budget for request bodies: first come, first served, never stuck."""

from __future__ import annotations

import asyncio

import pytest

from extproc.proxy.budget import ByteBudget


async def test_a_body_that_fits_is_taken_at_once_and_given_back_whole():
    """Checked without awaiting the take: a wrong comparison fails here instead of hanging."""
    budget = ByteBudget(100)
    for size, free in ((60, 40), (40, 0)):  # the second fits exactly
        task = asyncio.create_task(budget.take(size))
        await asyncio.sleep(0)
        assert (task.done(), budget.free) == (True, free)
    budget.give(60)
    budget.give(40)
    assert budget.free == 100


async def test_a_body_waits_until_earlier_ones_give_back_their_bytes():
    budget = ByteBudget(100)
    assert await budget.take(60) == 60
    later = asyncio.create_task(budget.take(60))
    await asyncio.sleep(0)
    assert not later.done()
    budget.give(60)
    assert await later == 60
    assert budget.free == 40


async def test_a_body_larger_than_the_budget_takes_all_of_it():
    budget = ByteBudget(100)
    assert await budget.take(10**9) == 100
    budget.give(100)
    assert budget.free == 100


async def test_first_come_first_served():
    budget = ByteBudget(100)
    await budget.take(85)
    await budget.take(5)
    big = asyncio.create_task(budget.take(50))
    small = asyncio.create_task(budget.take(5))
    await asyncio.sleep(0)
    assert not big.done() and not small.done()
    budget.give(5)  # the small one would fit now, but it doesn't jump the queue
    await asyncio.sleep(0)
    assert (big.done(), small.done(), budget.free) == (False, False, 15)
    budget.give(85)
    assert (await big, await small) == (50, 5)


async def test_a_cancelled_wait_gives_nothing_away_and_lets_the_next_in():
    budget = ByteBudget(100)
    await budget.take(80)
    first = asyncio.create_task(budget.take(50))
    second = asyncio.create_task(budget.take(20))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert budget.free == 0  # let in as the first left, on an exact fit
    assert await second == 20
    assert budget.free == 0


@pytest.mark.parametrize("point", ["first in line", "second in line", "granted, not yet resumed"])
async def test_a_cancelled_take_loses_no_bytes_and_lets_no_one_jump_the_queue(point: str):
    """A request cancelled (the client went away) at any point of its wait: its bytes, if it
    was given them, go to the next in line, and no one behind it overtakes anyone."""
    budget = ByteBudget(100)
    await budget.take(80)
    first = asyncio.create_task(budget.take(50))
    second = asyncio.create_task(budget.take(60))
    await asyncio.sleep(0)
    if point == "granted, not yet resumed":
        budget.give(80)  # first is given its 50 bytes; second waits for 60
        assert (budget.free, first.done(), second.done()) == (50, False, False)
    cancelled, waiting = (second, first) if point == "second in line" else (first, second)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    if point != "granted, not yet resumed":
        assert not waiting.done() and budget.free == 20
        budget.give(80)
    size = 60 if waiting is second else 50
    assert budget.free == 100 - size  # granted at once, not left waiting
    assert await waiting == size
    budget.give(size)
    assert budget.free == 100
