"""The sidecar's byte budget for request bodies: first come, first served, never stuck."""

from __future__ import annotations

import asyncio

import pytest

from extproc.proxy.budget import ByteBudget


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
    await budget.take(90)
    big = asyncio.create_task(budget.take(50))
    small = asyncio.create_task(budget.take(5))
    await asyncio.sleep(0)
    assert not big.done() and not small.done()  # the small one doesn't jump the queue
    budget.give(90)
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
    assert await second == 20
    assert budget.free == 0
