"""The mediators' desk on Telegram: renders and routes, nothing more.

Case cards (posted by :class:`~bot.channels.telegram_ports.TelegramCardTarget`) carry
*Claim*, *Details* and, for an emergency, *I'm on it*; mediators' private messages
carry commands (/queue /mine /case /note /status /outcome /transfer /release /reply
/kind) and replies to relayed messages. Each press or command becomes one call of the
channel-agnostic :class:`~actions.desk.DeskService` — the same one the web workspace
and the CLI use — and its answer is rendered here.

Every handler here runs before the intake's (group -1). It answers only registered
mediators (refusing mediator commands from anyone else, once, politely); residents'
updates fall through to the intake untouched.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from actions import casework
from actions.cards import kind_title, status_title
from actions.casework import NotAllowed
from actions.desk import DeskService
from bot.case_view import render_case_text
from bot.channels.sanitise import clean_text
from bot.channels.telegram_ports import send_file
from bot.dialogue.forms import default_forms
from bot.i18n import t
from bot.runtime import Store
from storage.errors import (
    AlreadyClaimed,
    CaseNotFound,
    CentreNotFound,
    InvalidTransition,
    MediatorInactive,
)
from storage.models import Case, CaseStatus, Mediator, Outcome
from storage.updates import record_processed_update

log = logging.getLogger(__name__)

CHANNEL = "telegram"
STAFF = "zh"
COMMANDS = (
    "queue",
    "mine",
    "case",
    "note",
    "status",
    "outcome",
    "transfer",
    "release",
    "reply",
    "kind",
)
#: Commands a resident also has (/status without a reference is the resident's own).
SHARED_COMMANDS = frozenset({"status"})
CARD_BUTTON = re.compile(r"^(claim|details|ack):([A-Z]{2,6}-\d{8}-\d{4,6})$")
REFERENCE = re.compile(r"\b([A-Z]{2,6}-\d{8}-\d{4,6})\b")
#: Telegram's message limit, less room for the HTML escaping.
MESSAGE_LIMIT = 3900

Handler = Callable[[Mediator, str, Any], Awaitable[str]]


def _esc(text: object) -> str:
    return html.escape(str(text))


class TelegramDesk:
    """Handles mediators' updates by calling the desk service."""

    def __init__(
        self,
        application: Application,  # type: ignore[type-arg]
        desk: DeskService,
        store: Store,
        timezone: str = "Asia/Shanghai",
    ) -> None:
        self.application = application
        self.desk = desk
        self.store = store
        self.timezone = timezone

    @property
    def bot(self) -> Any:
        return self.application.bot

    def add_handlers(self) -> None:
        self.application.add_handler(
            CallbackQueryHandler(self.on_card_button, pattern=r"^(claim|details|ack):"), group=-1
        )
        self.application.add_handler(
            MessageHandler(filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE, self.on_private),
            group=-1,
        )

    async def _mediator(self, user_id: int | None) -> Mediator | None:
        if user_id is None:
            return None
        async with self.store.sessions() as session:
            return await casework.active_mediator(session, CHANNEL, str(user_id))

    async def _first_time(self, update: Update) -> bool:
        """Record the update id; False when it was handled already (a redelivery)."""
        async with self.store.sessions.begin() as session:
            return await record_processed_update(session, CHANNEL, update.update_id)

    # --------------------------------------------------------------------- card buttons

    async def on_card_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Claim, Details or I'm-on-it pressed on a card or notice; data checked, never
        trusted; only registered, active mediators may act."""
        query = update.callback_query
        if query is None:
            return
        match = CARD_BUTTON.match(query.data or "")
        if match is None:
            await query.answer(t("desk.bad_button", STAFF))
            raise ApplicationHandlerStop
        action, reference = match.groups()
        if not await self._first_time(update):
            await query.answer()
            raise ApplicationHandlerStop
        mediator = await self._mediator(query.from_user.id)
        if mediator is None or not mediator.active:
            log.warning("refused %s of %s by user %s", action, reference, query.from_user.id)
            await query.answer(t("desk.not_mediator", STAFF), show_alert=True)
            raise ApplicationHandlerStop
        try:
            if action == "details":
                text = await self._details(mediator, reference)
                await query.answer()
                await self._send_long(query.from_user.id, text)
            elif action == "ack":
                await self.desk.acknowledge(reference, mediator)
                await query.answer(t("desk.ack_you", STAFF, reference=reference))
            else:
                case = await self.desk.claim(reference, mediator)
                await query.answer(t("desk.claimed_you", STAFF, reference=reference))
                await self._forward_evidence(mediator, case)
        except AlreadyClaimed as error:
            await query.answer(
                t("desk.already_claimed", STAFF, alias=error.claimed_by or "-"), show_alert=True
            )
        except (NotAllowed, MediatorInactive, CaseNotFound, InvalidTransition):
            log.warning("refused %s of %s by mediator %s", action, reference, mediator.id)
            await query.answer(t("desk.not_allowed", STAFF), show_alert=True)
        raise ApplicationHandlerStop

    async def _forward_evidence(self, mediator: Mediator, case: Case) -> None:
        """A mediator who takes a case gets the files sent before the claim."""
        view = await self.desk.details(case.reference, mediator)
        for event in view.evidence:
            if ":" in str(event.data.get("file_id")):
                continue  # another channel's file: shown in the web workspace
            header = t("desk.relay_header", STAFF, reference=case.reference)
            try:
                await send_file(self.bot, int(mediator.external_id), dict(event.data), header)
            except Exception as error:  # one lost file must not stop the others
                log.warning(
                    "evidence of %s not forwarded: %s", case.reference, type(error).__name__
                )

    async def _details(self, mediator: Mediator, reference: str) -> str:
        # The case's own mediator reads it in full (recorded); anyone else masked.
        view = await self.desk.details(reference, mediator, reveal=True, via="telegram")
        return render_case_text(
            view.case,
            view.events,
            STAFF,
            self.timezone,
            phone=view.phone,
            last_events=25,
            revealed=view.revealed,
        )

    async def _send_long(self, chat_id: int, text: str) -> None:
        for start in range(0, len(text), MESSAGE_LIMIT):
            await self.bot.send_message(chat_id=chat_id, text=text[start : start + MESSAGE_LIMIT])

    # ----------------------------------------------------------------- private messages

    async def on_private(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Mediators' commands and replies; everyone else falls through to the intake."""
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None:
            return
        text = clean_text(message.text or message.caption or "")
        command = re.match(r"^/([A-Za-z_]+)(?:@\w+)?\s*(.*)$", text, re.DOTALL)
        name = command.group(1).lower() if command else None
        args = command.group(2).strip() if command else ""
        mediator = await self._mediator(user.id)
        if mediator is None:
            if name not in COMMANDS or (name in SHARED_COMMANDS and not args):
                return  # a resident: the intake handles it
            log.warning("refused /%s from non-mediator %s", name, user.id)
            await message.reply_text(t("desk.not_mediator", STAFF))
            raise ApplicationHandlerStop
        if not await self._first_time(update):
            raise ApplicationHandlerStop
        if not mediator.active:
            log.warning("refused message from inactive mediator %s", mediator.id)
            answer: str | None = t("desk.inactive", STAFF)
        else:
            answer = await self._mediator_message(mediator, message, name, args)
        if answer:
            await self._send_long(message.chat_id, answer)
        raise ApplicationHandlerStop

    async def _mediator_message(
        self, mediator: Mediator, message: Any, name: str | None, args: str
    ) -> str | None:
        try:
            if name is None:
                return await self._reply_from_mediator(mediator, message)
            handler: Handler | None = (
                getattr(self, f"_cmd_{name}", None) if name in COMMANDS else None
            )
            if handler is None:
                return t("desk.help", STAFF)
            return await handler(mediator, args, message)
        except CaseNotFound as error:
            return t("desk.no_case", STAFF, reference=error.args[0] if error.args else "")
        except NotAllowed:
            log.warning("refused /%s by mediator %s", name, mediator.id)
            return t("desk.not_allowed", STAFF)
        except InvalidTransition as error:
            return t(
                "desk.invalid_transition",
                STAFF,
                error=f"{status_title(error.current)} → {status_title(error.wanted)}",
            )
        except CentreNotFound as error:
            return t("desk.no_centre", STAFF, code=error.code)

    async def _cmd_queue(self, mediator: Mediator, args: str, message: Any) -> str:
        async with self.store.sessions() as session:
            return _listing(await casework.queue(session, mediator), "queue")

    async def _cmd_mine(self, mediator: Mediator, args: str, message: Any) -> str:
        async with self.store.sessions() as session:
            return _listing(await casework.mine(session, mediator), "mine")

    async def _cmd_case(self, mediator: Mediator, args: str, message: Any) -> str:
        return await self._details(mediator, _need_reference(args))

    async def _cmd_note(self, mediator: Mediator, args: str, message: Any) -> str:
        reference, text = _reference_and_rest(args)
        if not text:
            return t("desk.usage_note", STAFF)
        await self.desk.note(reference, mediator, text)
        return t("desk.noted", STAFF, reference=reference)

    async def _cmd_status(self, mediator: Mediator, args: str, message: Any) -> str:
        reference, value = _reference_and_rest(args)
        if value not in {"in_mediation", "resolved", "withdrawn", "closed"}:
            return t("desk.usage_status", STAFF)
        await self.desk.set_status(reference, mediator, CaseStatus(value))
        return t("desk.status_set", STAFF, reference=reference, status=status_title(value))

    async def _cmd_outcome(self, mediator: Mediator, args: str, message: Any) -> str:
        reference, value = _reference_and_rest(args)
        if value not in {o.value for o in Outcome} or value == "withdrawn":
            return t("desk.usage_outcome", STAFF)
        await self.desk.set_outcome(reference, mediator, Outcome(value))
        return t(
            "desk.outcome_set",
            STAFF,
            reference=reference,
            outcome=t(f"desk.outcomes.{value}", STAFF),
        )

    async def _cmd_transfer(self, mediator: Mediator, args: str, message: Any) -> str:
        parts = args.split(maxsplit=2)
        if len(parts) < 3:
            return t("desk.usage_transfer", STAFF)
        reference, code, reason = _need_reference(parts[0]), parts[1], parts[2]
        case, target = await self.desk.transfer(reference, mediator, code, reason)
        return t("desk.transferred", STAFF, reference=case.reference, centre=target.name_zh)

    async def _cmd_release(self, mediator: Mediator, args: str, message: Any) -> str:
        case = await self.desk.release(_need_reference(args), mediator)
        return t("desk.released", STAFF, reference=case.reference)

    async def _cmd_kind(self, mediator: Mediator, args: str, message: Any) -> str:
        reference, kind = _reference_and_rest(args)
        if kind not in default_forms().by_category:
            return t("desk.usage_kind", STAFF, kinds=" ".join(default_forms().categories))
        await self.desk.recategorise(reference, mediator, kind)
        return t("desk.kind_set", STAFF, reference=reference, kind=kind_title(kind))

    async def _cmd_reply(self, mediator: Mediator, args: str, message: Any) -> str:
        reference, text = _reference_and_rest(args)
        if not text:
            return t("desk.usage_reply", STAFF)
        return await self._to_resident(mediator, reference, text=text)

    async def _reply_from_mediator(self, mediator: Mediator, message: Any) -> str | None:
        """A reply to a relayed message (text, photo or document) goes to the resident;
        a plain message goes to the mediator's only active case, if they have just one."""
        replied = message.reply_to_message
        source = (replied.text or replied.caption or "") if replied else ""
        found = REFERENCE.search(source)
        reference = found.group(1) if found else None
        if reference is None:
            async with self.store.sessions() as session:
                mine = [
                    c
                    for c in await casework.mine(session, mediator)
                    if c.status in casework.ACTIVE_STATUSES
                ]
            if len(mine) != 1:
                return t("desk.help", STAFF)
            reference = mine[0].reference
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
                "file_name": message.document.file_name,
            }
        text = clean_text(message.text or message.caption or "") or None
        return await self._to_resident(mediator, reference, text=text, attachment=attachment)

    async def _to_resident(
        self,
        mediator: Mediator,
        reference: str,
        *,
        text: str | None = None,
        attachment: dict[str, Any] | None = None,
    ) -> str:
        delivered = await self.desk.reply(reference, mediator, text, attachment)
        key = "desk.sent" if delivered else "desk.not_delivered"
        return t(key, STAFF, reference=reference)


# -------------------------------------------------------------------------- rendering


def _listing(cases: list[Case], name: str) -> str:
    """/queue and /mine: a title and one line per case, or a friendly "none"."""
    if not cases:
        return t(f"desk.{name}_empty", STAFF)
    return "\n".join([t(f"desk.{name}_title", STAFF)] + [_line(c) for c in cases])


def _line(case: Case) -> str:
    return (
        f"{case.reference} {kind_title(case.category)} "
        f"{t(f'desk.risk.{case.risk_level.value}', STAFF)} "
        f"{case.street or '-'} {status_title(case.status.value)}"
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
