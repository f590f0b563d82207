"""Periodic work of our own, whatever channels are on, safe with several processes.

The sweep (escalations, unacknowledged emergencies, lost announcements, reminders) and
later jobs (retention …) run as one background task of the aiohttp app (a cleanup
context), not inside python-telegram-bot's job queue: a deployment with only the REST,
callback or WeChat channels must escalate an unclaimed urgent case on time too.

With several processes on one database, each job runs where its lease is held: a row
in ``job_leases`` taken and renewed with one conditional UPDATE, so exactly one holder
at a time, and a holder that dies loses it when the lease expires. The jobs themselves
are also written to be harmless when run twice (every change is conditional).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from actions.leadership import Leadership
from bot.runtime import Store
from storage import leases
from storage.models import utcnow

log = logging.getLogger(__name__)


def holder_name() -> str:
    """This process, readable in the lease table: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic job: ``run(now)`` returns counts to log (never people's data)."""

    name: str
    interval: float
    run: Callable[[datetime], Awaitable[dict[str, int]]]


class Scheduler:
    """Runs each job every ``interval`` seconds where this process holds its lease."""

    def __init__(
        self,
        store: Store,
        jobs: list[Job],
        *,
        clock: Callable[[], datetime] = utcnow,
        holder: str | None = None,
        leader: Leadership | None = None,
    ) -> None:
        self.store = store
        #: With several workers the scheduler runs only on the leader (started and
        #: stopped by its hooks), and the leader's lease replaces the per-job leases:
        #: a new leader must not wait out a dead one's job lease (failover ≤ 15 s).
        self.leader = leader
        self.jobs = jobs
        self.clock = clock
        self.holder = holder or holder_name()
        self.runs: dict[str, int] = {job.name: 0 for job in jobs}
        self.last_error: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def run_once(self, job: Job) -> dict[str, int] | None:
        """One run of ``job`` if this process holds (or takes) its lease."""
        if self.leader is not None:
            if not self.leader.is_leader:
                return None
        else:
            ttl = timedelta(seconds=max(job.interval * 3, 30))
            if not await leases.take_lease(
                self.store.engine, f"job:{job.name}", self.holder, ttl, self.clock()
            ):
                return None
        counts = await job.run(self.clock())
        self.runs[job.name] += 1
        if any(counts.values()):
            log.info("job %s: %s", job.name, counts)
        return counts

    async def _loop(self, job: Job) -> None:
        while True:
            try:
                await self.run_once(job)
                self.last_error.pop(job.name, None)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # one failed run must not end the job
                self.last_error[job.name] = type(error).__name__
                log.warning("job %s failed: %s", job.name, type(error).__name__)
                log.debug("job failure", exc_info=error)
            await asyncio.sleep(job.interval)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(job), name=f"job:{job.name}") for job in self.jobs
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for job in self.jobs if self.leader is None else ():
            try:
                await leases.release_lease(self.store.engine, f"job:{job.name}", self.holder)
            except Exception as error:
                log.debug("lease of %s not released: %s", job.name, type(error).__name__)
        self._tasks = []

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def health(self) -> dict[str, object]:
        health: dict[str, object] = {
            "holder": self.holder,
            "runs": dict(self.runs),
            "errors": dict(self.last_error),
        }
        if self.leader is not None:
            health["leader"] = self.leader.is_leader
            health["running"] = self.running
        return health
