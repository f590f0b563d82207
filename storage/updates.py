"""Processed delivery ids: Telegram redelivers an update when it is not acknowledged in
time (or a webhook retries), a REST bridge retries a message whose answer it lost, and
with several workers the same delivery can reach two of them at once. A resident must
not get two case numbers for it — and the second delivery must still get a truthful
answer, so the first handling's replies are kept with the id. They may quote what the
resident typed (the review of a draft does): kept masked, the original sealed
(:mod:`storage.sealed`)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ProcessedUpdate, utcnow
from storage.sealed import seal_value, session_vault, unseal_value


def delivery_number(key: str) -> int:
    """A stable 63-bit number for a text delivery id (a REST bridge's message id)."""
    digest = hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


async def record_processed_update(session: AsyncSession, source: str, update_id: int) -> bool:
    """Record the id; True the first time, False when it was already recorded.

    On PostgreSQL a concurrent transaction inserting the same id waits here until the
    first commits (then this one sees the row) or rolls back (then this one wins): the
    unique index, not process memory, decides who handles the delivery.
    """
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(ProcessedUpdate)
        .values(source=source, update_id=update_id, processed_at=utcnow())
        .on_conflict_do_nothing(index_elements=["source", "update_id"])
    )
    result = await session.execute(statement)
    return result.rowcount == 1  # type: ignore[attr-defined]


async def keep_replies(
    session: AsyncSession, source: str, update_id: int, replies: list[dict[str, Any]]
) -> None:
    """Keep what the handling of a delivery answered (in the same transaction)."""
    masked, token = seal_value(replies, session_vault(session))
    await session.execute(
        update(ProcessedUpdate)
        .where(ProcessedUpdate.source == source, ProcessedUpdate.update_id == update_id)
        .values(replies=masked, replies_sealed=token)
        .execution_options(synchronize_session=False)
    )


async def replies_of(session: AsyncSession, source: str, update_id: int) -> list[dict[str, Any]]:
    """What the first handling of a delivery answered (empty when none was kept)."""
    found = (
        await session.execute(
            select(ProcessedUpdate.replies, ProcessedUpdate.replies_sealed).where(
                ProcessedUpdate.source == source, ProcessedUpdate.update_id == update_id
            )
        )
    ).first()
    if found is None:
        return []
    return list(unseal_value(found[0], found[1], session_vault(session)) or [])


async def forget_old_updates(session: AsyncSession, older_than: timedelta) -> int:
    """Drop ids older than Telegram's redelivery window (it keeps updates 24 hours)."""
    cutoff = utcnow() - older_than
    result = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < cutoff)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
