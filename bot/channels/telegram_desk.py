"""The mediators' desk on Telegram: case cards in centre chats, claim, relay, case work.

- New cases are posted as cards to their centre's chat (urgent ones to the parent too),
  with *Claim* and *Details* buttons; the card is edited to show who took it.
- While a case is claimed, the resident's messages reach the mediator's private chat
  with the bot (the intake service hands them over as notices), and what the mediator
  answers — as a reply to such a message, or ``/reply REF text`` — goes to the resident.
- Mediator commands: /queue /mine /case /note /status /outcome /transfer /release.
- A periodic sweep moves unclaimed cases up a level when their time is up and
  announces any case whose announcement was lost; the schedule lives in the store.

Every handler here runs before the intake's handlers (group -1). It answers only
registered mediators (and refuses mediator commands from anyone else, once, politely);
residents' updates fall through to the intake untouched.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from actions import casework
from actions.casework import NotAllowed
from bot.dialogue.forms import default_forms
from bot.i18n import t
from bot.notices import Notice, RelayNotice
from bot.runtime import Store
from bot.settings import Settings
from storage import cases as case_repo
from storage.cases import Actor
from storage.errors import (
    AlreadyClaimed,
    CaseNotFound,
    CentreNotFound,
    InvalidTransition,
    MediatorInactive,
)
from storage.models import Case, CaseEvent, CaseStatus, Centre, Mediator, Outcome, utcnow
from storage.updates import record_processed_update

log = logging.getLogger(__name__)

CHANNEL = "telegram"
#: Sends to make once the transaction has committed.
Later = list[Callable[[], Awaitable[Any]]]
DESK_KEY = "mediator_desk"
COMMANDS = ("queue", "mine", "case", "note", "status", "outcome", "transfer", "release", "reply")
#: Commands a resident also has (/status without a reference is the resident's own).
SHARED_COMMANDS = frozenset({"status"})
CARD_BUTTON = re.compile(r"^(claim|details):([A-Z]{2,6}-\d{8}-\d{4,6})$")
REFERENCE = re.compile(r"\b([A-Z]{2,6}-\d{8}-\d{4,6})\b")
#: What a card shows of the resident's words.
CARD_SUMMARY_CHARS = 120


def _esc(text: object) -> str:
    return html.escape(str(text))


class TelegramDesk:
    """Posts to centre chats and mediators, and handles mediators' updates."""

    def __init__(
        self,
        application: Application,  # type: ignore[type-arg]
        store: Store,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.application = application
        self.store = store
        self.settings = settings
        self.clock = clock
        self.reply_hours = 24

    @property
    def bot(self) -> Any:
        return self.application.bot

    # ------------------------------------------------------------------ notices (Notifier)

    async def deliver(self, notices: list[Notice]) -> None:
        for notice in notices:
            if isinstance(notice, RelayNotice):
                await self._relay_to_mediator(notice)
            elif notice.kind == "follow_up":
                await self._follow_up(notice.reference)
            else:
                await self.announce(notice.reference, parent_too=notice.kind == "urgent")

    async def announce(self, reference: str, *, parent_too: bool = False) -> int:
        """Post the case card to its centre's chat (and the parent's); returns posts made."""
        async with self.store.sessions.begin() as session:
            case = await case_repo.get_case(session, reference)
            if case.status != CaseStatus.NEW:
                return 0
            network = await casework.Network.load(session)
            targets = [case.centre] if case.centre else []
            if parent_too and network.parent(case.centre):
                targets.append(network.parent(case.centre))
            title = _category(case.category)
            posted = 0
            for centre in targets:
                if centre is None or centre.telegram_chat_id is None:
                    continue
                try:
                    message = await self.bot.send_message(
                        chat_id=centre.telegram_chat_id,
                        message_thread_id=centre.telegram_thread_id,
                        text=card_text(case, title),
                        parse_mode=ParseMode.HTML,
                        reply_markup=card_buttons(case.reference),
                    )
                except TelegramError as error:
                    log.warning("card for %s not posted to %s: %s", reference, centre.code, error)
                    continue
                posted += 1
                await case_repo.add_event(
                    session,
                    case,
                    "announced",
                    Actor.system(),
                    {
                        "centre": centre.code,
                        "chat_id": centre.telegram_chat_id,
                        "message_id": message.message_id,
                    },
                )
            return posted

    async def _relay_to_mediator(self, notice: RelayNotice) -> None:
        header = t("desk.relay_header", "zh", reference=notice.reference)
        chat_id = int(notice.mediator_external_id)
        if notice.attachment:
            await self._send_file(chat_id, notice.attachment, header)
        else:
            await self.bot.send_message(
                chat_id=chat_id,
                text=f"{_esc(header)}\n{_esc(notice.text or '')}",
                parse_mode=ParseMode.HTML,
            )

    async def _send_file(self, chat_id: int, attachment: dict[str, Any], caption: str) -> None:
        if attachment.get("kind") == "photo":
            await self.bot.send_photo(chat_id=chat_id, photo=attachment["file_id"], caption=caption)
        else:
            await self.bot.send_document(
                chat_id=chat_id, document=attachment["file_id"], caption=caption
            )

    async def _follow_up(self, reference: str) -> None:
        async with self.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            supervisors = await casework.supervisors_of(session, case)
        for supervisor in supervisors:
            try:
                await self.bot.send_message(
                    chat_id=int(supervisor.external_id),
                    text=t("desk.follow_up", "zh", reference=reference, rating=case.rating),
                )
            except (TelegramError, ValueError) as error:
                log.warning("follow-up for %s not sent: %s", reference, error)

    # --------------------------------------------------------------------------- sweep

    async def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """Escalate what waited too long; announce what was never announced.

        Safe to run from several processes: escalation is conditional in the store.
        """
        now = now or self.clock()
        moved: list[tuple[str, bool]] = []
        async with self.store.sessions.begin() as session:
            for case in await casework.due_for_escalation(session, now):
                target = await casework.escalate(session, case, now)
                if target is not None:
                    moved.append((case.reference, case.risk_level.value == "urgent"))
            unannounced = await _unannounced(session)
        for reference, urgent in moved:
            await self.announce(reference, parent_too=urgent)
        for reference in unannounced:
            await self.announce(reference)
        return {"escalated": len(moved), "announced": len(unannounced)}

    # ----------------------------------------------------------------------- handlers

    def add_handlers(self) -> None:
        self.application.bot_data[DESK_KEY] = self
        self.application.add_handler(
            CallbackQueryHandler(self.on_card_button, pattern=r"^(claim|details):"), group=-1
        )
        self.application.add_handler(
            MessageHandler(filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE, self.on_private),
            group=-1,
        )

    async def _mediator(self, session: AsyncSession, user_id: int | None) -> Mediator | None:
        if user_id is None:
            return None
        return await casework.active_mediator(session, CHANNEL, str(user_id))

    async def on_card_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Claim or Details pressed on a card; callback data is validated, never trusted."""
        query = update.callback_query
        if query is None:
            return
        match = CARD_BUTTON.match(query.data or "")
        if match is None:
            await query.answer(t("desk.bad_button", "zh"))
            raise ApplicationHandlerStop
        action, reference = match.groups()
        later: Later = []
        answer: tuple[str | None, bool] = (None, False)
        async with self.store.sessions.begin() as session:
            if await record_processed_update(session, CHANNEL, update.update_id):
                answer = await self._card_action(session, query, action, reference, later)
        # After the commit: only now may anyone be told the claim happened.
        text, alert = answer
        await query.answer(text, show_alert=alert)
        for step in later:
            await step()
        raise ApplicationHandlerStop

    async def _card_action(
        self,
        session: AsyncSession,
        query: Any,
        action: str,
        reference: str,
        later: Later,
    ) -> tuple[str | None, bool]:
        """Claim or show details; returns the answer to show and whether it is a refusal."""
        mediator = await self._mediator(session, query.from_user.id)
        if mediator is None or not mediator.active:
            log.warning("refused %s of %s by user %s", action, reference, query.from_user.id)
            return t("desk.not_mediator", "zh"), True
        if action == "details":
            try:
                case, _ = await casework.view(session, reference, mediator)
            except (NotAllowed, CaseNotFound):
                log.warning("refused details of %s to mediator %s", reference, mediator.id)
                return t("desk.not_allowed", "zh"), True
            text = await self._details(session, case, mediator)
            later.append(
                lambda: self.bot.send_message(
                    chat_id=query.from_user.id, text=text, parse_mode=ParseMode.HTML
                )
            )
            return None
        try:
            case = await casework.claim(session, reference, mediator)
        except AlreadyClaimed as error:
            return t("desk.already_claimed", "zh", alias=error.claimed_by or "-"), True
        except (NotAllowed, MediatorInactive, CaseNotFound, InvalidTransition):
            log.warning("refused claim of %s by mediator %s", reference, mediator.id)
            return t("desk.not_allowed", "zh"), True
        cards = await _cards(session, case)
        later.append(lambda: self._after_claim(case, mediator, cards))
        return t("desk.claimed_you", "zh", reference=reference), False

    async def _after_claim(
        self, case: Case, mediator: Mediator, cards: list[dict[str, Any]]
    ) -> None:
        for card in cards:
            try:
                await self.bot.edit_message_text(
                    chat_id=card["chat_id"],
                    message_id=card["message_id"],
                    text=card_text(case, _category(case.category))
                    + "\n"
                    + _esc(t("desk.card_claimed", "zh", alias=mediator.display_alias)),
                    parse_mode=ParseMode.HTML,
                    reply_markup=InlineKeyboardMarkup(
                        [
                            [
                                InlineKeyboardButton(
                                    t("desk.details", "zh"),
                                    callback_data=f"details:{case.reference}",
                                )
                            ]
                        ]
                    ),
                )
            except TelegramError as error:
                log.warning("card of %s not edited: %s", case.reference, error)
        await self._tell_resident(
            case, "desk.resident_claimed", alias=mediator.display_alias, hours=self.reply_hours
        )

    async def _tell_resident(self, case: Case, key: str, **values: Any) -> None:
        if case.channel != CHANNEL or not case.chat_id:
            return
        try:
            await self.bot.send_message(
                chat_id=int(case.chat_id),
                text=t(key, case.language, reference=case.reference, **values),
                reply_markup=values.get("markup"),
            )
        except TelegramError as error:
            log.warning("resident of %s not told: %s", case.reference, error)

    async def on_private(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Private messages: mediators' commands and replies; everyone else falls through."""
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None:
            return
        text = message.text or message.caption or ""
        command = re.match(r"^/([A-Za-z_]+)(?:@\w+)?\s*(.*)$", text, re.DOTALL)
        name = command.group(1).lower() if command else None
        args = command.group(2).strip() if command else ""
        later: Later = []
        answer: str | None = None
        async with self.store.sessions.begin() as session:
            mediator = await self._mediator(session, user.id)
            if mediator is None:
                if name not in COMMANDS or (name in SHARED_COMMANDS and not args):
                    return  # a resident: the intake handles it
                log.warning("refused /%s from non-mediator %s", name, user.id)
                answer = t("desk.not_mediator", "zh")
            elif not await record_processed_update(session, CHANNEL, update.update_id):
                answer = None
            elif not mediator.active:
                log.warning("refused message from inactive mediator %s", mediator.id)
                answer = t("desk.inactive", "zh")
            else:
                answer = await self._mediator_message(session, mediator, message, name, args, later)
        if answer:
            await message.reply_text(answer, parse_mode=ParseMode.HTML)
        for step in later:
            await step()
        raise ApplicationHandlerStop

    async def _mediator_message(
        self,
        session: AsyncSession,
        mediator: Mediator,
        message: Any,
        name: str | None,
        args: str,
        later: Later,
    ) -> str | None:
        """One mediator message inside the transaction; sends wait in ``later``."""
        try:
            if name is None:
                return await self._reply_from_mediator(session, mediator, message, later)
            handler = getattr(self, f"_cmd_{name}", None) if name in COMMANDS else None
            if handler is None:
                return _esc(t("desk.help", "zh"))
            return await handler(session, mediator, args, later)
        except CaseNotFound as error:
            return _esc(t("desk.no_case", "zh", reference=error.args[0] if error.args else ""))
        except NotAllowed:
            log.warning("refused /%s by mediator %s", name, mediator.id)
            return _esc(t("desk.not_allowed", "zh"))
        except InvalidTransition as error:
            return _esc(t("desk.invalid_transition", "zh", error=error))
        except CentreNotFound as error:
            return _esc(t("desk.no_centre", "zh", code=error.code))

    # ----------------------------------------------------------------------- commands

    async def _cmd_queue(
        self, session: AsyncSession, mediator: Mediator, args: str, later: Later
    ) -> str:
        return _listing(await casework.queue(session, mediator), "queue")

    async def _cmd_mine(
        self, session: AsyncSession, mediator: Mediator, args: str, later: Later
    ) -> str:
        return _listing(await casework.mine(session, mediator), "mine")

    async def _cmd_case(
        self, session: AsyncSession, mediator: Mediator, args: str, later: Later
    ) -> str:
        reference = _need_reference(args)
        case, _ = await casework.view(session, reference, mediator)
        return await self._details(session, case, mediator)

    async def _details(self, session: AsyncSession, case: Case, mediator: Mediator) -> str:
        events = await case_repo.case_events(session, case)
        phone = case.phone_masked or "-"
        if case.mediator_id == mediator.id and case.phone_encrypted:
            phone = self.store.vault.decrypt(case.phone_encrypted) or phone  # own case only
        lines = [
            f"<b>{_esc(case.reference)}</b> {_esc(_category(case.category))} {_risk_badge(case)}",
            _esc(
                t(
                    "desk.detail_status",
                    "zh",
                    status=case.status.value,
                    centre=case.centre.name_zh if case.centre else "-",
                    place=" ".join(x for x in (case.street, case.community) if x) or "-",
                )
            ),
            _esc(
                t(
                    "desk.detail_phone",
                    "zh",
                    phone=phone,
                    consent=t("cli.word_yes" if case.contact_consent else "cli.word_no", "zh"),
                )
            ),
            _esc(case.resident_words[:1500]),
        ]
        if case.fields:
            lines.append(_esc("; ".join(f"{k}: {v}" for k, v in case.fields.items())))
        lines.append(_esc(t("desk.timeline", "zh")))
        for event in events[-15:]:
            lines.append(
                _esc(
                    f"· {event.created_at:%m-%d %H:%M} {event.kind}"
                    + (
                        f" {event.data.get('text', '')[:80]}"
                        if event.kind in ("note", "message_in", "message_out")
                        else ""
                    )
                )
            )
        return "\n".join(lines)

    async def _cmd_note(
        self, session: AsyncSession, mediator: Mediator, args: str, later: Later
    ) -> str:
        reference, text = _reference_and_rest(args)
        if not text:
            return _esc(t("desk.usage_note", "zh"))
        await casework.note(session, reference, mediator, text)
        return _esc(t("desk.noted", "zh", reference=reference))

    async def _cmd_status(
        self, session: AsyncSession, mediator: Mediator, args: str, later: Later
    ) -> str:
        reference, value = _reference_and_rest(args)
        allowed = {"in_mediation", "resolved", "withdrawn", "closed"}
        if value not in allowed:
            return _esc(t("desk.usage_status", "zh"))
        case = await casework.set_status(session, reference, mediator, CaseStatus(value))
        if case.status == CaseStatus.RESOLVED:
            later.append(lambda: self._ask_rating(case))
        return _esc(t("desk.status_set", "zh", reference=reference, status=value))

    async def _ask_rating(self, case: Case) -> None:
        outcome = (
            t(f"desk.outcomes.{case.outcome.value}", case.language)
            if case.outcome
            else t("desk.outcomes.none", case.language)
        )
        buttons = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(f"{n}⭐", callback_data=f"rate:{case.reference}:{n}")
                    for n in range(1, 6)
                ]
            ]
        )
        await self._tell_resident(case, "desk.resident_resolved", outcome=outcome, markup=buttons)

    async def _cmd_outcome(
        self, session: AsyncSession, mediator: Mediator, args: str, later: Later
    ) -> str:
        reference, value = _reference_and_rest(args)
        if value not in {o.value for o in Outcome} or value == "withdrawn":
            return _esc(t("desk.usage_outcome", "zh"))
        await casework.set_outcome(session, reference, mediator, Outcome(value))
        return _esc(t("desk.outcome_set", "zh", reference=reference, outcome=value))

    async def _cmd_transfer(
        self, session: AsyncSession, mediator: Mediator, args: str, later: Later
    ) -> str:
        parts = args.split(maxsplit=2)
        if len(parts) < 3:
            return _esc(t("desk.usage_transfer", "zh"))
        reference, code, reason = parts[0].upper(), parts[1], parts[2]
        case, target = await casework.transfer(session, reference, mediator, code, reason)
        urgent = case.risk_level.value == "urgent"
        later.append(lambda: self.announce(case.reference, parent_too=urgent))
        return _esc(t("desk.transferred", "zh", reference=case.reference, centre=target.name_zh))

    async def _cmd_release(
        self, session: AsyncSession, mediator: Mediator, args: str, later: Later
    ) -> str:
        reference = _need_reference(args)
        case = await casework.release(session, reference, mediator)
        later.append(lambda: self.announce(case.reference))
        return _esc(t("desk.released", "zh", reference=case.reference))

    async def _cmd_reply(
        self, session: AsyncSession, mediator: Mediator, args: str, later: Later
    ) -> str:
        reference, text = _reference_and_rest(args)
        if not text:
            return _esc(t("desk.usage_reply", "zh"))
        return await self._to_resident(session, mediator, reference, later, text=text)

    async def _reply_from_mediator(
        self, session: AsyncSession, mediator: Mediator, message: Any, later: Later
    ) -> str | None:
        """A reply to a relayed message (text, photo or document) goes to the resident."""
        replied = message.reply_to_message
        source = (replied.text or replied.caption or "") if replied else ""
        found = REFERENCE.search(source)
        if not found:
            return _esc(t("desk.help", "zh"))
        attachment = None
        if message.photo:
            attachment = {
                "kind": "photo",
                "file_id": message.photo[-1].file_id,
                "size": message.photo[-1].file_size,
            }
        elif message.document:
            attachment = {
                "kind": "document",
                "file_id": message.document.file_id,
                "size": message.document.file_size,
                "mime_type": message.document.mime_type,
            }
        return await self._to_resident(
            session,
            mediator,
            found.group(1),
            later,
            text=message.text or message.caption,
            attachment=attachment,
        )

    async def _to_resident(
        self,
        session: AsyncSession,
        mediator: Mediator,
        reference: str,
        later: Later,
        *,
        text: str | None = None,
        attachment: dict[str, Any] | None = None,
    ) -> str:
        case = await case_repo.get_case(session, reference)
        if case.mediator_id != mediator.id or case.status not in casework.ACTIVE_STATUSES:
            raise NotAllowed(case.reference)
        data: dict[str, Any] = {"text": text} if text else {}
        if attachment:
            data.update(attachment)
        await casework.record_message(session, case, "message_out", Actor.of(mediator), data)
        if case.channel != CHANNEL or not case.chat_id:
            return _esc(t("desk.resident_elsewhere", "zh", reference=case.reference))
        prefix = t(
            "desk.from_mediator",
            case.language,
            alias=mediator.display_alias,
            reference=case.reference,
        )
        chat_id = int(case.chat_id)
        if attachment:
            later.append(lambda: self._send_file(chat_id, attachment, f"{prefix}\n{text or ''}"))
        else:
            later.append(lambda: self.bot.send_message(chat_id=chat_id, text=f"{prefix}\n{text}"))
        return _esc(t("desk.sent", "zh", reference=case.reference))


# -------------------------------------------------------------------------- rendering


def _category(category: str) -> str:
    form = default_forms().by_category.get(category)
    return form.title.zh if form else category


def _risk_badge(case: Case) -> str:
    return t(f"desk.risk.{case.risk_level.value}", "zh")


def card_text(case: Case, title: str) -> str:
    words = " ".join(case.resident_words.split())
    summary = words[:CARD_SUMMARY_CHARS] + ("…" if len(words) > CARD_SUMMARY_CHARS else "")
    place = " · ".join(x for x in (case.street, case.community) if x) or "-"
    return "\n".join(
        [
            f"<b>{_esc(case.reference)}</b>  {_esc(title)}  {_risk_badge(case)}",
            f"📍 {_esc(place)}   ☎ {_esc(case.phone_masked or '-')}",
            _esc(summary),
        ]
    )


def card_buttons(reference: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(t("desk.claim", "zh"), callback_data=f"claim:{reference}"),
                InlineKeyboardButton(t("desk.details", "zh"), callback_data=f"details:{reference}"),
            ]
        ]
    )


def _listing(cases: list[Case], name: str) -> str:
    """/queue and /mine: a title and one line per case, or a friendly "none"."""
    if not cases:
        return _esc(t(f"desk.{name}_empty", "zh"))
    return "\n".join([_esc(t(f"desk.{name}_title", "zh"))] + [_line(c) for c in cases])


def _line(case: Case) -> str:
    return _esc(
        f"{case.reference} {_category(case.category)} {_risk_badge(case)} "
        f"{case.street or '-'} {case.status.value}"
    )


def _need_reference(args: str) -> str:
    reference = args.split()[0].upper() if args.split() else ""
    if not REFERENCE.fullmatch(reference):
        raise CaseNotFound(reference or "-")
    return reference


def _reference_and_rest(args: str) -> tuple[str, str]:
    parts = args.split(maxsplit=1)
    reference = _need_reference(args)
    return reference, parts[1].strip() if len(parts) > 1 else ""


async def _cards(session: AsyncSession, case: Case) -> list[dict[str, Any]]:
    query = select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.kind == "announced")
    return [dict(e.data) for e in (await session.execute(query)).scalars()]


async def _unannounced(session: AsyncSession) -> list[str]:
    """New cases at a centre with a chat that were never announced (a lost post)."""
    announced = select(CaseEvent.case_id).where(CaseEvent.kind == "announced")
    query = (
        select(Case.reference)
        .join(Centre, Centre.id == Case.centre_id)
        .where(
            Case.status == CaseStatus.NEW,
            Centre.telegram_chat_id.is_not(None),
            Case.id.not_in(announced),
        )
        .limit(50)
    )
    return list((await session.execute(query)).scalars())
