"""Processed update ids: Telegram redelivers an update when it is not acknowledged in
time (or a webhook retries), and a resident must not get two case numbers for it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ProcessedUpdate, utcnow


async def record_processed_update(session: AsyncSession, source: str, update_id: int) -> bool:
    """Record the id; True the first time, False when it was already recorded."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(ProcessedUpdate)
        .values(source=source, update_id=update_id, processed_at=utcnow())
        .on_conflict_do_nothing(index_elements=["source", "update_id"])
    )
    result = await session.execute(statement)
    return result.rowcount == 1  # type: ignore[attr-defined]


async def forget_old_updates(session: AsyncSession, older_than: timedelta) -> int:
    """Drop ids older than Telegram's redelivery window (it keeps updates 24 hours)."""
    cutoff = utcnow() - older_than
    result = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < cutoff)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
