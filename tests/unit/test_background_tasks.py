"""Background tasks outlive any exception, report when they cannot recover, and
sweeps make progress past items that keep failing. No servers: the tasks run
against in-memory stand-ins with a manual clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from services.runtime import supervision
from services.runtime.clock import ManualClock
from services.runtime.settings import Settings
from services.runtime.supervision import TaskHealth
from services.runtime.spec import Sweep
from services.runtime.worker import run_sweep


async def test_a_task_that_raises_is_started_again_and_counts_as_recovered_once_it_makes_progress(monkeypatch):
    monkeypatch.setattr(supervision, "backoff_seconds", lambda failures, **_: 0)
    clock = ManualClock()
    health = TaskHealth(clock, unhealthy_after=60)
    runs = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError("the database is away")
        health.beat("flaky")
        await asyncio.Event().wait()  # then runs on, as a relay does

    task = health.start("flaky", flaky)
    clock.advance(120)  # failing since long ago: recovered all the same
    async with asyncio.timeout(5):
        while len(runs) < 3:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)

    assert health.problems() == []
    task.cancel()


async def test_a_task_failing_longer_than_allowed_makes_the_worker_unhealthy(monkeypatch):
    clock = ManualClock()
    health = TaskHealth(clock, unhealthy_after=60)

    health.failed("relay")
    clock.advance(30)
    assert health.problems() == []
    health.failed("relay")
    clock.advance(31)

    assert health.problems() == ["relay failing for 61s"]
    health.beat("relay")
    assert health.problems() == []


async def test_a_task_that_ended_makes_the_worker_unhealthy():
    health = TaskHealth(ManualClock(), unhealthy_after=60)

    async def ends() -> None:
        return None

    await health.start("timer-consumer", ends)

    assert health.problems() == ["timer-consumer stopped"]


@dataclass(frozen=True)
class Due:
    key: str


class Processor:
    """Stands in for the batch processor: items named bad-* always fail."""

    db = None

    def __init__(self) -> None:
        self.done: list[str] = []
        self.attempts: dict[str, int] = {}

    async def process_internal(self, items: list[Any], key) -> set[str]:
        failed = set()
        for item in items:
            self.attempts[item.key] = self.attempts.get(item.key, 0) + 1
            if item.key.startswith("bad-"):
                failed.add(item.key)
            else:
                self.done.append(item.key)
        return failed


async def test_a_sweep_makes_progress_past_items_that_keep_failing():
    processor, clock = Processor(), ManualClock()
    settings = Settings(batch_max_records=10)
    backlog = [Due(f"bad-{i:02d}") for i in range(10)] + [Due(f"good-{i:02d}") for i in range(25)]

    async def find(db, clock, settings, limit):  # oldest first: the failing ones lead
        return [item for item in backlog if item.key not in processor.done][:limit]

    sweep = Sweep(find, lambda item: item.key, lambda settings: 0.001)
    health = TaskHealth(clock, unhealthy_after=60)
    task = asyncio.create_task(run_sweep("sweep", sweep, processor, None, settings, clock, health))
    try:
        async with asyncio.timeout(10):
            while len(processor.done) < 25:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()

    assert sorted(processor.done) == [f"good-{i:02d}" for i in range(25)]
    assert max(processor.attempts[f"bad-{i:02d}"] for i in range(10)) <= 2, "failing items wait before a new try"


async def test_a_task_that_hangs_without_raising_makes_the_worker_unhealthy():
    clock = ManualClock()
    health = TaskHealth(clock, unhealthy_after=60)

    async def hangs() -> None:
        await asyncio.Event().wait()

    task = health.start("relay", hangs, every=0.5)
    await asyncio.sleep(0)
    clock.advance(59)
    assert health.problems() == []
    clock.advance(2)

    assert health.problems() == ["relay made no progress for 61s"]
    task.cancel()


async def test_a_task_with_a_long_period_is_not_called_hung_between_two_beats():
    clock = ManualClock()
    health = TaskHealth(clock, unhealthy_after=60)

    async def sleeps() -> None:
        await asyncio.Event().wait()

    task = health.start("housekeeping", sleeps, every=3600)
    clock.advance(3000)

    assert health.problems() == []
    task.cancel()
