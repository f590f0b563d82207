"""The mediators' desk as one channel-agnostic service.

Telegram's desk, the web workspace, WeChat, the CLI and the intake all call this; none
of them holds casework. Every method does its store work in one transaction (through
:mod:`actions.casework` and :mod:`storage`), and only after the commit tells people,
through the output ports (:mod:`actions.ports`): the resident on their own channel, the
centre's card targets, the mediator's staff port. A delivery that fails is written on
the case's timeline (``delivery_failed``) instead of being lost in a log.

The emergency path lives here too: :meth:`DeskService.emergency_alert` reaches the
assigned mediator, the centre's (and its parent's) card targets and the supervisors
within seconds, with the resident's own words; :meth:`DeskService.sweep` takes an
unacknowledged alert one level up at a time until somebody presses "I'm on it".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from actions import casework, learning
from actions.cards import build_card, danger_names, kind_title, status_title
from actions.metrics import CASES_CLAIMED, CASES_ESCALATED
from actions.ports import CardTarget, CaseCard, DeliveryError, ResidentPorts, StaffPort
from actions.reveal import Revealed, may_reveal
from actions.reveal import reveal as reveal_case
from actions.routing import route_department
from bot.dialogue.model import Button, Reply
from bot.i18n import t
from bot.notices import Notice, RelayNotice
from bot.runtime import Store
from storage import cases as case_repo
from storage.cases import OPEN_STATUSES, Actor
from storage.errors import CaseNotFound, InvalidTransition
from storage.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Centre,
    Mediator,
    MediatorRole,
    Outcome,
    RiskLevel,
    utcnow,
)
from storage.phone import mask_phones_in_text

log = logging.getLogger(__name__)

STAFF_LANGUAGE = "zh"
#: A claimed case with no activity for this long gets a reminder (once per idle stretch).
IDLE_REMINDER = timedelta(days=2)
#: Events that are not activity on a case (a look, a reminder, a card edited or lost).
QUIET_KINDS = ("view", "reminder", "announced", "delivery_failed")
#: Kinds of event a resident's /status may show, in their own words.
SEND_LATER = list[Callable[[], Awaitable[Any]]]


@dataclass(slots=True)
class CaseView:
    """What a mediator is shown of a case: the case, its timeline, the phone as they may
    see it (full only for the case's own mediator), transcript and evidence."""

    case: Case
    events: list[CaseEvent]
    phone: str
    transcript: list[CaseEvent] = field(default_factory=list)
    evidence: list[CaseEvent] = field(default_factory=list)
    #: The case in full (words as said), when its own mediator asked to see it.
    revealed: Revealed | None = None


def _transcript(events: Sequence[CaseEvent]) -> list[CaseEvent]:
    return [e for e in events if e.kind in ("message_in", "message_out", "emergency", "note")]


def _evidence(events: Sequence[CaseEvent]) -> list[CaseEvent]:
    return [
        e
        for e in events
        if e.data.get("file_id") and e.kind in ("evidence", "message_in", "message_out")
    ]


class DeskService:
    """Casework and announcements, for every front end."""

    def __init__(
        self,
        store: Store,
        *,
        ports: ResidentPorts | None = None,
        cards: Sequence[CardTarget] = (),
        staff: Sequence[StaffPort] = (),
        timezone: str = "Asia/Shanghai",
        link_base: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        reply_hours: int = 24,
    ) -> None:
        self.store = store
        self.ports = ports or ResidentPorts()
        self.cards: list[CardTarget] = list(cards)
        self.staff: dict[str, StaffPort] = {port.name: port for port in staff}
        self.timezone = timezone
        self.link_base = link_base
        self.clock = clock
        self.reply_hours = reply_hours

    def add_card_target(self, target: CardTarget) -> None:
        self.cards.append(target)

    def add_staff_port(self, port: StaffPort) -> None:
        self.staff[port.name] = port

    # ------------------------------------------------------------- notices from intake

    async def deliver(self, notices: list[Notice]) -> None:
        """The intake's notices, after its commit (the Notifier protocol)."""
        for notice in notices:
            try:
                if isinstance(notice, RelayNotice):
                    await self.relay_to_mediator(notice)
                elif notice.kind == "urgent":
                    await self.emergency_alert(notice.reference)
                elif notice.kind == "follow_up":
                    await self.follow_up(notice.reference)
                elif notice.kind == "moved":
                    await self.announce(notice.reference, reason="moved")
                else:
                    await self.announce(notice.reference, reason=notice.kind)
            except CaseNotFound:
                log.warning("notice for a case that is gone: %s", notice.reference)

    # ---------------------------------------------------------------------- reading

    async def details(
        self, reference: str, mediator: Mediator, *, reveal: bool = False, via: str = "desk"
    ) -> CaseView:
        """A case for a mediator allowed to see it; the look goes on the timeline.

        Personal numbers stay masked, unless ``reveal`` and the viewer is the case's own
        mediator: then the phone and the words as said (``revealed``), and that look is
        recorded too (``phone_revealed``)."""
        async with self.store.sessions.begin() as session:
            case, events = await casework.view(session, reference, mediator)
            phone = case.phone_masked or "-"
            revealed = None
            if reveal and may_reveal(case, mediator):
                revealed = await reveal_case(
                    session, case, mediator, self.store.vault, via=via, events=events
                )
                phone = revealed.phone or phone
            view = CaseView(case, events, phone, _transcript(events), _evidence(events))
            view.revealed = revealed
            return view

    async def reveal_phone(self, reference: str, mediator: Mediator, via: str = "desk") -> str:
        """The full number, for the case's own mediator only, recorded on the timeline."""
        async with self.store.sessions.begin() as session:
            case = await case_repo.get_case(session, reference)
            found = await reveal_case(session, case, mediator, self.store.vault, via=via)
            return found.phone or "-"

    # ---------------------------------------------------------------------- changes

    async def claim(self, reference: str, mediator: Mediator) -> Case:
        """One of many concurrent claimers wins; the resident and every card are told."""
        async with self.store.sessions.begin() as session:
            case = await casework.claim(session, reference, mediator)
            if case.ack_due_at is not None:  # a person has the urgent case now
                case.ack_due_at = None
                await session.flush()
        CASES_CLAIMED.labels(case.risk_level.value).inc()  # committed: the claim won
        key = (
            "desk.resident_claimed_urgent"
            if case.risk_level == RiskLevel.URGENT
            else ("desk.resident_claimed")
        )
        await self.tell_resident(
            case,
            t(
                key,
                case.language,
                reference=case.reference,
                alias=mediator.display_alias,
                hours=self.reply_hours,
            ),
        )
        await self.refresh_cards(reference)
        return case

    async def acknowledge(self, reference: str, mediator: Mediator) -> Case:
        """ "I'm on it" on an emergency: recorded, the alert stops going up."""
        async with self.store.sessions.begin() as session:
            case, _ = await casework.case_for(session, reference, mediator, work=False)
            case.ack_due_at = None
            await session.flush()
            await case_repo.add_event(
                session, case, "acknowledged", Actor.of(mediator), {"alias": mediator.display_alias}
            )
        await self.refresh_cards(reference)
        return case

    async def reply(
        self,
        reference: str,
        mediator: Mediator,
        text: str | None,
        attachment: dict[str, Any] | None = None,
    ) -> bool:
        """The mediator's words (and file) to the resident on the resident's channel.

        Returns whether a port delivered it; a failure is on the timeline either way.
        """
        async with self.store.sessions.begin() as session:
            case = await case_repo.get_case(session, reference)
            if case.mediator_id != mediator.id or case.status not in casework.ACTIVE_STATUSES:
                raise casework.NotAllowed(case.reference)
            data: dict[str, Any] = {"text": text} if text else {}
            if attachment:
                data.update(attachment)
            await casework.record_message(session, case, "message_out", Actor.of(mediator), data)
        prefix = t(
            "desk.from_mediator",
            case.language,
            alias=mediator.display_alias,
            reference=case.reference,
        )
        return await self.tell_resident(
            case, f"{prefix}\n{text or ''}".rstrip(), attachment=attachment
        )

    async def note(self, reference: str, mediator: Mediator, text: str) -> Case:
        async with self.store.sessions.begin() as session:
            return await casework.note(session, reference, mediator, text)

    async def set_status(self, reference: str, mediator: Mediator, status: CaseStatus) -> Case:
        async with self.store.sessions.begin() as session:
            case = await casework.set_status(session, reference, mediator, status)
        if case.status == CaseStatus.RESOLVED:
            await self.ask_rating(case)
        elif case.status in (CaseStatus.IN_MEDIATION, CaseStatus.WITHDRAWN, CaseStatus.CLOSED):
            await self.tell_resident(
                case,
                t(
                    "desk.resident_status",
                    case.language,
                    reference=case.reference,
                    status=status_title(case.status.value, case.language),
                ),
            )
        await self.refresh_cards(reference)
        return case

    async def set_outcome(self, reference: str, mediator: Mediator, outcome: Outcome) -> Case:
        async with self.store.sessions.begin() as session:
            return await casework.set_outcome(session, reference, mediator, outcome)

    async def transfer(
        self, reference: str, mediator: Mediator, centre_code: str, reason: str
    ) -> tuple[Case, Centre]:
        async with self.store.sessions.begin() as session:
            case, target = await casework.transfer(
                session, reference, mediator, centre_code, reason
            )
        await self.tell_resident(
            case,
            t(
                "desk.resident_transferred",
                case.language,
                reference=case.reference,
                centre=target.name_en if case.language == "en" else target.name_zh,
            ),
        )
        await self.refresh_cards(reference)
        await self.announce(reference, reason="transferred")
        return case, target

    async def release(self, reference: str, mediator: Mediator) -> Case:
        async with self.store.sessions.begin() as session:
            case = await casework.release(session, reference, mediator)
        await self.tell_resident(
            case, t("desk.resident_released", case.language, reference=case.reference)
        )
        await self.refresh_cards(reference)
        await self.announce(reference, reason="released")
        return case

    async def recategorise(self, reference: str, mediator: Mediator, category: str) -> Case:
        """A mediator corrects the dispute kind: recorded with old and new kind, and the
        partner department follows the new kind."""
        async with self.store.sessions.begin() as session:
            case, network = await casework.case_for(session, reference, mediator, work=True)
            if case.status not in OPEN_STATUSES:
                raise InvalidTransition(case.reference, str(case.status), "recategorise")
            old = case.category
            case.category = category
            case.department = route_department(network, category, case.centre)
            case.updated_at = utcnow()
            await session.flush()
            await case_repo.add_event(
                session, case, "recategorised", Actor.of(mediator), {"from": old, "to": category}
            )
            # A mediator's correction is a label for the language model's review inbox.
            await learning.record_recategorisation(session, case, old, category, str(mediator.id))
        await self.refresh_cards(reference)
        return case

    async def deactivate(self, mediator: Mediator) -> list[str]:
        """A mediator leaves: their open cases go back to their centres' queues (urgent
        ones announced as urgent again) and their supervisors are told."""
        released: list[str] = []
        async with self.store.sessions.begin() as session:
            query = select(Case).where(
                Case.mediator_id == mediator.id, Case.status.in_(casework.ACTIVE_STATUSES)
            )
            for case in (await session.execute(query)).scalars():
                case = await case_repo.change_status(
                    session,
                    case.reference,
                    CaseStatus.NEW,
                    Actor.system(),
                    reason="mediator_deactivated",
                )
                await casework.schedule(session, case, self.clock())
                released.append(case.reference)
        for reference in released:
            async with self.store.sessions() as session:
                case = await case_repo.get_case(session, reference)
            await self.tell_resident(
                case, t("desk.resident_released", case.language, reference=reference)
            )
            await self.refresh_cards(reference)
            await self.announce(reference, reason="released")
            await self._tell_supervisors(
                case,
                t(
                    "desk.mediator_left",
                    STAFF_LANGUAGE,
                    reference=reference,
                    alias=mediator.display_alias,
                ),
            )
        return released

    # --------------------------------------------------------------- residents' side

    async def tell_resident(
        self,
        case: Case,
        text: str,
        *,
        buttons: Sequence[Sequence[Button]] = (),
        attachment: dict[str, Any] | None = None,
    ) -> bool:
        """Send to the resident through their channel's port; failures go on the case."""
        if not case.chat_id:
            return False
        reply = Reply(
            text=text, buttons=tuple(tuple(row) for row in buttons), attachment=attachment
        )
        try:
            sent = await self.ports.send(
                case.channel, case.chat_id, [reply], language=case.language
            )
        except DeliveryError as error:
            log.warning("resident of %s not reached: %s", case.reference, error.reason[:200])
            await self._record(
                case,
                "delivery_failed",
                {"reason": error.reason[:200], "permanent": error.permanent},
            )
            return False
        if not sent:
            await self._record(
                case,
                "delivery_failed",
                {"reason": f"no port for channel {case.channel}", "permanent": True},
            )
        return sent

    async def ask_rating(self, case: Case) -> bool:
        outcome = t(
            f"desk.outcomes.{case.outcome.value if case.outcome else 'none'}", case.language
        )
        buttons = [[Button(f"{n}⭐", f"rate:{case.reference}:{n}") for n in range(1, 6)]]
        return await self.tell_resident(
            case,
            t("desk.resident_resolved", case.language, reference=case.reference, outcome=outcome),
            buttons=buttons,
        )

    # ------------------------------------------------------------------ staff's side

    async def _notify(
        self,
        mediator: Mediator,
        text: str,
        *,
        reference: str | None = None,
        attachment: dict[str, Any] | None = None,
        buttons: Sequence[tuple[str, str]] = (),
    ) -> bool:
        port = self.staff.get(mediator.channel)
        if port is None or not mediator.active:
            return False
        try:
            return await port.notify(
                (mediator.channel, mediator.external_id),
                text,
                reference=reference,
                attachment=attachment,
                buttons=buttons,
            )
        except DeliveryError as error:
            log.warning("mediator %s not reached: %s", mediator.id, error.reason[:200])
            return False

    async def relay_to_mediator(self, notice: RelayNotice) -> None:
        """A resident's message (text, photo with its caption, file) for their mediator."""
        async with self.store.sessions() as session:
            case = await case_repo.get_case(session, notice.reference)
            mediator = case.mediator
        if mediator is None:
            return
        header = t(
            "desk.relay_header_flagged" if notice.flagged else "desk.relay_header",
            STAFF_LANGUAGE,
            reference=notice.reference,
        )
        caption = notice.text or (notice.attachment or {}).get("caption") or ""
        await self._notify(
            mediator,
            f"{header}\n{caption}".rstrip(),
            reference=notice.reference,
            attachment=notice.attachment,
            buttons=[(t("desk.acknowledge", STAFF_LANGUAGE), f"ack:{notice.reference}")]
            if notice.flagged
            else (),
        )

    async def _tell_supervisors(self, case: Case, text: str, **kwargs: Any) -> int:
        async with self.store.sessions() as session:
            supervisors = await casework.supervisors_of(session, case)
        told = 0
        for supervisor in supervisors:
            told += await self._notify(supervisor, text, reference=case.reference, **kwargs)
        return told

    async def follow_up(self, reference: str) -> int:
        """A low rating: the supervisors call back (回访), with the resident's comment."""
        async with self.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
        # Sent at the rating (no comment yet), and again with the comment when the
        # resident writes one, so the supervisor calls back knowing what went wrong.
        text = t(
            "desk.follow_up_comment" if case.rating_comment else "desk.follow_up",
            STAFF_LANGUAGE,
            reference=reference,
            rating=case.rating,
            comment=" ".join(mask_phones_in_text(case.rating_comment or "-").split()),
        )
        return await self._tell_supervisors(case, text)

    # ------------------------------------------------------------------ announcements

    async def _card(self, session: AsyncSession, case: Case) -> CaseCard:
        events = await case_repo.case_events(session, case)
        _, fields = build_card(case, events, link_base=self.link_base)
        return CaseCard(**fields)  # type: ignore[arg-type]

    async def announce(self, reference: str, *, reason: str = "new", fresh: bool = False) -> int:
        """Post the case's card where its centre's people will see it.

        To the case's centre, or — when nothing there can show a card (a station without
        a group) — the nearest centre up the tree that can; an urgent case also to the
        parent of that centre and to its home. A centre that already has this case's
        card gets it edited, not a second copy — except with ``fresh`` (an emergency): a
        new message pings the group where an edit of an old card would go unseen.
        Returns the number of new posts.

        Targets are called outside any transaction (they may read the store themselves,
        and SQLite has one connection per process); what was posted is recorded after.

        A new case's card is not built when no target has anywhere to post (a WeChat
        installation whose centres work in the web workspace, which reads the queue
        itself): loading the case, the directory and the timeline for a card nobody can
        see cost a third of the intake's throughput (docs/scaling.md). Emergencies
        (``fresh``) and every later announcement take the full path.
        """
        if reason in ("new", "filed") and not fresh and not await self._anyone_can_see():
            return 0
        async with self.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            if case.status not in OPEN_STATUSES and not fresh:
                return 0  # an emergency on a closed case still reaches the centre
            network = await casework.Network.load(session)
            card = await self._card(session, case)
            posted = await self._posted(session, case)
            chain = network.chain(case.centre)
            extras = [case.home_centre] if case.risk_level == RiskLevel.URGENT else []
        before = {key: list(refs) for key, refs in posted.items()}
        if fresh:
            posted = {}
        new: list[dict[str, Any]] = []
        hearing: Centre | None = None
        for centre in chain:
            new += await self._post(card, [centre], posted, reason)
            if any(code == centre.code for _, code in posted):
                hearing = centre
                break
        if extras:
            extras.insert(0, network.parent(hearing or case.centre))
            new += await self._post(card, [c for c in extras if c is not None], posted, reason)
        await self._record_posts(reference, new)
        # Cards posted before this call are edited to the case's state now.
        await self._update_posted(card, before)
        return len(new)

    async def _anyone_can_see(self) -> bool:
        """Whether some card target may have somewhere to post (unknown counts as yes)."""
        for target in self.cards:
            reaches = getattr(target, "reaches_any", None)
            if reaches is None or await reaches():
                return True
        return False

    async def _record_posts(self, reference: str, posts: list[dict[str, Any]]) -> None:
        if not posts:
            return
        async with self.store.sessions.begin() as session:
            case = await case_repo.get_case(session, reference)
            await case_repo.add_events(
                session, case, [("announced", Actor.system(), data) for data in posts]
            )

    async def _posted(
        self, session: AsyncSession, case: Case
    ) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Every card posted for the case, by (target, centre code)."""
        query = (
            select(CaseEvent)
            .where(CaseEvent.case_id == case.id, CaseEvent.kind == "announced")
            .order_by(CaseEvent.id)
        )
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for event in (await session.execute(query)).scalars():
            target = str(event.data.get("target") or "telegram")
            found.setdefault((target, str(event.data.get("centre"))), []).append(dict(event.data))
        return found

    async def _post(
        self,
        card: CaseCard,
        centres: Sequence[Centre],
        posted: dict[tuple[str, str], list[dict[str, Any]]],
        reason: str,
    ) -> list[dict[str, Any]]:
        """Post to every target of each centre that has none yet; returns the new posts."""
        made: list[dict[str, Any]] = []
        for centre in centres:
            for target in self.cards:
                if (target.name, centre.code) in posted:
                    continue  # edited instead of posted twice
                try:
                    ref = await target.post(centre.code, card)
                except DeliveryError as error:
                    log.warning(
                        "card for %s not posted to %s/%s: %s",
                        card.reference,
                        target.name,
                        centre.code,
                        error.reason[:200],
                    )
                    continue
                if ref is None:
                    continue
                data = {"target": target.name, "centre": centre.code, "reason": reason, **ref}
                posted.setdefault((target.name, centre.code), []).append(data)
                made.append(data)
        return made

    async def _update_posted(
        self, card: CaseCard, posted: dict[tuple[str, str], list[dict[str, Any]]]
    ) -> None:
        by_name = {target.name: target for target in self.cards}
        for (name, _centre), refs in posted.items():
            target = by_name.get(name)
            if target is None:
                continue
            for ref in refs:
                await self._update_one(target, ref, card)

    async def _update_one(self, target: CardTarget, ref: dict[str, Any], card: CaseCard) -> None:
        try:
            await target.update(ref, card)
        except DeliveryError as error:
            log.warning(
                "card of %s not updated on %s: %s", card.reference, target.name, error.reason[:200]
            )

    async def refresh_cards(self, reference: str) -> None:
        """Every posted card of the case shows its state now (claimed, acknowledged …)."""
        async with self.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            card = await self._card(session, case)
            posted = await self._posted(session, case)
        await self._update_posted(card, posted)

    # --------------------------------------------------------------------- emergency

    async def emergency_alert(self, reference: str) -> None:
        """Within seconds: the assigned mediator, the centre's (and parent's) cards and
        the supervisors, with the resident's words, the danger and where they are."""
        async with self.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            card = await self._card(session, case)
        text = self._alert_text(case, card)
        ack = [(t("desk.acknowledge", STAFF_LANGUAGE), f"ack:{reference}")]
        if case.mediator is not None:
            await self._notify(case.mediator, text, reference=reference, buttons=ack)
        await self.announce(reference, reason="urgent", fresh=True)
        await self._tell_supervisors(case, text, buttons=ack)

    def _alert_text(self, case: Case, card: CaseCard) -> str:
        return t(
            "desk.emergency_notice",
            STAFF_LANGUAGE,
            reference=case.reference,
            danger=danger_names(card.danger) or t("desk.danger.unknown", STAFF_LANGUAGE),
            words=card.trigger or card.summary,
            place=card.place,
            phone=card.phone_masked,
            holder=card.holder or t("desk.nobody_yet", STAFF_LANGUAGE),
            kind=kind_title(case.category),
        )

    # --------------------------------------------------------------------------- sweep

    async def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """Periodic work, safe from several processes (every change is conditional):
        escalate unclaimed cases, take unacknowledged emergencies up a level, announce
        what was never announced, remind mediators of idle cases."""
        now = now or self.clock()
        moved: list[str] = []
        alerts: list[tuple[str, str | None]] = []
        reminders: list[tuple[str, Mediator]] = []
        async with self.store.sessions.begin() as session:
            for case in await casework.due_for_escalation(session, now):
                if await casework.escalate(session, case, now) is not None:
                    moved.append(case.reference)
            alerts = await _raise_alerts(session, now)
            unannounced = [r for r in await _unannounced(session) if r not in moved]
            reminders = await _idle_cases(session, now)
        # Committed: every move counted here happened (each is conditional, so a case
        # moved by another process at the same moment is not in these lists).
        if moved:
            CASES_ESCALATED.labels("unclaimed").inc(len(moved))
        if alerts:
            CASES_ESCALATED.labels("unacknowledged").inc(len(alerts))
        for reference in moved:
            await self.announce(reference, reason="escalated")
            await self.refresh_cards(reference)
        for reference, centre_code in alerts:
            await self._alert_up(reference, centre_code)
        for reference in unannounced:
            await self.announce(reference, reason="new")
        for reference, mediator in reminders:
            await self._notify(
                mediator,
                t("desk.idle_reminder", STAFF_LANGUAGE, reference=reference),
                reference=reference,
            )
        return {
            "escalated": len(moved),
            "alerted": len(alerts),
            "announced": len(unannounced),
            "reminded": len(reminders),
        }

    async def _alert_up(self, reference: str, centre_code: str | None) -> None:
        """An emergency nobody acknowledged: the next centre up and its supervisors."""
        async with self.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            network = await casework.Network.load(session)
            card = await self._card(session, case)
            posted = await self._posted(session, case)
            centre = network.by_code(centre_code) if centre_code else None
        before = {key: list(refs) for key, refs in posted.items()}
        if centre is not None:
            await self._record_posts(reference, await self._post(card, [centre], posted, "alert"))
        await self._update_posted(card, before)
        text = t("desk.emergency_unanswered", STAFF_LANGUAGE) + "\n" + self._alert_text(case, card)
        ack = [(t("desk.acknowledge", STAFF_LANGUAGE), f"ack:{reference}")]
        if centre is not None:
            async with self.store.sessions() as session:
                query = select(Mediator).where(
                    Mediator.active,
                    Mediator.centre_id == centre.id,
                    Mediator.role.in_([MediatorRole.SUPERVISOR, MediatorRole.ADMIN]),
                )
                people = list((await session.execute(query)).scalars())
            for person in people:
                await self._notify(person, text, reference=reference, buttons=ack)

    async def _record(self, case: Case, kind: str, data: dict[str, Any]) -> None:
        try:
            async with self.store.sessions.begin() as session:
                fresh = await case_repo.get_case(session, case.reference)
                await case_repo.add_event(session, fresh, kind, Actor.system(), data)
        except Exception as error:  # recording a failure must not raise a second one
            log.warning("could not record %s on %s: %s", kind, case.reference, type(error).__name__)


# ----------------------------------------------------------------------- sweep queries


async def _raise_alerts(session: AsyncSession, now: datetime) -> list[tuple[str, str | None]]:
    """Emergencies past their acknowledgement time: one level up, new deadline.

    Conditional on ``ack_due_at`` as read, so two processes never raise one twice.
    """
    network = await casework.Network.load(session)
    query = select(Case).where(Case.ack_due_at.is_not(None), Case.ack_due_at <= now).limit(100)
    raised: list[tuple[str, str | None]] = []
    for case in (await session.execute(query)).scalars():
        chain = network.chain(case.home_centre or case.centre)
        level = min(case.alert_level + 1, len(chain) - 1) if chain else 0
        target = chain[level] if chain else None
        minutes = network.claim_minutes(target, RiskLevel.URGENT)
        result = await session.execute(
            update(Case)
            .where(Case.id == case.id, Case.ack_due_at == case.ack_due_at)
            .values(ack_due_at=now + timedelta(minutes=minutes), alert_level=level)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            continue
        await case_repo.add_event(
            session,
            case,
            "alert_escalated",
            Actor.system(),
            {"level": level, "to": target.code if target else None},
        )
        raised.append((case.reference, target.code if target else None))
    return raised


async def _unannounced(session: AsyncSession) -> list[str]:
    """Open, unassigned cases that were never announced anywhere (a lost post)."""
    announced = select(CaseEvent.case_id).where(CaseEvent.kind == "announced")
    query = (
        select(Case.reference)
        .where(Case.status == CaseStatus.NEW, Case.id.not_in(announced))
        .limit(50)
    )
    return list((await session.execute(query)).scalars())


async def _idle_cases(session: AsyncSession, now: datetime) -> list[tuple[str, Mediator]]:
    """Claimed cases with no activity for :data:`IDLE_REMINDER`: one reminder per idle
    stretch (none again until something happens on the case and it goes quiet again).

    "Once" is decided by the events (a reminder after the last activity), not by the
    wall clock, so an injected ``now`` and several processes agree.
    """
    cutoff = now - IDLE_REMINDER
    query = (
        select(Case)
        .where(
            Case.status.in_(casework.ACTIVE_STATUSES),
            Case.mediator_id.is_not(None),
            Case.updated_at < cutoff,
        )
        .limit(100)
    )
    found: list[tuple[str, Mediator]] = []
    for case in (await session.execute(query)).scalars():
        last = (
            await session.execute(
                select(CaseEvent.id, CaseEvent.created_at)
                .where(CaseEvent.case_id == case.id, CaseEvent.kind.not_in(QUIET_KINDS))
                .order_by(CaseEvent.id.desc())
                .limit(1)
            )
        ).first()
        if last is not None and last.created_at >= cutoff:
            continue
        reminded = (
            await session.execute(
                select(CaseEvent.id).where(
                    CaseEvent.case_id == case.id,
                    CaseEvent.kind == "reminder",
                    CaseEvent.id > (last.id if last is not None else 0),
                )
            )
        ).first()
        if reminded is not None or case.mediator is None:
            continue
        since = last.created_at.isoformat() if last is not None else None
        await case_repo.add_event(session, case, "reminder", Actor.system(), {"idle_since": since})
        found.append((case.reference, case.mediator))
    return found
