"""The case's own mediator sees a case in full: phone, and the words as they were said.

Everything else shows personal numbers masked (:mod:`storage.sealed`): the store keeps
the originals sealed, and only this module opens them, for the mediator the case is
assigned to, in answer to a deliberate request (the workspace's "show" button, ``/case``
on Telegram). Each reveal is a ``phone_revealed`` entry on the case's timeline (with
where it was asked, and how many sealed texts it opened), so the audit trail says who
saw what in full and when. The originals live only in the returned object, in memory;
nothing unsealed is written back or logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from actions.casework import NotAllowed
from storage import cases as case_repo
from storage import summons as summons_repo
from storage.cases import Actor
from storage.models import Case, CaseEvent, Mediator
from storage.phone import PhoneVault
from storage.sealed import unseal_text, unseal_value
from storage.summons import Summons

REVEAL_EVENT = "phone_revealed"


@dataclass(frozen=True, slots=True)
class Revealed:
    """A case's personal data in full, for its own mediator's eyes only."""

    phone: str | None
    words: str
    summary: str
    fields: dict[str, Any]
    rating_comment: str | None
    #: Timeline entry id → its data as written (only entries that had a sealed original).
    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Summons id → (request, answer) as written.
    summons: dict[int, tuple[str, str | None]] = field(default_factory=dict)

    def data_of(self, event: CaseEvent) -> dict[str, Any]:
        """An entry's data as written (its masked copy when nothing was sealed)."""
        return self.events.get(event.id, event.data or {})

    @property
    def opened(self) -> int:
        """How many sealed texts this reveal opened (for the audit entry)."""
        return len(self.events) + len(self.summons)


def unsealed(
    case: Case,
    events: Sequence[CaseEvent],
    vault: PhoneVault,
    summons: Sequence[Summons] = (),
) -> Revealed:
    """The originals of one case (pure: no access check, no audit — see :func:`reveal`)."""
    texts = {
        event.id: dict(unseal_value(event.data or {}, event.data_sealed, vault))
        for event in events
        if event.data_sealed
    }
    asked = {
        item.id: (
            str(unseal_text(item.request, item.request_sealed, vault) or ""),
            unseal_text(item.answer, item.answer_sealed, vault),
        )
        for item in summons
        if item.request_sealed or item.answer_sealed
    }
    return Revealed(
        phone=vault.decrypt(case.phone_encrypted) or case.phone_masked,
        words=str(unseal_text(case.resident_words, case.resident_words_sealed, vault) or ""),
        summary=str(unseal_text(case.summary, case.summary_sealed, vault) or ""),
        fields=dict(unseal_value(case.fields or {}, case.fields_sealed, vault)),
        rating_comment=unseal_text(case.rating_comment, case.rating_comment_sealed, vault),
        events=texts,
        summons=asked,
    )


def may_reveal(case: Case, mediator: Mediator) -> bool:
    """Only the active mediator the case is assigned to."""
    return mediator.active and case.mediator_id == mediator.id


async def reveal(
    session: AsyncSession,
    case: Case,
    mediator: Mediator,
    vault: PhoneVault,
    *,
    via: str,
    events: Sequence[CaseEvent] | None = None,
) -> Revealed:
    """The case in full for its own mediator (:class:`NotAllowed` for anyone else);
    the look is recorded on the timeline in the caller's transaction."""
    if not may_reveal(case, mediator):
        raise NotAllowed(case.reference)
    if events is None:
        events = await case_repo.case_events(session, case)
    summons = await summons_repo.case_summons(session, case.id)
    found = unsealed(case, events, vault, summons)
    await case_repo.add_event(
        session, case, REVEAL_EVENT, Actor.of(mediator), {"via": via, "texts": found.opened}
    )
    return found
