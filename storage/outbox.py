"""Messages waiting for a resident on a channel that cannot be written to first.

A REST bridge only hears from us in the answer to its own request, so what a mediator
(or a status change) says to a REST resident waits here until that resident writes
again; the next answer returns the pending messages first and marks them delivered in
the same transaction, so a message is handed over once and is never lost between.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, LargeBinary, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import sealed
from storage.models import Base, utcnow


class OutboxMessage(Base):
    """One message for ``(channel, chat_id)``; ``payload`` holds text, buttons, attachment."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "channel", "chat_id", "delivered_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    #: The payload as written when its text holds personal numbers (:mod:`storage.sealed`).
    payload_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


async def enqueue(
    session: AsyncSession, channel: str, chat_id: str, payloads: list[dict[str, Any]]
) -> list[int]:
    """Store messages in order; returns their ids."""
    rows = [OutboxMessage(channel=channel, chat_id=chat_id, payload=p) for p in payloads]
    session.add_all(rows)
    await session.flush()
    return [row.id for row in rows]


async def take_pending(
    session: AsyncSession, channel: str, chat_id: str, limit: int = 50
) -> list[dict[str, Any]]:
    """Pending payloads, oldest first, marked delivered in the caller's transaction.

    The UPDATE only marks rows still pending, so two requests racing for the same
    messages cannot both hand them over: the rows this call marked are the ones it
    returns.
    """
    pending = select(OutboxMessage.id).where(
        OutboxMessage.channel == channel,
        OutboxMessage.chat_id == chat_id,
        OutboxMessage.delivered_at.is_(None),
    )
    ids = list((await session.execute(pending.order_by(OutboxMessage.id).limit(limit))).scalars())
    if not ids:
        return []
    marked = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.delivered_at.is_(None))
        .values(delivered_at=utcnow())
        .returning(OutboxMessage.id, OutboxMessage.payload, OutboxMessage.payload_sealed)
    )
    rows = sorted(marked.all(), key=lambda row: row[0])
    vault = sealed.session_vault(session)
    return [dict(sealed.unseal_value(row[1], row[2], vault)) for row in rows]


async def pending_count(session: AsyncSession, channel: str, chat_id: str) -> int:
    rows = await session.execute(
        select(OutboxMessage.id).where(
            OutboxMessage.channel == channel,
            OutboxMessage.chat_id == chat_id,
            OutboxMessage.delivered_at.is_(None),
        )
    )
    return len(rows.all())


sealed.register(OutboxMessage, "payload", "payload_sealed", json=True)
