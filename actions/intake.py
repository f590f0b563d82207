"""What an intake conversation makes happen in the store.

Each function takes an open session inside the caller's transaction, so a case, its
first events and the saved conversation state are committed together or not at all: a
resident is never told "filed" for a case that is not there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from actions import casework
from actions.metrics import CASES_FILED, count_on_commit
from actions.routing import route_department, route_in
from bot.i18n import LANGUAGES, raw
from storage import cases as case_repo
from storage.cases import Actor
from storage.models import (
    Case,
    CaseEvent,
    CaseStatus,
    ReferralGiven,
    Resident,
    RiskLevel,
    utcnow,
)
from storage.people import set_resident_phone
from storage.phone import PhoneVault, mask_phone
from storage.redact import find_personal_numbers

#: How much of the resident's words the one-line summary on cards and lists shows.
SUMMARY_CHARS = 80


@dataclass(frozen=True, slots=True)
class Filed:
    reference: str
    centre_zh: str | None
    centre_en: str | None


def _words(draft: dict[str, Any]) -> str:
    return "\n".join(str(w) for w in draft.get("words") or []) or "-"


def _summary(draft: dict[str, Any]) -> str:
    text = " ".join(str(w) for w in draft.get("words") or []).replace("\n", " ")
    cut = SUMMARY_CHARS
    for found in find_personal_numbers(text[: cut + 40]):
        start, end = found.span
        if start < cut < end:  # never half a number: the store could not tell it is one
            cut = end
    return text[:cut] + ("…" if len(text) > cut else "")


def _fields(draft: dict[str, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in (draft.get("slots") or {}).items()}


async def _draft_values(
    session: AsyncSession, draft: dict[str, Any], vault: PhoneVault
) -> dict[str, Any]:
    """Every case column the resident's answers decide, routing included.

    Computed before the case is written so filing is one INSERT, not an INSERT and a
    round of UPDATEs (filing is the slowest step of a conversation).
    """
    category = draft.get("category") or "dispute_other"
    network = await casework.Network.load(session)
    centre = route_in(network, draft.get("street"), draft.get("community"))
    risk = RiskLevel(draft.get("risk") or "normal")
    values: dict[str, Any] = {
        "category": category,
        "resident_words": _words(draft),
        "summary": _summary(draft),
        "fields": _fields(draft),
        "contact_consent": bool(draft.get("consent")),
        # Objects, not just ids: callers read case.centre right after.
        "centre": centre,
        "home_centre": centre,
        "department": route_department(network, category, centre),
        "street": centre.street or None,
        "community": draft.get("community"),
        "risk_level": risk,
        "escalate_at": utcnow() + timedelta(minutes=network.claim_minutes(centre, risk)),
    }
    phone = _shared_phone(draft)
    if phone:
        values["phone_encrypted"] = vault.encrypt(phone)
        values["phone_masked"] = mask_phone(phone)
    elif draft.get("consent") is False:  # a number kept at an early filing goes too
        values["phone_encrypted"] = values["phone_masked"] = None
    return values


def _shared_phone(draft: dict[str, Any]) -> str | None:
    """The phone the resident agreed to share: none is kept when they submitted without
    consent ("提交,但不同意提供联系方式") — collect only what a mediator may use. An
    emergency filed before the review (consent not asked yet) keeps the number given."""
    if draft.get("consent") is False:
        return None
    return str(draft["phone"]) if draft.get("phone") else None


async def file_case(
    session: AsyncSession,
    draft: dict[str, Any],
    *,
    resident: Resident,
    channel: str,
    chat_id: str,
    language: str,
    vault: PhoneVault,
    reason: str,
    prefix: str = "BA",
    timezone: str = "Asia/Shanghai",
) -> Filed:
    """Create the case, routed and scheduled, with its first events; returns the reference."""
    actor = Actor("resident", str(resident.id))
    values = await _draft_values(session, draft, vault)
    case = await case_repo.file_case(
        session,
        channel=channel,
        prefix=prefix,
        timezone=timezone,
        actor=actor,
        chat_id=str(chat_id),
        resident_id=resident.id,
        language=language,
        **values,
    )
    if _shared_phone(draft):
        await set_resident_phone(session, resident, str(_shared_phone(draft)), vault)
    events: list[tuple[str, Actor, dict[str, Any]]] = [
        (
            "routed",
            Actor.system(),
            {
                "centre": case.centre.code if case.centre else None,
                "department": case.department.code if case.department else None,
            },
        )
    ]
    events += [("evidence", actor, dict(item)) for item in draft.get("attachments") or []]
    if reason == "human":
        events.append(("human_requested", actor, {}))
    await case_repo.add_events(session, case, events)
    if reason == "emergency" or case.risk_level == RiskLevel.URGENT:
        trigger = draft.get("trigger") or {}
        words = str(trigger.get("text") or (draft.get("words") or [""])[-1])
        kinds = list(trigger.get("kinds") or draft.get("risk_kinds") or [])
        await record_emergency(session, case, words, kinds, actor)
    # Counted once the case is in the store (a retried transaction must not count twice).
    count_on_commit(session, CASES_FILED.labels(channel, case.risk_level.value).inc)
    return Filed(
        case.reference,
        case.centre.name_zh if case.centre else None,
        case.centre.name_en if case.centre else None,
    )


async def update_case(
    session: AsyncSession,
    reference: str,
    draft: dict[str, Any],
    *,
    resident: Resident,
    vault: PhoneVault,
) -> bool:
    """Complete a case filed early (emergency, request for a person) with the full form.

    Returns True when the case moved to another centre (a place given after filing),
    so the caller announces it there. A case somebody already works stays with them.
    """
    case = await case_repo.get_case(session, reference)
    values = await _draft_values(session, draft, vault)
    values.pop("escalate_at")  # the clock set at filing keeps running
    if case.risk_level == RiskLevel.URGENT:
        values.pop("risk_level")  # never lowered by finishing the form
    old_centre = case.centre
    if case.status != CaseStatus.NEW or case.mediator_id is not None:
        for key in ("centre", "home_centre"):
            values.pop(key)
    moved = "centre" in values and values["centre"].id != case.centre_id
    for key, value in values.items():
        setattr(case, key, value)
    if moved:
        case.escalation_level = 0
        await session.flush()
        await case_repo.add_event(
            session,
            case,
            "moved",
            Actor.system(),
            {"from": old_centre.code, "to": case.centre.code, "reason": "location"},
        )
    if _shared_phone(draft):
        await set_resident_phone(session, resident, str(_shared_phone(draft)), vault)
    await case_repo.add_event(
        session,
        case,
        "details_completed",
        Actor("resident", str(resident.id)),
        {"fields": sorted(_fields(draft))},
    )
    return moved


async def record_emergency(
    session: AsyncSession, case: Case, words: str, kinds: list[str], actor: Actor
) -> None:
    """The words that made a case urgent go on its timeline (phones masked), and a
    person must acknowledge the alert within the centre's urgent limit."""
    network = await casework.Network.load(session)
    case.ack_due_at = utcnow() + timedelta(
        minutes=network.claim_minutes(case.centre, RiskLevel.URGENT)
    )
    await session.flush()
    await case_repo.add_event(
        session,
        case,
        "emergency",
        actor,
        # As said: the store keeps numbers masked and the original sealed (own mediator).
        {"words": words[:2000], "kinds": [str(k) for k in kinds]},
    )


async def flag_urgent(
    session: AsyncSession,
    reference: str,
    kinds: list[str],
    resident: Resident,
    words: str | None = None,
    *,
    street: str | None = None,
    community: str | None = None,
) -> bool:
    """An emergency on a filed case (whatever its status): urgent, words recorded; a
    place named in the message moves a case nobody has yet to that street at once.
    Returns True when the case moved (the caller announces it there)."""
    reason = "risk:" + ",".join(kinds) if kinds else "risk"
    actor = Actor("resident", str(resident.id))
    case = await case_repo.set_risk(session, reference, RiskLevel.URGENT, actor, reason)
    moved = False
    if street and case.status == CaseStatus.NEW and case.mediator_id is None:
        network = await casework.Network.load(session)
        centre = route_in(network, street, community)
        if centre.id != case.centre_id:
            source = case.centre.code
            case.centre = case.home_centre = centre
            case.street, case.community = centre.street or None, community
            case.escalation_level = 0
            await session.flush()
            await case_repo.add_event(
                session,
                case,
                "moved",
                Actor.system(),
                {"from": source, "to": centre.code, "reason": "location"},
            )
            moved = True
    if case.status == CaseStatus.NEW:  # still unclaimed: the urgent time limit applies now
        await casework.schedule(session, case)
    await record_emergency(session, case, words or "", kinds, actor)
    return moved


async def add_words(
    session: AsyncSession, reference: str, text: str, resident: Resident
) -> str | None:
    """A later message of an urgent conversation goes on the case's timeline; returns
    the assigned mediator's external id (to relay it), if someone has the case."""
    case = await case_repo.get_case(session, reference)
    await case_repo.add_event(
        session, case, "message_in", Actor("resident", str(resident.id)), {"text": text[:4000]}
    )
    return case.mediator.external_id if case.mediator is not None else None


async def record_referral(
    session: AsyncSession, topic: str, *, channel: str, street: str | None, language: str
) -> None:
    """A referral given (mediation is not the way): counted in the reports, no words kept."""
    session.add(ReferralGiven(topic=topic[:40], channel=channel, street=street, language=language))
    await session.flush()


async def request_human(session: AsyncSession, reference: str, resident: Resident) -> None:
    case = await case_repo.get_case(session, reference)
    await case_repo.add_event(
        session, case, "human_requested", Actor("resident", str(resident.id)), {}
    )


async def attach_evidence(
    session: AsyncSession, reference: str, attachment: dict[str, Any], resident: Resident
) -> None:
    case = await case_repo.get_case(session, reference)
    await case_repo.add_event(
        session, case, "evidence", Actor("resident", str(resident.id)), dict(attachment)
    )


def resident_event_kinds() -> list[str]:
    """Kinds of event a resident may see on /status: those the catalogs name for
    residents (``dialogue.event_names``). Staff-only events (a card announced, a look
    at the case, an alert going up) are never shown, and never as a raw key."""
    kinds: set[str] = set()
    for language in LANGUAGES:
        kinds |= set(raw("dialogue.event_names", language) or {})
    return sorted(kinds)


async def lookup_status(session: AsyncSession, resident: Resident) -> list[dict[str, Any]]:
    """The resident's cases, newest first, each with its latest event shown to residents."""
    query = select(Case).where(Case.resident_id == resident.id).order_by(Case.id.desc()).limit(10)
    visible = resident_event_kinds()
    found = []
    for case in (await session.execute(query)).scalars():
        last = (
            await session.execute(
                select(CaseEvent)
                .where(CaseEvent.case_id == case.id, CaseEvent.kind.in_(visible))
                .order_by(CaseEvent.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        found.append(
            {
                "reference": case.reference,
                "category": case.category,
                "status": case.status.value,
                "last_event": last.kind if last else None,
                "last_at": last.created_at.isoformat() if last else None,
            }
        )
    return found
