"""Queries behind retention and erasure: stale drafts, cases due for anonymisation, and
the one narrowly-scoped way to take people's words out of the append-only timeline.

Why a bypass at all: :class:`~storage.models.CaseEvent` refuses every ORM update or
delete (a ``before_update``/``before_delete`` listener), because the timeline is the
audit log. PIPL's right to deletion (article 47) and storage limitation (article 19)
still require the *words* inside it to go. :func:`erase_case` therefore rewrites only
the personal keys of ``case_events.data`` with one Core ``UPDATE`` per entry (Core
statements do not pass through the ORM listener), never the kind, actor or time, and
in the same transaction appends a ``data_erased`` entry saying who erased, when, why
and how many entries were touched. Every other write path still hits the listener.
An erased entry's data keeps ``{"erased": true}`` so a reader sees that something was
there. Every sealed original (:mod:`storage.sealed`) of the case goes too: the
entries' ``data_sealed``, the case's sealed words, summary, answers and comment, the
summons texts; the NLU review inbox's captures of the case are deleted with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.cases import Actor, add_event
from storage.models import Case, CaseEvent, CaseStatus, Conversation, ProcessedUpdate, Resident
from storage.outbox import OutboxMessage
from storage.review import NluCapture
from storage.summons import Summons

#: Keys of an event's data that carry what a person said, sent or is called (``request``:
#: a mediator's words to a summoned department about the resident). (Not
#: ``chat_id``/``message_id``: in ``announced`` entries they name the centre's card,
#: which must stay editable to show the case withdrawn.)
PERSONAL_KEYS = frozenset(
    {"text", "words", "caption", "file_id", "file_name", "phone", "comment", "request"}
)
#: Case statuses whose personal data may go after the retention period.
FINISHED = (CaseStatus.CLOSED, CaseStatus.WITHDRAWN)
ERASED_EVENT = "data_erased"


@dataclass(slots=True)
class Erased:
    """What one erasure touched (counts only) and the stored files to delete after it."""

    cases: int = 0
    events: int = 0
    files: list[str] = field(default_factory=list)
    captures: int = 0


async def stale_drafts(session: AsyncSession, cutoff: datetime) -> list[Conversation]:
    """Conversations with an unfinished draft untouched since ``cutoff``."""
    query = select(Conversation).where(Conversation.updated_at < cutoff)
    return [c for c in (await session.execute(query)).scalars() if (c.state or {}).get("draft")]


async def clear_draft(session: AsyncSession, conversation: Conversation) -> None:
    """Drop the draft (and the step pointing into it), keep the row, its language and
    version discipline (the next save of a running process sees a new version)."""
    state = {k: v for k, v in (conversation.state or {}).items() if k not in ("draft", "step")}
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation.id, Conversation.version == conversation.version)
        .values(state=state, state_sealed=None, version=conversation.version + 1)
        .execution_options(synchronize_session=False)
    )


def _not_erased() -> Any:
    return ~exists().where(CaseEvent.case_id == Case.id, CaseEvent.kind == ERASED_EVENT)


async def cases_due(session: AsyncSession, cutoff: datetime) -> list[Case]:
    """Closed or withdrawn cases finished before ``cutoff`` and not yet anonymised."""
    query = (
        select(Case)
        .where(Case.status.in_(FINISHED), Case.closed_at < cutoff, _not_erased())
        .order_by(Case.id)
    )
    return list((await session.execute(query)).scalars())


async def cases_of(session: AsyncSession, channel: str, external_id: str) -> list[Case]:
    """Every case of one resident: by their resident row or by their chat."""
    resident = await find_resident(session, channel, external_id)
    condition = (Case.channel == channel) & (Case.chat_id == str(external_id))
    if resident is not None:
        condition = condition | (Case.resident_id == resident.id)
    query = select(Case).where(condition).order_by(Case.id)
    return list((await session.execute(query)).scalars())


async def find_resident(session: AsyncSession, channel: str, external_id: str) -> Resident | None:
    query = select(Resident).where(
        Resident.channel == channel, Resident.external_id == str(external_id)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def is_erased(session: AsyncSession, case: Case) -> bool:
    query = select(CaseEvent.id).where(CaseEvent.case_id == case.id, CaseEvent.kind == ERASED_EVENT)
    return (await session.execute(query.limit(1))).first() is not None


def _stripped_fields(fields: dict[str, Any] | None) -> dict[str, Any]:
    """Keep the form's numbers and yes/no answers (statistics), drop its free text."""
    return {
        k: v
        for k, v in (fields or {}).items()
        if isinstance(v, bool | int | float) and not isinstance(v, str)
    }


async def erase_case(session: AsyncSession, case: Case, actor: Actor, reason: str) -> Erased:
    """Anonymise one case in place: statistics stay (kind, place, centre, dates, status,
    outcome, rating), everything identifying goes; the timeline records it."""
    done = Erased(cases=1)
    events = list(
        (
            await session.execute(
                select(CaseEvent.id, CaseEvent.data, CaseEvent.data_sealed).where(
                    CaseEvent.case_id == case.id
                )
            )
        ).all()
    )
    for event_id, data, sealed_data in events:
        data = dict(data or {})
        personal = PERSONAL_KEYS & data.keys()
        if not personal:
            if sealed_data is not None:
                # A reason or request that quoted a number: its masked copy stays (it
                # says what happened), the original goes.
                await session.execute(
                    update(CaseEvent)
                    .where(CaseEvent.id == event_id)
                    .values(data_sealed=None)
                    .execution_options(synchronize_session=False)
                )
                done.events += 1
            continue
        file_id = str(data.get("file_id") or "")
        if file_id.startswith("local:"):
            done.files.append(file_id.removeprefix("local:"))
        kept = {k: v for k, v in data.items() if k not in PERSONAL_KEYS}
        kept["erased"] = True
        # The audited bypass (see the module docstring): Core, personal keys only.
        await session.execute(
            update(CaseEvent)
            .where(CaseEvent.id == event_id)
            .values(data=kept, data_sealed=None)
            .execution_options(synchronize_session=False)
        )
        done.events += 1
    case.resident_words = ""
    case.summary = ""
    case.fields = _stripped_fields(case.fields)
    case.resident_words_sealed = case.summary_sealed = case.fields_sealed = None
    case.phone_encrypted = None
    case.phone_masked = None
    case.chat_id = None
    case.rating_comment = None
    case.rating_comment_sealed = None
    case.resident_id = None
    await session.execute(
        update(Summons)
        .where(Summons.case_id == case.id)
        .values(request="", request_sealed=None, answer=None, answer_sealed=None)
        .execution_options(synchronize_session=False)
    )
    captures = await session.execute(delete(NluCapture).where(NluCapture.case_id == case.id))
    done.captures = int(captures.rowcount or 0)  # type: ignore[attr-defined]
    await session.flush()
    await add_event(session, case, ERASED_EVENT, actor, {"reason": reason, "events": done.events})
    return done


async def forget_resident_row(session: AsyncSession, resident: Resident) -> None:
    """Delete the resident (channel id, phone); their cases were detached before."""
    await session.execute(
        update(Case)
        .where(Case.resident_id == resident.id)
        .values(resident_id=None)
        .execution_options(synchronize_session=False)
    )
    await session.delete(resident)
    await session.flush()


async def orphaned_residents(session: AsyncSession, cutoff: datetime) -> list[Resident]:
    """Residents first seen before ``cutoff`` who no longer have any case: once their
    cases were anonymised, their channel id and phone serve no purpose."""
    query = select(Resident).where(
        Resident.created_at < cutoff, ~exists().where(Case.resident_id == Resident.id)
    )
    return list((await session.execute(query)).scalars())


async def drop_conversation(session: AsyncSession, channel: str, chat_id: str) -> bool:
    row = (
        await session.execute(
            select(Conversation).where(
                Conversation.channel == channel, Conversation.chat_id == str(chat_id)
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return False
    await session.delete(row)
    await session.flush()
    return True


async def count_old_updates(session: AsyncSession, cutoff: datetime) -> int:
    """How many processed update ids a run would forget (for ``--dry-run``)."""
    query = (
        select(func.count())
        .select_from(ProcessedUpdate)
        .where(ProcessedUpdate.processed_at < cutoff)
    )
    return int((await session.execute(query)).scalar_one())


async def drop_outbox(session: AsyncSession, channel: str, chat_id: str) -> int:
    """Messages kept for a chat that cannot be written to first (a REST bridge), gone
    with the resident: what the mediator wrote to them is in no other copy then."""
    result = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.channel == channel, OutboxMessage.chat_id == str(chat_id)
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def old_unattached_captures(
    session: AsyncSession, cutoff: datetime, *, delete_them: bool = False
) -> int:
    """Captured NLU messages that never led to a case, older than ``cutoff`` (a capture
    with a case goes with the case's personal data, :func:`erase_case`)."""
    condition = (NluCapture.case_id.is_(None)) & (NluCapture.created_at < cutoff)
    if not delete_them:
        query = select(func.count()).select_from(NluCapture).where(condition)
        return int((await session.execute(query)).scalar_one())
    result = await session.execute(delete(NluCapture).where(condition))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
