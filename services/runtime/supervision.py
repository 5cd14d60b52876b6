"""Background tasks that outlive any exception.

Every long-running task of a worker (the outbox relay, the sweeps, the
delayed-topic consumer, the metrics refresh) runs under ``supervise``: an
exception is logged and counted, and the task starts again after a backoff
that grows with consecutive failures. A task reports progress with ``beat``;
one that keeps failing without a beat for ``unhealthy_after`` seconds, one that
hangs (no beat for that long, or twice its own period if longer) and one that
ended make ``/healthz`` fail, so that an orchestrator restarts the process.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime

from services.runtime.clock import Clock
from services.runtime.observability import TASK_FAILURES

log = logging.getLogger(__name__)


def backoff_seconds(failures: int, *, first: float = 0.1, cap: float = 30.0) -> float:
    """Exponential backoff with jitter (half to full of the step), capped."""
    step = min(cap, first * 2 ** min(failures - 1, 30))
    return step * (0.5 + random.random() / 2)


class TaskHealth:
    """What /healthz reports: tasks that ended or keep failing."""

    def __init__(self, clock: Clock, unhealthy_after: float) -> None:
        self.clock = clock
        self.unhealthy_after = unhealthy_after
        self.tasks: list[asyncio.Task[None]] = []
        self._failing_since: dict[str, datetime] = {}
        self._failures: dict[str, int] = {}
        self._last_beat: dict[str, datetime] = {}
        self._period: dict[str, float] = {}

    def beat(self, name: str) -> None:
        """``name`` made progress: whatever failed before has passed."""
        self._failing_since.pop(name, None)
        self._failures.pop(name, None)
        self._last_beat[name] = self.clock.now()

    def failed(self, name: str) -> int:
        """Record a failure of ``name``; returns how many in a row."""
        TASK_FAILURES.labels(name).inc()
        self._failing_since.setdefault(name, self.clock.now())
        self._failures[name] = self._failures.get(name, 0) + 1
        return self._failures[name]

    def problems(self) -> list[str]:
        now = self.clock.now()
        ended = [f"{t.get_name()} stopped" for t in self.tasks if t.done() and not t.cancelled()]
        failing = [
            f"{name} failing for {(now - since).total_seconds():.0f}s"
            for name, since in self._failing_since.items()
            if (now - since).total_seconds() >= self.unhealthy_after
        ]
        hung = [
            f"{name} made no progress for {(now - last).total_seconds():.0f}s"
            for name, last in self._last_beat.items()
            if name not in self._failing_since
            and (now - last).total_seconds() >= max(self.unhealthy_after, 2 * self._period.get(name, 0.0))
        ]
        return ended + failing + hung

    def start(self, name: str, run: Callable[[], Awaitable[None]], *, every: float | None = None) -> asyncio.Task[None]:
        """Run ``run`` supervised. With ``every`` (seconds), the task promises a
        beat at least that often and counts as hung when it stops beating."""
        if every is not None:
            self._period[name] = every
            self._last_beat[name] = self.clock.now()
        task = asyncio.create_task(supervise(name, run, self), name=name)
        self.tasks.append(task)
        return task


async def supervise(name: str, run: Callable[[], Awaitable[None]], health: TaskHealth) -> None:
    """Run ``run()`` until it returns; after any exception, run it again after a backoff."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            failures = health.failed(name)
            delay = backoff_seconds(failures)
            log.exception("%s failed (%d in a row); starting it again in %.1fs", name, failures, delay)
            await asyncio.sleep(delay)
