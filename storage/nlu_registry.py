"""The NLU model registry: which models exist, how good they are, which one is active.

Every process of the assistant polls this table (``bot.model_swap``) and switches to
the ``active`` row's model within seconds, so activating or rolling back is one
transaction here and nothing else. Exactly one row is ``active`` at a time; changing it
happens under a row lock on PostgreSQL and under SQLite's single writer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, _enum, utcnow


class ModelStatus(enum.StrEnum):
    TRAINING = "training"
    FAILED = "failed"
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"


class RegistryError(RuntimeError):
    """A registry change that cannot be made; ``str()`` says why."""


class NluModel(Base):
    """One trained (or training) model of the built-in engine."""

    __tablename__ = "nlu_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(80), unique=True)
    #: The model folder (``models/nlu-…``); empty while training.
    path: Mapped[str] = mapped_column(Text, default="")
    data_fingerprint: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The evaluation gate's comparison against the model active at the time.
    gate: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[ModelStatus] = mapped_column(
        _enum(ModelStatus, "nlu_model_status"), default=ModelStatus.TRAINING, index=True
    )
    #: 0..1 while training, for a page to poll; ``stage`` names the step.
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str] = mapped_column(String(32), default="")
    error: Mapped[str | None] = mapped_column(Text)
    trained_by: Mapped[str | None] = mapped_column(String(64))
    trained_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_by: Mapped[str | None] = mapped_column(String(64))
    activated_at: Mapped[datetime | None]
    override_reason: Mapped[str | None] = mapped_column(Text)
    #: Activation history of this row: who, when, override reason (the audit).
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


async def get_model(session: AsyncSession, version: str) -> NluModel | None:
    return (
        await session.execute(select(NluModel).where(NluModel.version == version))
    ).scalar_one_or_none()


async def active_model(session: AsyncSession) -> NluModel | None:
    return (
        await session.execute(select(NluModel).where(NluModel.status == ModelStatus.ACTIVE))
    ).scalar_one_or_none()


async def active_version(session: AsyncSession) -> tuple[str, str] | None:
    """``(version, path)`` of the active model: the one query every process polls."""
    row = (
        await session.execute(
            select(NluModel.version, NluModel.path).where(NluModel.status == ModelStatus.ACTIVE)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def list_models(session: AsyncSession, limit: int = 50) -> Sequence[NluModel]:
    return (
        (await session.execute(select(NluModel).order_by(NluModel.id.desc()).limit(limit)))
        .scalars()
        .all()
    )


async def register(
    session: AsyncSession,
    version: str,
    *,
    trained_by: str | None,
    status: ModelStatus = ModelStatus.TRAINING,
    path: str = "",
    data_fingerprint: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> NluModel:
    row = NluModel(
        version=version,
        path=path,
        data_fingerprint=data_fingerprint,
        metrics=metrics or {},
        gate={},
        status=status,
        progress=1.0 if status != ModelStatus.TRAINING else 0.0,
        trained_by=trained_by,
        history=[],
    )
    session.add(row)
    await session.flush()
    return row


async def _lock_active(session: AsyncSession) -> NluModel | None:
    return (
        await session.execute(
            select(NluModel).where(NluModel.status == ModelStatus.ACTIVE).with_for_update()
        )
    ).scalar_one_or_none()


async def set_active(
    session: AsyncSession,
    row: NluModel,
    *,
    by: str,
    reason: str | None = None,
    action: str = "activate",
) -> NluModel | None:
    """Make ``row`` the active model; the previous one becomes ``retired``.

    Returns the previously active row. The caller decides whether the gate allows it.
    """
    previous = await _lock_active(session)
    if previous is not None and previous.id == row.id:
        return previous
    if previous is not None:
        previous.status = ModelStatus.RETIRED
    now = utcnow()
    row.status = ModelStatus.ACTIVE
    row.activated_by = by
    row.activated_at = now
    row.override_reason = reason
    row.history = [
        *row.history,
        {
            "action": action,
            "by": by,
            "at": now.isoformat(),
            "reason": reason,
            "replaced": previous.version if previous else None,
        },
    ]
    await session.flush()
    return previous


async def previous_active(session: AsyncSession, current: NluModel) -> NluModel | None:
    """The model active before ``current`` (for a rollback): the newest retired one
    that has been active, by activation time."""
    rows = (
        (
            await session.execute(
                select(NluModel)
                .where(
                    NluModel.status == ModelStatus.RETIRED,
                    NluModel.activated_at.is_not(None),
                    NluModel.id != current.id,
                )
                .order_by(NluModel.activated_at.desc())
            )
        )
        .scalars()
        .all()
    )
    return rows[0] if rows else None
