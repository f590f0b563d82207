"""Repository functions for cases and their timeline.

Callers pass an open :class:`AsyncSession` and commit when their unit of work is done;
these functions only flush. Every change to a case adds a :class:`CaseEvent`, so the
timeline doubles as the audit log of who saw and changed what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case as sql_case
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import AlreadyClaimed, CaseNotFound, InvalidTransition, MediatorInactive
from storage.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Mediator,
    Outcome,
    ReferenceCounter,
    RiskLevel,
    utcnow,
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: ``resident``, ``mediator``, ``system`` or ``admin``, and an id."""

    kind: str
    id: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls("system", None)

    @classmethod
    def of(cls, mediator: Mediator) -> Actor:
        return cls("mediator", str(mediator.id))


#: Allowed status changes. Terminal states have no way out; a resolved case may be
#: reopened into mediation, and a claimed case released back to the queue.
TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    CaseStatus.NEW: frozenset({CaseStatus.CLAIMED, CaseStatus.WITHDRAWN}),
    CaseStatus.CLAIMED: frozenset(
        {CaseStatus.NEW, CaseStatus.IN_MEDIATION, CaseStatus.RESOLVED, CaseStatus.WITHDRAWN}
    ),
    CaseStatus.IN_MEDIATION: frozenset({CaseStatus.NEW, CaseStatus.RESOLVED, CaseStatus.WITHDRAWN}),
    CaseStatus.RESOLVED: frozenset({CaseStatus.CLOSED, CaseStatus.IN_MEDIATION}),
    CaseStatus.CLOSED: frozenset(),
    CaseStatus.WITHDRAWN: frozenset(),
}

OPEN_STATUSES = (CaseStatus.NEW, CaseStatus.CLAIMED, CaseStatus.IN_MEDIATION)


@dataclass(slots=True)
class Page:
    """One page of a listing and the total count for paging controls."""

    items: list[Case]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


async def next_reference(
    session: AsyncSession, prefix: str, timezone: str = "Asia/Shanghai", now: datetime | None = None
) -> str:
    """Next readable reference for today, e.g. ``BA-20261125-0042``.

    One atomic upsert-and-return per call: concurrent filers on SQLite or PostgreSQL
    each get a different number without a lost update.
    """
    day = (now or utcnow()).astimezone(ZoneInfo(timezone)).strftime("%Y%m%d")
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(ReferenceCounter)
        .values(day=day, last_value=1)
        .on_conflict_do_update(
            index_elements=[ReferenceCounter.day],
            set_={"last_value": ReferenceCounter.last_value + 1},
        )
        .returning(ReferenceCounter.last_value)
    )
    number = (await session.execute(statement)).scalar_one()
    return f"{prefix}-{day}-{number:04d}"


async def add_event(
    session: AsyncSession, case: Case, kind: str, actor: Actor, data: dict[str, Any] | None = None
) -> CaseEvent:
    """Append one entry to the case's timeline."""
    entry = CaseEvent(
        case_id=case.id, kind=kind, actor_type=actor.kind, actor_id=actor.id, data=data or {}
    )
    session.add(entry)
    await session.flush()
    return entry


async def add_events(
    session: AsyncSession, case: Case, entries: Sequence[tuple[str, Actor, dict[str, Any]]]
) -> None:
    """Append several timeline entries with one flush (one batched INSERT)."""
    session.add_all(
        CaseEvent(case_id=case.id, kind=kind, actor_type=actor.kind, actor_id=actor.id, data=data)
        for kind, actor, data in entries
    )
    await session.flush()


async def add_events_to_cases(
    session: AsyncSession,
    case_ids: Sequence[int],
    kind: str,
    actor: Actor,
    data: dict[str, Any],
) -> None:
    """The same entry on many cases' timelines at once (an export of a case list)."""
    session.add_all(
        CaseEvent(case_id=case_id, kind=kind, actor_type=actor.kind, actor_id=actor.id, data=data)
        for case_id in case_ids
    )
    await session.flush()


async def file_case(
    session: AsyncSession,
    *,
    category: str,
    resident_words: str,
    channel: str,
    prefix: str = "BA",
    timezone: str = "Asia/Shanghai",
    actor: Actor | None = None,
    **fields: Any,
) -> Case:
    """Create a case with a fresh reference number and its ``filed`` event."""
    reference = await next_reference(session, prefix, timezone)
    case = Case(
        reference=reference,
        category=category,
        resident_words=resident_words,
        channel=channel,
        **fields,
    )
    session.add(case)
    await session.flush()
    await add_event(
        session,
        case,
        "filed",
        actor or Actor.system(),
        {"category": category, "risk_level": str(case.risk_level or RiskLevel.NORMAL)},
    )
    return case


async def get_case(session: AsyncSession, reference: str) -> Case:
    """The case with this reference (case-insensitive), or :class:`CaseNotFound`."""
    wanted = reference.strip().upper()
    case = (
        await session.execute(select(Case).where(Case.reference == wanted))
    ).scalar_one_or_none()
    if case is None:
        raise CaseNotFound(reference)
    return case


async def list_cases(
    session: AsyncSession,
    *,
    centre_ids: Sequence[int] | None = None,
    statuses: Sequence[CaseStatus] | None = None,
    category: str | None = None,
    risk: RiskLevel | None = None,
    mediator_id: int | None = None,
    resident_id: int | None = None,
    page: int = 1,
    page_size: int = 20,
) -> Page:
    """Filtered listing, urgent first, then oldest first (what waits longest goes first)."""
    page, page_size = max(1, page), min(max(1, page_size), 200)
    conditions = []
    if centre_ids is not None:
        # Where the case is now or where it was routed (it stays visible at home after
        # moving up on escalation).
        ids = list(centre_ids)
        conditions.append(or_(Case.centre_id.in_(ids), Case.home_centre_id.in_(ids)))
    if statuses:
        conditions.append(Case.status.in_(list(statuses)))
    if category:
        conditions.append(Case.category == category)
    if risk is not None:
        conditions.append(Case.risk_level == risk)
    if mediator_id is not None:
        conditions.append(Case.mediator_id == mediator_id)
    if resident_id is not None:
        conditions.append(Case.resident_id == resident_id)
    total = (
        await session.execute(select(func.count()).select_from(Case).where(*conditions))
    ).scalar_one()
    urgency = sql_case(
        (Case.risk_level == RiskLevel.URGENT, 0),
        (Case.risk_level == RiskLevel.ELEVATED, 1),
        else_=2,
    )
    query = (
        select(Case)
        .where(*conditions)
        .order_by(urgency, Case.created_at, Case.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    items = list((await session.execute(query)).scalars())
    return Page(items=items, total=total, page=page, page_size=page_size)


async def case_events(session: AsyncSession, case: Case) -> list[CaseEvent]:
    """The case's timeline in order."""
    query = select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
    return list((await session.execute(query)).scalars())


async def claim_case(session: AsyncSession, reference: str, mediator: Mediator) -> Case:
    """Give the case to ``mediator`` if nobody has it yet.

    A single conditional UPDATE decides the winner, so of many concurrent claimers
    (processes included) exactly one succeeds; the others get :class:`AlreadyClaimed`.
    """
    if not mediator.active:
        raise MediatorInactive(mediator.display_alias)
    case = await get_case(session, reference)
    now = utcnow()
    result = await session.execute(
        update(Case)
        .where(Case.id == case.id, Case.status == CaseStatus.NEW, Case.mediator_id.is_(None))
        .values(
            status=CaseStatus.CLAIMED,
            mediator_id=mediator.id,
            claimed_at=now,
            escalate_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.refresh(case)
        holder = case.mediator.display_alias if case.mediator is not None else None
        if case.status == CaseStatus.NEW:
            raise AlreadyClaimed(case.reference, holder)
        if holder is None:
            raise InvalidTransition(case.reference, str(case.status), str(CaseStatus.CLAIMED))
        raise AlreadyClaimed(case.reference, holder)
    await session.refresh(case)
    await add_event(session, case, "claim", Actor.of(mediator), {"alias": mediator.display_alias})
    return case


async def change_status(
    session: AsyncSession,
    reference: str,
    new_status: CaseStatus,
    actor: Actor,
    *,
    reason: str | None = None,
) -> Case:
    """Move the case along its life cycle, refusing transitions that make no sense.

    The UPDATE is conditional on the status we read, so two mediators changing the
    same case at once cannot both succeed from the same starting point.
    """
    case = await get_case(session, reference)
    old = CaseStatus(case.status)
    if new_status not in TRANSITIONS[old]:
        raise InvalidTransition(case.reference, str(old), str(new_status))
    now = utcnow()
    values: dict[str, Any] = {"status": new_status, "updated_at": now}
    if new_status == CaseStatus.RESOLVED:
        values["resolved_at"] = now
    elif new_status == CaseStatus.CLOSED or new_status == CaseStatus.WITHDRAWN:
        values["closed_at"] = now
    elif new_status == CaseStatus.NEW:
        values.update(mediator_id=None, claimed_at=None)
    result = await session.execute(
        update(Case)
        .where(Case.id == case.id, Case.status == old)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.refresh(case)
        raise InvalidTransition(case.reference, str(case.status), str(new_status))
    await session.refresh(case)
    data: dict[str, Any] = {"from": str(old), "to": str(new_status)}
    if reason:
        data["reason"] = reason
    await add_event(session, case, "status_change", actor, data)
    return case


async def set_outcome(
    session: AsyncSession, reference: str, outcome: Outcome, actor: Actor
) -> Case:
    """Record how the mediation ended."""
    case = await get_case(session, reference)
    case.outcome = outcome
    case.updated_at = utcnow()
    await session.flush()
    await add_event(session, case, "outcome", actor, {"outcome": str(outcome)})
    return case


async def set_risk(
    session: AsyncSession, reference: str, risk: RiskLevel, actor: Actor, reason: str
) -> Case:
    """Raise (or lower) a case's risk level with the reason on the timeline."""
    case = await get_case(session, reference)
    old = case.risk_level
    case.risk_level = risk
    case.updated_at = utcnow()
    await session.flush()
    await add_event(
        session, case, "escalation", actor, {"from": str(old), "to": str(risk), "reason": reason}
    )
    return case
