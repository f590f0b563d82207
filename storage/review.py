"""Residents' messages kept for review: the NLU inbox an administrator labels.

A capture is one message the NLU classified at a decision point, stored *masked*
(phone, ID card and bank card numbers never reach this table in the clear, see
:mod:`storage.redact`), with the parse, the model version and the signals that say the
model may have been wrong. ``case_id`` links it to the case it led to, so retention can
delete it with the case.

About one in five captures (chosen by a hash of the normalised text, so the choice
never moves and identical messages land on the same side) is the *holdout* slice: it
is labelled like any other but never trained on, and the evaluation gate measures every
candidate model on it.
"""

from __future__ import annotations

import enum
import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Select,
    String,
    Text,
    cast,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, _enum, utcnow

#: Share of captures that form the holdout slice, in percent.
HOLDOUT_PERCENT = 20


class CaptureStatus(enum.StrEnum):
    OPEN = "open"
    LABELLED = "labelled"
    SKIPPED = "skipped"
    NOT_REAL = "not_real"


class LabelSource(enum.StrEnum):
    ADMIN = "admin"
    MEDIATOR_RECATEGORISE = "mediator_recategorise"
    IMPORT = "import"
    RESIDENT_CHOICE = "resident_choice"


class NluCapture(Base):
    """One captured message with its parse, signals and (eventually) its label."""

    __tablename__ = "nlu_captures"
    __table_args__ = (Index("ix_nlu_captures_status_priority", "status", "priority"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel: Mapped[str] = mapped_column(String(32))
    #: The chat it came from, so the capture can be linked to the case filed later.
    chat_id: Mapped[str | None] = mapped_column(String(64))
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    #: Where in the conversation: ``first_message``, ``kind_answer``, ``recategorised``,
    #: ``import``.
    decision_point: Mapped[str] = mapped_column(String(32))
    text_masked: Mapped[str] = mapped_column(Text)
    #: SHA-256 of the normalised masked text: duplicates and the holdout choice.
    text_hash: Mapped[str] = mapped_column(String(64), index=True)
    parse: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_version: Mapped[str | None] = mapped_column(String(80))
    #: The model's answer (top intent of the ranking), for filtering and the gate.
    predicted: Mapped[str | None] = mapped_column(String(64))
    signals: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: Sort key of the inbox: higher first (disagreements, then small margins).
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    #: A label a resident's own choice suggests (weaker than an administrator's).
    weak_label: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(64))
    labelled_by: Mapped[str | None] = mapped_column(String(64))
    labelled_at: Mapped[datetime | None]
    label_source: Mapped[LabelSource | None] = mapped_column(_enum(LabelSource, "label_source"))
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[CaptureStatus] = mapped_column(
        _enum(CaptureStatus, "capture_status"), default=CaptureStatus.OPEN
    )


def normalise_for_hash(text: str) -> str:
    """NFKC, lower case, no whitespace: the same message typed twice hashes the same."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return "".join(folded.split())


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise_for_hash(text).encode("utf-8")).hexdigest()


def is_holdout(text: str) -> bool:
    """Stable: depends only on the normalised text, never on time or order."""
    return int(text_hash(text)[:8], 16) % 100 < HOLDOUT_PERCENT


# --- queries ---------------------------------------------------------------------------


async def add_capture(session: AsyncSession, capture: NluCapture) -> NluCapture:
    session.add(capture)
    await session.flush()
    return capture


async def get_capture(session: AsyncSession, capture_id: int) -> NluCapture | None:
    return await session.get(NluCapture, capture_id)


@dataclass(frozen=True, slots=True)
class InboxFilter:
    """What an administrator narrows the inbox to. ``search`` matches the masked text."""

    status: CaptureStatus | None = CaptureStatus.OPEN
    search: str | None = None
    signal: str | None = None
    predicted: str | None = None
    channel: str | None = None
    holdout: bool | None = None


def _filtered(query: Select[Any], filters: InboxFilter) -> Select[Any]:
    if filters.status is not None:
        query = query.where(NluCapture.status == filters.status)
    if filters.search:
        escaped = filters.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(NluCapture.text_masked.like(f"%{escaped}%", escape="\\"))
    if filters.predicted:
        query = query.where(NluCapture.predicted == filters.predicted)
    if filters.channel:
        query = query.where(NluCapture.channel == filters.channel)
    if filters.holdout is not None:
        query = query.where(NluCapture.holdout.is_(filters.holdout))
    if filters.signal:
        # Signal names are a closed vocabulary and the list is JSON text on both
        # backends, so a quoted-name match is exact enough and portable.
        query = query.where(cast(NluCapture.signals, Text).like(f'%"{filters.signal}"%'))
    return query


async def find_captures(
    session: AsyncSession, filters: InboxFilter, limit: int | None = 50
) -> Sequence[NluCapture]:
    """Captures matching ``filters``, most instructive first (then oldest first)."""
    query = _filtered(select(NluCapture), filters).order_by(
        NluCapture.priority.desc(), NluCapture.id
    )
    if limit is not None:
        query = query.limit(limit)
    return (await session.execute(query)).scalars().all()


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(NluCapture.status, func.count()).group_by(NluCapture.status)
    )
    return {str(status): int(count) for status, count in rows.all()}


async def labelled(session: AsyncSession, *, holdout: bool) -> Sequence[NluCapture]:
    """Labelled captures of one slice (training slice: ``holdout=False``)."""
    query = (
        select(NluCapture)
        .where(NluCapture.status == CaptureStatus.LABELLED, NluCapture.holdout.is_(holdout))
        .order_by(NluCapture.id)
    )
    return (await session.execute(query)).scalars().all()


async def open_captures_for_chat(
    session: AsyncSession, channel: str, chat_id: str
) -> Sequence[NluCapture]:
    query = select(NluCapture).where(
        NluCapture.channel == channel, NluCapture.chat_id == chat_id, NluCapture.case_id.is_(None)
    )
    return (await session.execute(query)).scalars().all()


async def latest_for_chat(
    session: AsyncSession, channel: str, chat_id: str, decision_point: str | None = None
) -> NluCapture | None:
    query = select(NluCapture).where(NluCapture.channel == channel, NluCapture.chat_id == chat_id)
    if decision_point:
        query = query.where(NluCapture.decision_point == decision_point)
    query = query.order_by(NluCapture.id.desc()).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def captures_for_case(session: AsyncSession, case_id: int) -> Sequence[NluCapture]:
    query = select(NluCapture).where(NluCapture.case_id == case_id).order_by(NluCapture.id)
    return (await session.execute(query)).scalars().all()
