"""What mediators do with cases: see queues, claim, talk, note, move, close, escalate.

Channel-agnostic: functions take an open session and a :class:`Mediator`, check what
that mediator's role allows, change the store and record who did it on the case's
timeline. The Telegram desk (``bot/channels/telegram_desk.py``) only renders and routes.

Who may do what:
- a ``mediator`` works the cases of their own centre and the cases assigned to them;
- a ``supervisor`` also sees the centres below theirs (street → its communities);
- an ``admin`` sees every centre.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import lazyload

from storage import cases as case_repo
from storage.cases import OPEN_STATUSES, Actor
from storage.errors import CentreNotFound, InvalidTransition, StoreError
from storage.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Centre,
    CentreDepartment,
    Department,
    Mediator,
    MediatorRole,
    Outcome,
    ReferralGiven,
    RiskLevel,
    utcnow,
)
from storage.people import find_mediator

#: Used when neither a centre nor any of its parents sets a time limit.
DEFAULT_CLAIM_MINUTES = {RiskLevel.URGENT: 15, RiskLevel.ELEVATED: 120, RiskLevel.NORMAL: 480}
ACTIVE_STATUSES = (CaseStatus.CLAIMED, CaseStatus.IN_MEDIATION)


class NotAllowed(StoreError):
    """The mediator's role or centre does not allow this on this case."""

    def __init__(self, reference: str | None = None) -> None:
        super().__init__(f"not allowed: {reference or '-'}")
        self.reference = reference


@dataclass(frozen=True, slots=True)
class Network:
    """The centre tree and its partner departments, loaded once per operation (a
    district has tens of centres and departments: three small queries)."""

    by_id: dict[int, Centre]
    departments: dict[int, Department] = field(default_factory=dict)
    #: centre id → ids of the partner departments working with it.
    department_ids: dict[int, set[int]] = field(default_factory=dict)

    @classmethod
    async def load(cls, session: AsyncSession) -> Network:
        query = select(Centre).options(lazyload(Centre.departments))
        centres = {c.id: c for c in (await session.execute(query)).scalars()}
        departments = {d.id: d for d in (await session.execute(select(Department))).scalars()}
        links: dict[int, set[int]] = {}
        for row in (await session.execute(select(CentreDepartment))).scalars():
            links.setdefault(row.centre_id, set()).add(row.department_id)
        return cls(centres, departments, links)

    def chain(self, centre: Centre | None) -> list[Centre]:
        """The centre and every centre above it, nearest first."""
        found: list[Centre] = []
        while centre is not None and centre not in found:
            found.append(centre)
            centre = self.parent(centre)
        return found

    def by_code(self, code: str) -> Centre | None:
        return next((c for c in self.by_id.values() if c.code == code), None)

    def parent(self, centre: Centre | None) -> Centre | None:
        if centre is None or centre.parent_id is None:
            return None
        return self.by_id.get(centre.parent_id)

    def below(self, centre_id: int) -> set[int]:
        """The centre and every centre under it."""
        found = {centre_id}
        changed = True
        while changed:
            changed = False
            for centre in self.by_id.values():
                if centre.parent_id in found and centre.id not in found:
                    found.add(centre.id)
                    changed = True
        return found

    def claim_minutes(self, centre: Centre | None, risk: RiskLevel) -> int:
        """The centre's limit for this risk, inherited from its parents when unset."""
        node = centre
        while node is not None:
            value = (
                node.claim_minutes_urgent if risk == RiskLevel.URGENT else node.claim_minutes_normal
            )
            if value:
                return int(value)
            node = self.parent(node)
        return DEFAULT_CLAIM_MINUTES[risk]


# ------------------------------------------------------------------------ who may do what


async def active_mediator(session: AsyncSession, channel: str, external_id: str) -> Mediator | None:
    """The registered mediator behind a chat identity, or None (inactive ones too)."""
    return await find_mediator(session, channel, str(external_id))


def visible_centres(mediator: Mediator, network: Network) -> set[int]:
    """Centres whose cases this person sees. A partner department sees no centre's
    queue: only the cases it was summoned to (the workspace checks those)."""
    if not mediator.active or mediator.role == MediatorRole.DEPARTMENT:
        return set()
    if mediator.role == MediatorRole.ADMIN:
        return set(network.by_id)
    if mediator.role == MediatorRole.SUPERVISOR:
        return network.below(mediator.centre_id)
    return {mediator.centre_id}


def case_centres(case: Case) -> set[int]:
    """Where a case belongs: where it is now and where it was routed (its home). A case
    that moved up on escalation stays visible and claimable at home, so the street's
    own mediators can still take the urgent case of their street."""
    return {c for c in (case.centre_id, case.home_centre_id) if c is not None}


def may_see(mediator: Mediator, case: Case, network: Network) -> bool:
    return mediator.active and (
        case.mediator_id == mediator.id
        or bool(case_centres(case) & visible_centres(mediator, network))
    )


def may_claim(mediator: Mediator, case: Case, network: Network) -> bool:
    """Whoever can see an unassigned case can take it (a supervisor above takes over)."""
    return mediator.active and bool(case_centres(case) & visible_centres(mediator, network))


def may_work(mediator: Mediator, case: Case, network: Network) -> bool:
    """Change a case: its own mediator, or a supervisor/admin over its centre."""
    if not mediator.active:
        return False
    if case.mediator_id == mediator.id:
        return True
    return mediator.role != MediatorRole.MEDIATOR and bool(
        case_centres(case) & visible_centres(mediator, network)
    )


async def case_for(
    session: AsyncSession, reference: str, mediator: Mediator, *, work: bool
) -> tuple[Case, Network]:
    case = await case_repo.get_case(session, reference)
    network = await Network.load(session)
    allowed = may_work(mediator, case, network) if work else may_see(mediator, case, network)
    if not allowed:
        raise NotAllowed(case.reference)
    return case, network


# ------------------------------------------------------------------------------- lists


async def queue(session: AsyncSession, mediator: Mediator, limit: int = 20) -> list[Case]:
    """Open cases of the centres the mediator sees, urgent first, oldest first."""
    network = await Network.load(session)
    centres = visible_centres(mediator, network)
    if not centres:
        return []
    page = await case_repo.list_cases(
        session, centre_ids=sorted(centres), statuses=[CaseStatus.NEW], page_size=limit
    )
    return page.items


async def mine(session: AsyncSession, mediator: Mediator, limit: int = 20) -> list[Case]:
    page = await case_repo.list_cases(
        session, mediator_id=mediator.id, statuses=list(OPEN_STATUSES), page_size=limit
    )
    return page.items


async def view(
    session: AsyncSession, reference: str, mediator: Mediator
) -> tuple[Case, list[CaseEvent]]:
    """A case and its timeline; the look itself goes on the timeline (audit)."""
    case, _ = await case_for(session, reference, mediator, work=False)
    events = await case_repo.case_events(session, case)
    await case_repo.add_event(session, case, "view", Actor.of(mediator))
    return case, events


# ------------------------------------------------------------------------------ changes


async def claim(session: AsyncSession, reference: str, mediator: Mediator) -> Case:
    """Exactly one of many concurrent claimers wins (a conditional UPDATE decides)."""
    case, network = await case_for(session, reference, mediator, work=False)
    if not may_claim(mediator, case, network):
        raise NotAllowed(case.reference)
    return await case_repo.claim_case(session, reference, mediator)


async def release(session: AsyncSession, reference: str, mediator: Mediator) -> Case:
    """Back to the centre's queue, with a fresh time limit."""
    case, network = await case_for(session, reference, mediator, work=True)
    case = await case_repo.change_status(
        session, reference, CaseStatus.NEW, Actor.of(mediator), reason="released"
    )
    case.escalate_at = utcnow() + timedelta(
        minutes=network.claim_minutes(case.centre, case.risk_level)
    )
    await session.flush()
    return case


async def transfer(
    session: AsyncSession, reference: str, mediator: Mediator, centre_code: str, reason: str
) -> tuple[Case, Centre]:
    """Move the case to another centre's queue (unassigned), with the reason recorded."""
    case, network = await case_for(session, reference, mediator, work=True)
    target = network.by_code(centre_code)
    if target is None or not target.active:
        raise CentreNotFound(centre_code)
    if case.status not in OPEN_STATUSES:
        raise InvalidTransition(case.reference, str(case.status), "transfer")
    if case.status != CaseStatus.NEW:
        case = await case_repo.change_status(
            session, reference, CaseStatus.NEW, Actor.of(mediator), reason="transferred"
        )
    source = case.centre.code if case.centre else None
    case.centre = target
    case.home_centre = target
    case.escalation_level = 0
    case.escalate_at = utcnow() + timedelta(minutes=network.claim_minutes(target, case.risk_level))
    await session.flush()
    await case_repo.add_event(
        session,
        case,
        "transfer",
        Actor.of(mediator),
        {"from": source, "to": target.code, "reason": reason},
    )
    return case, target


async def note(session: AsyncSession, reference: str, mediator: Mediator, text: str) -> Case:
    case, _ = await case_for(session, reference, mediator, work=True)
    await case_repo.add_event(session, case, "note", Actor.of(mediator), {"text": text[:4000]})
    return case


async def set_status(
    session: AsyncSession, reference: str, mediator: Mediator, status: CaseStatus
) -> Case:
    await case_for(session, reference, mediator, work=True)
    return await case_repo.change_status(session, reference, status, Actor.of(mediator))


async def set_outcome(
    session: AsyncSession, reference: str, mediator: Mediator, outcome: Outcome
) -> Case:
    await case_for(session, reference, mediator, work=True)
    return await case_repo.set_outcome(session, reference, outcome, Actor.of(mediator))


async def record_message(
    session: AsyncSession, case: Case, kind: str, actor: Actor, data: dict[str, Any]
) -> None:
    """A relayed message is part of the case's transcript (``message_in``/``message_out``)."""
    await case_repo.add_event(session, case, kind, actor, data)


async def active_case_for_chat(session: AsyncSession, channel: str, chat_id: str) -> Case | None:
    """The resident's case a mediator is working now (newest first), if any."""
    query = (
        select(Case)
        .where(
            Case.channel == channel,
            Case.chat_id == str(chat_id),
            Case.status.in_(ACTIVE_STATUSES),
            Case.mediator_id.is_not(None),
        )
        .order_by(Case.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def rate(
    session: AsyncSession, reference: str, rating: int, resident_key: tuple[str, str]
) -> tuple[Case, bool]:
    """The resident's 1–5 rating of a resolved case, from their own chat only.

    Returns the case and whether a supervisor must call back (回访): a rating of 1
    or 2 asks for it, recorded on the timeline. A case is rated once: a second press
    (an old keyboard, another device) is refused, so the report keeps the first.
    """
    case = await _rated_case(session, reference, resident_key)
    if not 1 <= rating <= 5 or case.rating is not None:
        raise NotAllowed(case.reference)
    case.rating = rating
    await session.flush()
    actor = Actor("resident", str(case.resident_id))
    await case_repo.add_event(session, case, "rating", actor, {"rating": rating})
    follow_up = rating <= 2
    if follow_up:
        await case_repo.add_event(
            session, case, "follow_up_requested", Actor.system(), {"rating": rating}
        )
    return case, follow_up


async def comment(
    session: AsyncSession, reference: str, text: str, resident_key: tuple[str, str]
) -> Case:
    case = await _rated_case(session, reference, resident_key)
    case.rating_comment = text[:2000]
    await session.flush()
    await case_repo.add_event(
        session, case, "rating_comment", Actor("resident", str(case.resident_id)), {}
    )
    return case


async def follow_up_requested(session: AsyncSession, case: Case) -> bool:
    """Whether a low rating asked the supervisors to call back (回访) on this case."""
    query = select(CaseEvent.id).where(
        CaseEvent.case_id == case.id, CaseEvent.kind == "follow_up_requested"
    )
    return (await session.execute(query.limit(1))).first() is not None


async def _rated_case(session: AsyncSession, reference: str, resident_key: tuple[str, str]) -> Case:
    case = await case_repo.get_case(session, reference)
    if (case.channel, case.chat_id) != resident_key or case.status not in (
        CaseStatus.RESOLVED,
        CaseStatus.CLOSED,
    ):
        raise NotAllowed(case.reference)
    return case


async def supervisors_of(session: AsyncSession, case: Case) -> list[Mediator]:
    """Active supervisors of the case's centre or of any centre above it."""
    network = await Network.load(session)
    chain = [centre.id for centre in network.chain(case.centre)]
    query = select(Mediator).where(
        Mediator.active, Mediator.role == MediatorRole.SUPERVISOR, Mediator.centre_id.in_(chain)
    )
    return list((await session.execute(query)).scalars())


# -------------------------------------------------------------------------- escalation


async def schedule(session: AsyncSession, case: Case, now: datetime | None = None) -> None:
    """Set when an unclaimed case moves up, from its centre's limit for its risk."""
    network = await Network.load(session)
    now = now or utcnow()
    case.escalate_at = now + timedelta(minutes=network.claim_minutes(case.centre, case.risk_level))
    await session.flush()


async def due_for_escalation(session: AsyncSession, now: datetime) -> list[Case]:
    query = (
        select(Case)
        .where(
            Case.status == CaseStatus.NEW, Case.escalate_at.is_not(None), Case.escalate_at <= now
        )
        .order_by(Case.escalate_at)
        .limit(100)
    )
    return list((await session.execute(query)).scalars())


async def escalate(session: AsyncSession, case: Case, now: datetime) -> Centre | None:
    """Move an unclaimed case up one level (or, at the top, announce it again).

    Returns the centre that must now hear about it. The conditional check on status
    and ``escalate_at`` keeps two bot processes from escalating the same case twice.
    """
    network = await Network.load(session)
    await session.refresh(case)
    if case.status != CaseStatus.NEW or case.escalate_at is None or case.escalate_at > now:
        return None
    source = case.centre
    target = network.parent(source) or source
    # Conditional on the deadline as read: with two processes (PostgreSQL, read
    # committed) the second UPDATE waits for the first, then matches no row.
    result = await session.execute(
        update(Case)
        .where(
            Case.id == case.id,
            Case.status == CaseStatus.NEW,
            Case.escalate_at == case.escalate_at,
        )
        .values(
            centre_id=target.id,
            escalation_level=Case.escalation_level + 1,
            escalate_at=now + timedelta(minutes=network.claim_minutes(target, case.risk_level)),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await session.refresh(case)
    await case_repo.add_event(
        session,
        case,
        "escalation",
        Actor.system(),
        {
            "reason": "unclaimed",
            "from": source.code if source else None,
            "to": target.code if target else None,
            "level": case.escalation_level,
        },
    )
    return target


# ------------------------------------------------------------------------------ reports


@dataclass(frozen=True, slots=True)
class ReportRow:
    centre: str
    category: str
    filed: int
    claimed: int
    resolved: int
    closure_rate: float
    median_claim_minutes: float | None
    median_resolution_hours: float | None
    mean_rating: float | None


async def report(session: AsyncSession) -> list[ReportRow]:
    """Per centre and category: the figures a district office reports upwards."""
    cases = list((await session.execute(select(Case))).scalars())
    groups: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        centre = case.centre.code if case.centre else "-"
        groups.setdefault((centre, case.category), []).append(case)
    rows = []
    for (centre, category), members in sorted(groups.items()):
        rows.append(_row(centre, category, members))
    return rows


async def referrals_given(
    session: AsyncSession,
    since: datetime | None = None,
    until: datetime | None = None,
    streets: Sequence[str] | None = None,
) -> dict[str, int]:
    """Referrals by topic: residents told where to go when mediation is not the way (a
    first-class outcome, counted whether or not they booked a legal consultation).
    ``streets`` limits them to those streets (a street centre's report)."""
    query = select(ReferralGiven.topic, func.count()).group_by(ReferralGiven.topic)
    if streets is not None:
        query = query.where(ReferralGiven.street.in_(list(streets)))
    if since is not None:
        query = query.where(ReferralGiven.created_at >= since)
    if until is not None:
        query = query.where(ReferralGiven.created_at < until)
    return {str(topic): int(count) for topic, count in (await session.execute(query)).all()}


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _row(centre: str, category: str, members: list[Case]) -> ReportRow:
    claimed = [c for c in members if c.claimed_at is not None]
    resolved = [c for c in members if c.resolved_at is not None]
    done = [c for c in members if c.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED)]
    ratings = [c.rating for c in members if c.rating is not None]
    return ReportRow(
        centre=centre,
        category=category,
        filed=len(members),
        claimed=len(claimed),
        resolved=len(resolved),
        closure_rate=round(len(done) / len(members), 3) if members else 0.0,
        median_claim_minutes=_median(
            [(c.claimed_at - c.created_at).total_seconds() / 60 for c in claimed if c.claimed_at]
        ),
        median_resolution_hours=_median(
            [
                (c.resolved_at - c.created_at).total_seconds() / 3600
                for c in resolved
                if c.resolved_at
            ]
        ),
        mean_rating=round(statistics.mean(ratings), 2) if ratings else None,
    )
