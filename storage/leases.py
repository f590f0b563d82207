"""Leases in the database: one holder at a time across processes and machines.

A lease row is taken or renewed with one conditional UPDATE (the holder is us, or the
lease has expired), so two processes can never both believe they hold it at the same
database time; a holder that dies simply stops renewing and loses it at ``expires_at``.
Used for the leader (who polls Telegram and runs the scheduler) and for single jobs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import JobLease, utcnow


async def take_lease(
    engine: AsyncEngine, name: str, holder: str, ttl: timedelta, now: datetime | None = None
) -> bool:
    """Take or renew the lease ``name`` for ``holder``; True when this holder has it."""
    now = now or utcnow()
    async with engine.begin() as connection:
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


async def release_lease(engine: AsyncEngine, name: str, holder: str) -> None:
    """Let the lease go now (a clean shutdown), so a successor need not wait it out."""
    async with engine.begin() as connection:
        await connection.execute(
            update(JobLease)
            .where(JobLease.name == name, JobLease.holder == holder)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


async def lease_holder(engine: AsyncEngine, name: str, now: datetime | None = None) -> str | None:
    """Who holds ``name`` now (``None`` when nobody does)."""
    now = now or utcnow()
    async with engine.connect() as connection:
        return await connection.scalar(
            select(JobLease.holder).where(JobLease.name == name, JobLease.expires_at >= now)
        )
