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

from sqlalchemy import or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.runtime import Store
from storage.models import JobLease, utcnow

log = logging.getLogger(__name__)


def holder_name() -> str:
    """This process, readable in the lease table: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def take_lease(
    store: Store, name: str, holder: str, ttl: timedelta, now: datetime | None = None
) -> bool:
    """Take or renew the lease ``name`` for ``holder``; True when this holder has it."""
    now = now or utcnow()
    async with store.engine.begin() as connection:
        insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        await connection.execute(
            insert(JobLease)
            .values(name=name, holder=holder, expires_at=now + ttl)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        result = await connection.execute(
            update(JobLease)
            .where(
                JobLease.name == name,
                or_(JobLease.holder == holder, JobLease.expires_at < now),
            )
            .values(holder=holder, expires_at=now + ttl)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


async def release_lease(store: Store, name: str, holder: str) -> None:
    async with store.engine.begin() as connection:
        await connection.execute(
            update(JobLease)
            .where(JobLease.name == name, JobLease.holder == holder)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


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
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.clock = clock
        self.holder = holder or holder_name()
        self.runs: dict[str, int] = {job.name: 0 for job in jobs}
        self.last_error: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def run_once(self, job: Job) -> dict[str, int] | None:
        """One run of ``job`` if this process holds (or takes) its lease."""
        ttl = timedelta(seconds=max(job.interval * 3, 30))
        if not await take_lease(self.store, f"job:{job.name}", self.holder, ttl, self.clock()):
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
        for job in self.jobs:
            try:
                await release_lease(self.store, f"job:{job.name}", self.holder)
            except Exception as error:
                log.debug("lease of %s not released: %s", job.name, type(error).__name__)
        self._tasks = []

    def health(self) -> dict[str, object]:
        return {"holder": self.holder, "runs": dict(self.runs), "errors": dict(self.last_error)}
