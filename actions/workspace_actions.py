"""Casework the web workspace needs beyond :mod:`actions.casework`.

Channel-agnostic like casework: every function takes an open session and the acting
:class:`Mediator`, checks what the role allows, changes the store and records it on the
case's timeline. The workspace's handlers only parse a request, call one of these and
render; the same functions can serve any other desk later.

- filtered, searchable listings (queue, "mine", a department's summoned cases, exports);
- who may see a case, including ``department`` users (only cases they were summoned to);
- revealing the phone number to the case's own mediator (recorded), recategorising,
  replies to residents, summoning a partner department and its report-back;
- staff intake: a mediator files a case for a walk-in resident through the same routing
  and risk rules as the chat;
- the report figures of ``tiaojie report`` over a period and a centre subtree.
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.ext.asyncio import AsyncSession

from actions import casework, intake
from actions.casework import Network, NotAllowed
from storage import cases as case_repo
from storage import summons as summons_repo
from storage.cases import OPEN_STATUSES, Actor, Page
from storage.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Mediator,
    MediatorRole,
    Resident,
    RiskLevel,
    utcnow,
)
from storage.people import get_or_create_resident
from storage.phone import PhoneVault, mask_phone, normalise_phone
from storage.summons import Summons, SummonsState

#: Digit runs that may be a phone, ID or bank number: masked wherever words are listed.
_NUMBER = re.compile(r"\+?\d[\d\- ]{6,}\d")
#: Search words with this many digits only match references (no probing for numbers).
_SEARCH_DIGITS = 7


def mask_numbers(text: str) -> str:
    """The resident's words with phone-like numbers masked, for lists, cards and exports."""
    return _NUMBER.sub(lambda m: mask_phone(m.group()), text or "")


# ------------------------------------------------------------------------------ access


async def may_see(session: AsyncSession, mediator: Mediator, case: Case, network: Network) -> bool:
    """Casework's rule, except that a department sees only cases it was summoned to."""
    if mediator.role == MediatorRole.DEPARTMENT:
        return (
            mediator.active
            and await summons_repo.summons_for(session, case.id, mediator.id) is not None
        )
    return casework.may_see(mediator, case, network)


def may_work(mediator: Mediator, case: Case, network: Network) -> bool:
    return mediator.role != MediatorRole.DEPARTMENT and casework.may_work(mediator, case, network)


async def visible_case(
    session: AsyncSession, reference: str, mediator: Mediator, *, work: bool = False
) -> Case:
    """The case if the mediator may see it (or work it); :class:`NotAllowed` otherwise."""
    case = await case_repo.get_case(session, reference)
    network = await Network.load(session)
    allowed = (
        may_work(mediator, case, network)
        if work
        else await may_see(session, mediator, case, network)
    )
    if not allowed:
        raise NotAllowed(case.reference)
    return case


async def open_case(
    session: AsyncSession, reference: str, mediator: Mediator
) -> tuple[Case, list[CaseEvent], list[Summons]]:
    """A case with its timeline and summons; the view itself goes on the timeline."""
    case = await visible_case(session, reference, mediator)
    await case_repo.add_event(session, case, "view", Actor.of(mediator), {"via": "web"})
    events = await case_repo.case_events(session, case)
    return case, events, await summons_repo.case_summons(session, case.id)


# ---------------------------------------------------------------------------- listings


@dataclass(frozen=True, slots=True)
class Filters:
    """What a queue, export or report is narrowed to (all optional)."""

    statuses: tuple[CaseStatus, ...] = ()
    category: str | None = None
    risk: RiskLevel | None = None
    street: str | None = None
    community: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None
    centre_code: str | None = None
    mine: bool = False
    #: With ``mine``: every mediator row of the same person (web and linked Telegram).
    mine_ids: tuple[int, ...] = ()


async def _scope(session: AsyncSession, mediator: Mediator, filters: Filters) -> list[Any]:
    """Conditions limiting a listing to what the mediator may see."""
    if not mediator.active:
        return [Case.id.is_(None)]
    if mediator.role == MediatorRole.DEPARTMENT:
        ids = await summons_repo.summoned_case_ids(session, mediator.id)
        return [Case.id.in_(ids or [-1])]
    network = await Network.load(session)
    centres = casework.visible_centres(mediator, network)
    if filters.centre_code:
        chosen = network.by_code(filters.centre_code)
        centres = centres & network.below(chosen.id) if chosen else set()
    if filters.mine:
        return [Case.mediator_id.in_(sorted({mediator.id, *filters.mine_ids}))]
    ids = sorted(centres) or [-1]
    # Where a case is now or where it was routed (an escalated case stays visible at home).
    return [
        or_(
            Case.centre_id.in_(ids), Case.home_centre_id.in_(ids), Case.mediator_id == mediator.id
        )
    ]


def _conditions(filters: Filters) -> list[Any]:
    conditions: list[Any] = []
    if filters.statuses:
        conditions.append(Case.status.in_(list(filters.statuses)))
    if filters.category:
        conditions.append(Case.category == filters.category)
    if filters.risk is not None:
        conditions.append(Case.risk_level == filters.risk)
    if filters.street:
        conditions.append(Case.street == filters.street)
    if filters.community:
        conditions.append(Case.community == filters.community)
    if filters.since is not None:
        conditions.append(Case.created_at >= filters.since)
    if filters.until is not None:
        conditions.append(Case.created_at < filters.until)
    words = (filters.search or "").strip()
    if words:
        pattern = f"%{words.replace('%', '').replace('_', '')[:100]}%"
        if sum(ch.isdigit() for ch in words) >= _SEARCH_DIGITS:
            conditions.append(Case.reference.ilike(pattern))
        else:
            conditions.append(
                or_(
                    Case.reference.ilike(pattern),
                    Case.resident_words.ilike(pattern),
                    Case.summary.ilike(pattern),
                )
            )
    return conditions


async def list_cases(
    session: AsyncSession,
    mediator: Mediator,
    filters: Filters,
    *,
    page: int = 1,
    page_size: int = 25,
) -> Page:
    """Cases the mediator may see, filtered, urgent first then oldest first."""
    page, page_size = max(1, page), min(max(1, page_size), 1000)
    where = and_(*(await _scope(session, mediator, filters)), *_conditions(filters))
    total = (await session.execute(select(func.count()).select_from(Case).where(where))).scalar()
    urgency = sql_case(
        (Case.risk_level == RiskLevel.URGENT, 0),
        (Case.risk_level == RiskLevel.ELEVATED, 1),
        else_=2,
    )
    query = (
        select(Case)
        .where(where)
        .order_by(urgency, Case.created_at, Case.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    items = list((await session.execute(query)).scalars())
    return Page(items=items, total=int(total or 0), page=page, page_size=page_size)


async def changes_since(
    session: AsyncSession, mediator: Mediator, after_event_id: int, reference: str | None = None
) -> tuple[int, list[tuple[str, str, str]]]:
    """Timeline events after an id on cases the mediator sees: (last id, [(ref, kind, risk)]).

    The live views poll this; it reads the store, so it works with several processes.
    ``view`` events are left out (looking at a case changes nothing on screen).
    """
    conditions = [CaseEvent.id > after_event_id, CaseEvent.kind != "view"]
    if reference is not None:
        conditions.append(Case.reference == reference)
    else:
        conditions.extend(await _scope(session, mediator, Filters()))
    query = (
        select(CaseEvent.id, CaseEvent.kind, Case.reference, Case.risk_level)
        .join(Case, Case.id == CaseEvent.case_id)
        .where(*conditions)
        .order_by(CaseEvent.id)
        .limit(200)
    )
    rows = (await session.execute(query)).all()
    last = max((int(r.id) for r in rows), default=after_event_id)
    return last, [(r.reference, r.kind, str(r.risk_level)) for r in rows]


async def last_event_id(session: AsyncSession) -> int:
    return int((await session.execute(select(func.max(CaseEvent.id)))).scalar() or 0)


# ----------------------------------------------------------------------------- changes


async def reveal_phone(
    session: AsyncSession, reference: str, mediator: Mediator, vault: PhoneVault
) -> str | None:
    """The full number, for the case's own mediator only; the reveal is recorded
    (:func:`actions.reveal.reveal`, which also opens the words as said)."""
    from actions.reveal import reveal

    case = await case_repo.get_case(session, reference)
    found = await reveal(session, case, mediator, vault, via="web")
    return vault.decrypt(case.phone_encrypted) if found.phone else None


async def department_users(session: AsyncSession) -> list[Mediator]:
    """Active department accounts (whom a mediator can summon)."""
    query = select(Mediator).where(
        Mediator.role == MediatorRole.DEPARTMENT, Mediator.active.is_(True)
    )
    return list((await session.execute(query.order_by(Mediator.display_alias))).scalars())


async def summon(
    session: AsyncSession, reference: str, mediator: Mediator, department_id: int, request: str
) -> Summons:
    """Summon a partner department into the case (社区发令, 部门报到)."""
    case = await visible_case(session, reference, mediator, work=True)
    department = await session.get(Mediator, department_id)
    if department is None or department.role != MediatorRole.DEPARTMENT or not department.active:
        raise ValueError(department_id)
    found = await summons_repo.summons_for(session, case.id, department.id)
    if found is not None:
        return found
    item = Summons(
        case_id=case.id,
        department_mediator_id=department.id,
        summoned_by=mediator.id,
        state=SummonsState.PENDING,
        request=request[:2000],
    )
    session.add(item)
    await session.flush()
    await case_repo.add_event(
        session,
        case,
        "summoned",
        Actor.of(mediator),
        {"department": department.display_alias, "request": request[:2000]},
    )
    return item


async def report_back(
    session: AsyncSession, reference: str, mediator: Mediator, state: SummonsState, reason: str
) -> Summons:
    """The summoned department says it handled or declined its part, with a reason."""
    case = await case_repo.get_case(session, reference)
    item = await summons_repo.summons_for(session, case.id, mediator.id)
    if item is None or not mediator.active:
        raise NotAllowed(case.reference)
    if state == SummonsState.PENDING or not reason.strip():
        raise ValueError(state)
    item.state = state
    item.answer = reason[:2000]
    item.answered_at = utcnow()
    await session.flush()
    await case_repo.add_event(
        session,
        case,
        "department_report",
        Actor.of(mediator),
        {"department": mediator.display_alias, "state": str(state), "reason": reason[:2000]},
    )
    return item


# ------------------------------------------------------------------------ staff intake


@dataclass(frozen=True, slots=True)
class StaffIntake:
    """What a mediator types for a walk-in resident (or a grid worker's visit)."""

    category: str
    words: str
    street: str | None
    community: str | None
    phone: str | None
    consent: bool
    slots: dict[str, Any] = field(default_factory=dict)
    risk_kinds: tuple[str, ...] = ()
    risk: str = "normal"
    language: str = "zh"


async def file_for_resident(
    session: AsyncSession,
    mediator: Mediator,
    form: StaffIntake,
    *,
    vault: PhoneVault,
    prefix: str,
    timezone: str,
) -> str:
    """File a case on a resident's behalf, routed like a chat case; returns the reference.

    The resident is a ``walk_in`` resident keyed by phone (or a fresh one without), the
    consent they gave is recorded, and the staff member who filed it is on the timeline.
    """
    if mediator.role == MediatorRole.DEPARTMENT or not mediator.active:
        raise NotAllowed(None)
    if not form.consent:
        raise ValueError("consent")
    phone = normalise_phone(form.phone) if form.phone else None
    if form.phone and phone is None:
        raise ValueError("phone")
    key = f"phone:{_phone_key(phone)}" if phone else f"desk:{utcnow().timestamp():.6f}"
    resident = await _walk_in_resident(session, key, form.language)
    draft: dict[str, Any] = {
        "category": form.category,
        "words": [form.words],
        "slots": form.slots,
        "street": form.street,
        "community": form.community,
        "phone": phone,
        "consent": form.consent,
        "risk": form.risk,
        "risk_kinds": list(form.risk_kinds),
        "attachments": [],
    }
    filed = await intake.file_case(
        session,
        draft,
        resident=resident,
        channel="walk_in",
        chat_id=key,
        language=form.language,
        vault=vault,
        reason="emergency" if form.risk == "urgent" else "filed",
        prefix=prefix,
        timezone=timezone,
    )
    case = await case_repo.get_case(session, filed.reference)
    await case_repo.add_event(
        session,
        case,
        "staff_intake",
        Actor.of(mediator),
        {"by": mediator.display_alias, "consent": True, "phone_only": bool(phone)},
    )
    return filed.reference


def _phone_key(phone: str) -> str:
    """A stable key for a walk-in resident known by phone only (the number is not kept
    in clear here; it is stored encrypted on the case and the resident)."""
    return hashlib.sha256(f"walk_in:{phone}".encode()).hexdigest()[:40]


async def _walk_in_resident(session: AsyncSession, key: str, language: str) -> Resident:
    return await get_or_create_resident(session, "walk_in", key, language)


# ----------------------------------------------------------------------------- reports


@dataclass(frozen=True, slots=True)
class Figures:
    """The report page's numbers for one period and centre subtree."""

    total: int
    per_week: list[tuple[str, int]]
    by_kind: list[tuple[str, int]]
    heat: dict[str, dict[str, int]]
    streets: list[str]
    kinds: list[str]
    closure_rate: float | None
    median_claim_minutes: float | None
    median_resolve_hours: float | None
    ratings: dict[int, int]
    mean_rating: float | None
    referrals: int
    escalations: int
    summons: dict[str, int]


async def _referrals(session: AsyncSession, mediator: Mediator, filters: Filters) -> int:
    """Referrals given in the period, in the streets this person's report covers (the
    whole district for whoever sees the district centre)."""
    network = await Network.load(session)
    centres = [network.by_id[i] for i in casework.visible_centres(mediator, network)]
    district = any(c.level.value == "district" for c in centres)
    # Referrals keep the street's code (the dialogue's street choice = the street centre's
    # code); a community station reports its street's.
    codes = {
        c.code if c.level.value == "street" else (network.parent(c) or c).code
        for c in centres
    }
    streets = None if district else sorted(codes)
    given = await casework.referrals_given(session, filters.since, filters.until, streets)
    return sum(given.values())


async def figures(session: AsyncSession, mediator: Mediator, filters: Filters) -> Figures:
    page = await list_cases(session, mediator, filters, page_size=100_000)
    members = page.items
    ids = [c.id for c in members] or [-1]
    weeks: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    heat: dict[str, dict[str, int]] = {}
    for case in members:
        year, week, _ = case.created_at.isocalendar()
        weeks[f"{year}-W{week:02d}"] += 1
        kinds[case.category] += 1
        row = heat.setdefault(case.street or "-", {})
        row[case.category] = row.get(case.category, 0) + 1
    done = [c for c in members if c.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED)]
    claim_minutes = [
        (c.claimed_at - c.created_at).total_seconds() / 60 for c in members if c.claimed_at
    ]
    resolve_hours = [
        (c.resolved_at - c.created_at).total_seconds() / 3600 for c in members if c.resolved_at
    ]
    ratings = Counter(c.rating for c in members if c.rating is not None)
    events = Counter(
        str(kind)
        for kind in (
            await session.execute(
                select(CaseEvent.kind).where(
                    CaseEvent.case_id.in_(ids),
                    CaseEvent.kind.in_(["escalation", "transfer"]),
                )
            )
        ).scalars()
    )
    summons_states = Counter(
        str(state)
        for state in (
            await session.execute(select(Summons.state).where(Summons.case_id.in_(ids)))
        ).scalars()
    )
    all_ratings = [c.rating for c in members if c.rating is not None]
    return Figures(
        total=len(members),
        per_week=sorted(weeks.items()),
        by_kind=kinds.most_common(),
        heat=heat,
        streets=sorted(heat),
        kinds=[k for k, _ in kinds.most_common()],
        closure_rate=round(len(done) / len(members), 3) if members else None,
        median_claim_minutes=_median(claim_minutes),
        median_resolve_hours=_median(resolve_hours),
        ratings={n: ratings.get(n, 0) for n in range(1, 6)},
        mean_rating=round(statistics.mean(all_ratings), 2) if all_ratings else None,
        referrals=await _referrals(session, mediator, filters),
        escalations=events.get("escalation", 0),
        summons=dict(summons_states),
    )


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def open_statuses() -> tuple[CaseStatus, ...]:
    return tuple(OPEN_STATUSES)
