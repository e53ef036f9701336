"""controller/budget.py: a call cancelled by its client ends after its work's own clean-up."""

from __future__ import annotations

import asyncio

import pytest

from crashfleet.controller import budget


async def test_a_cancelled_call_ends_after_its_works_own_clean_up() -> None:
    started, cleaned = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            for _ in range(3):  # the clean-up awaits (an agent's answer to an interrupt)
                await asyncio.sleep(0)
            cleaned.set()
            raise

    with budget.limit(30):
        call = asyncio.ensure_future(budget.run_within(work()))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert cleaned.is_set()  # the next call finds the session free


async def test_work_past_the_budget_goes_on_for_the_job() -> None:
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done"

    with budget.limit(0):
        task, ended = await budget.run_within(work())
    assert not ended and not task.done()
    release.set()
    assert await task == "done"
