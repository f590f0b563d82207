"""What an intake conversation makes happen in the store.

Each function takes an open session inside the caller's transaction, so a case, its
first events and the saved conversation state are committed together or not at all: a
resident is never told "filed" for a case that is not there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from actions import casework
from actions.routing import route_centre, route_department
from storage import cases as case_repo
from storage.cases import Actor
from storage.models import Case, CaseEvent, Resident, RiskLevel
from storage.people import set_resident_phone
from storage.phone import PhoneVault, mask_phone

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
    return text[:SUMMARY_CHARS] + ("…" if len(text) > SUMMARY_CHARS else "")


def _fields(draft: dict[str, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in (draft.get("slots") or {}).items()}


async def _apply_draft(
    session: AsyncSession, case: Case, draft: dict[str, Any], vault: PhoneVault
) -> None:
    """Copy what the resident answered onto the case and route it."""
    case.category = draft.get("category") or "dispute_other"
    case.resident_words = _words(draft)
    case.summary = _summary(draft)
    case.fields = _fields(draft)
    case.contact_consent = bool(draft.get("consent"))
    street_code = draft.get("street")
    centre = await route_centre(session, street_code, draft.get("community"))
    department = await route_department(session, case.category)
    # Assign the objects, not just ids: the caller reads case.centre right after.
    case.centre = centre
    case.department = department
    case.street = centre.street if centre and centre.street else None
    case.community = draft.get("community")
    phone = draft.get("phone")
    if phone:
        case.phone_encrypted = vault.encrypt(phone)
        case.phone_masked = mask_phone(phone)
    risk = RiskLevel(draft.get("risk") or "normal")
    if case.risk_level != RiskLevel.URGENT and risk != RiskLevel.NORMAL:
        case.risk_level = risk
    await session.flush()


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
    """Create the case, route it, record its first events; returns the reference."""
    actor = Actor("resident", str(resident.id))
    case = await case_repo.file_case(
        session,
        category=draft.get("category") or "dispute_other",
        resident_words=_words(draft),
        channel=channel,
        prefix=prefix,
        timezone=timezone,
        actor=actor,
        chat_id=str(chat_id),
        resident_id=resident.id,
        language=language,
        risk_level=RiskLevel(draft.get("risk") or "normal"),
    )
    await _apply_draft(session, case, draft, vault)
    if draft.get("phone"):
        await set_resident_phone(session, resident, draft["phone"], vault)
    await case_repo.add_event(
        session,
        case,
        "routed",
        Actor.system(),
        {
            "centre": case.centre.code if case.centre else None,
            "department": case.department.code if case.department else None,
        },
    )
    await casework.schedule(session, case)
    for item in draft.get("attachments") or []:
        await case_repo.add_event(session, case, "evidence", actor, dict(item))
    if reason == "emergency":
        await case_repo.add_event(
            session,
            case,
            "escalation",
            Actor.system(),
            {"reason": "risk", "kinds": list(draft.get("risk_kinds") or [])},
        )
    elif reason == "human":
        await case_repo.add_event(session, case, "human_requested", actor, {})
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
) -> None:
    """Complete a case filed early (emergency, request for a person) with the full form."""
    case = await case_repo.get_case(session, reference)
    await _apply_draft(session, case, draft, vault)
    if draft.get("phone"):
        await set_resident_phone(session, resident, draft["phone"], vault)
    await case_repo.add_event(
        session,
        case,
        "details_completed",
        Actor("resident", str(resident.id)),
        {"fields": sorted(_fields(draft))},
    )


async def flag_urgent(
    session: AsyncSession, reference: str, kinds: list[str], resident: Resident
) -> None:
    reason = "risk:" + ",".join(kinds) if kinds else "risk"
    case = await case_repo.set_risk(
        session, reference, RiskLevel.URGENT, Actor("resident", str(resident.id)), reason
    )
    if case.escalate_at is not None:  # still unclaimed: the urgent time limit applies now
        await casework.schedule(session, case)


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


async def lookup_status(session: AsyncSession, resident: Resident) -> list[dict[str, Any]]:
    """The resident's cases, newest first, each with its latest visible event."""
    query = select(Case).where(Case.resident_id == resident.id).order_by(Case.id.desc()).limit(10)
    found = []
    for case in (await session.execute(query)).scalars():
        last = (
            await session.execute(
                select(CaseEvent)
                .where(CaseEvent.case_id == case.id, CaseEvent.kind != "view")
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
