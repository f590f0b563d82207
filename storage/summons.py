"""Partner departments summoned into a case (社区发令, 部门报到).

A mediator summons a department user into one case; that user sees only the cases it
was summoned to and reports back ``handled`` or ``declined`` with a reason.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, Text, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import sealed
from storage.models import Base, _enum, utcnow


class SummonsState(enum.StrEnum):
    PENDING = "pending"
    HANDLED = "handled"
    DECLINED = "declined"


class Summons(Base):
    """One department summoned into one case."""

    __tablename__ = "summons"
    __table_args__ = (UniqueConstraint("case_id", "department_mediator_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    department_mediator_id: Mapped[int] = mapped_column(ForeignKey("mediators.id"), index=True)
    summoned_by: Mapped[int] = mapped_column(ForeignKey("mediators.id"))
    state: Mapped[SummonsState] = mapped_column(
        _enum(SummonsState, "summons_state"), default=SummonsState.PENDING
    )
    request: Mapped[str] = mapped_column(Text, default="")
    request_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    answer: Mapped[str | None] = mapped_column(Text)
    answer_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None]


async def summons_for(session: AsyncSession, case_id: int, mediator_id: int) -> Summons | None:
    query = select(Summons).where(
        Summons.case_id == case_id, Summons.department_mediator_id == mediator_id
    )
    return (await session.execute(query)).scalar_one_or_none()


async def summoned_case_ids(session: AsyncSession, mediator_id: int) -> list[int]:
    query = select(Summons.case_id).where(Summons.department_mediator_id == mediator_id)
    return [int(x) for x in (await session.execute(query)).scalars()]


async def case_summons(session: AsyncSession, case_id: int) -> list[Summons]:
    query = select(Summons).where(Summons.case_id == case_id).order_by(Summons.id)
    return list((await session.execute(query)).scalars())


# The mediator's request and the department's answer may quote the resident's numbers.
sealed.register(Summons, "request", "request_sealed")
sealed.register(Summons, "answer", "answer_sealed")
