"""Telegram's implementations of the output ports (actions/ports.py).

- :class:`TelegramResidentPort`: replies to a resident's private chat with the bot
  (inline keyboards for buttons, photos and documents with their caption);
- :class:`TelegramCardTarget`: case cards in a centre's group or forum topic, edited
  in place as the case moves on;
- :class:`TelegramStaffPort`: a mediator's private chat with the bot.

Only rendering lives here: what to say and to whom is decided by actions/desk.py.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from typing import Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError

from actions.cards import danger_names
from actions.ports import CaseCard, DeliveryError
from bot.dialogue.model import Reply
from bot.i18n import t
from bot.runtime import Store
from storage.directory import any_telegram_group, get_centre

log = logging.getLogger(__name__)

CHANNEL = "telegram"
STAFF_LANGUAGE = "zh"
#: Telegram's caption limit; longer text goes as a message after the file.
CAPTION_LIMIT = 1024


def _esc(text: object) -> str:
    return html.escape(str(text))


def _failure(error: TelegramError) -> DeliveryError:
    """Forbidden (bot blocked) and BadRequest (no such chat) will not pass by retrying."""
    permanent = isinstance(error, Forbidden | BadRequest)
    return DeliveryError(f"{type(error).__name__}: {error}", permanent=permanent)


def reply_markup(reply: Reply, language: str) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
    """Buttons as an inline keyboard; a contact/location request as a reply keyboard."""
    if reply.buttons:
        return InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(b.title, callback_data=b.payload) for b in row]
                for row in reply.buttons
            ]
        )
    if reply.request in ("contact", "location"):
        key = f"dialogue.share_{reply.request}_button"
        button = KeyboardButton(
            t(key, language),
            request_contact=reply.request == "contact",
            request_location=reply.request == "location",
        )
        return ReplyKeyboardMarkup([[button]], resize_keyboard=True, one_time_keyboard=True)
    return None


async def send_file(
    bot: Bot, chat_id: int, attachment: dict[str, Any], caption: str, markup: Any = None
) -> Message:
    """A photo or document by its Telegram file id, with as much caption as fits."""
    short = caption[:CAPTION_LIMIT]
    if attachment.get("kind") == "photo":
        message = await bot.send_photo(
            chat_id=chat_id, photo=attachment["file_id"], caption=short, reply_markup=markup
        )
    else:
        message = await bot.send_document(
            chat_id=chat_id, document=attachment["file_id"], caption=short, reply_markup=markup
        )
    if len(caption) > CAPTION_LIMIT:
        await bot.send_message(chat_id=chat_id, text=caption[CAPTION_LIMIT:])
    return message


def _is_telegram_file(attachment: dict[str, Any] | None) -> bool:
    """Files from other channels (``wechat:…``, ``local:…``) cannot be sent by id."""
    return bool(attachment) and ":" not in str((attachment or {}).get("file_id", ":"))


class TelegramResidentPort:
    """Replies to residents in their private chat with the bot."""

    channel = CHANNEL

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, chat_id: str, replies: Sequence[Reply], *, language: str) -> None:
        try:
            target = int(chat_id)
        except ValueError:
            raise DeliveryError(f"not a Telegram chat id: {chat_id[:40]}", permanent=True) from None
        try:
            for reply in replies:
                markup = reply_markup(reply, language)
                if _is_telegram_file(reply.attachment):
                    await send_file(self.bot, target, reply.attachment or {}, reply.text, markup)
                else:
                    await self.bot.send_message(
                        chat_id=target,
                        text=_esc(reply.text),
                        parse_mode=ParseMode.HTML,
                        reply_markup=markup,
                    )
        except TelegramError as error:
            raise _failure(error) from error


# ------------------------------------------------------------------------- case cards


def card_text(card: CaseCard) -> str:
    """The card as Telegram HTML: what, how urgent, where, how to reach, who has it."""
    lines = [
        f"<b>{_esc(card.reference)}</b>  {_esc(card.kind_title)}  {_esc(card.risk_badge)}",
        f"📍 {_esc(card.place)}   ☎ {_esc(card.phone_masked)}",
    ]
    if card.danger:
        lines.append(_esc(t("desk.card_danger", STAFF_LANGUAGE, danger=danger_names(card.danger))))
    if card.trigger:
        lines.append(_esc(t("desk.card_trigger", STAFF_LANGUAGE, words=card.trigger)))
    lines.append(_esc(card.summary))
    if card.holder:
        lines.append(_esc(t("desk.card_holder", STAFF_LANGUAGE, alias=card.holder)))
    if card.acknowledged_by:
        lines.append(_esc(t("desk.acknowledged", STAFF_LANGUAGE, alias=card.acknowledged_by)))
    if card.status not in ("new", "claimed", "in_mediation"):
        status = t(f"dialogue.status_names.{card.status}", STAFF_LANGUAGE)
        lines.append(_esc(t("desk.card_closed", STAFF_LANGUAGE, status=status)))
    return "\n".join(lines)


def card_buttons(card: CaseCard) -> InlineKeyboardMarkup:
    """Claim while nobody has it; details always; "I'm on it" while an emergency waits."""
    row = []
    if card.claimable:
        row.append(
            InlineKeyboardButton(
                t("desk.claim", STAFF_LANGUAGE), callback_data=f"claim:{card.reference}"
            )
        )
    row.append(
        InlineKeyboardButton(
            t("desk.details", STAFF_LANGUAGE), callback_data=f"details:{card.reference}"
        )
    )
    rows = [row]
    if card.urgent and card.trigger and not card.acknowledged_by:
        rows.append(
            [
                InlineKeyboardButton(
                    t("desk.acknowledge", STAFF_LANGUAGE), callback_data=f"ack:{card.reference}"
                )
            ]
        )
    return InlineKeyboardMarkup(rows)


class TelegramCardTarget:
    """Cards in each centre's Telegram group (``telegram_chat_id`` in the directory)."""

    name = CHANNEL

    def __init__(self, bot: Bot, store: Store) -> None:
        self.bot = bot
        self.store = store

    async def reaches_any(self) -> bool:
        """Whether any centre has a group to post in (see :class:`actions.ports.CardTarget`)."""
        async with self.store.sessions() as session:
            return await any_telegram_group(session)

    async def post(self, centre_code: str, card: CaseCard) -> dict[str, Any] | None:
        async with self.store.sessions() as session:
            centre = await get_centre(session, centre_code)
        if centre is None or centre.telegram_chat_id is None:
            return None
        try:
            message = await self.bot.send_message(
                chat_id=centre.telegram_chat_id,
                message_thread_id=centre.telegram_thread_id,
                text=card_text(card),
                parse_mode=ParseMode.HTML,
                reply_markup=card_buttons(card),
            )
        except TelegramError as error:
            raise _failure(error) from error
        return {"chat_id": centre.telegram_chat_id, "message_id": message.message_id}

    async def update(self, posted: dict[str, Any], card: CaseCard) -> None:
        if "chat_id" not in posted or "message_id" not in posted:
            return
        try:
            await self.bot.edit_message_text(
                chat_id=posted["chat_id"],
                message_id=posted["message_id"],
                text=card_text(card),
                parse_mode=ParseMode.HTML,
                reply_markup=card_buttons(card),
            )
        except BadRequest as error:
            if "not modified" in str(error).lower():
                return
            raise _failure(error) from error
        except TelegramError as error:
            raise _failure(error) from error


class TelegramStaffPort:
    """A mediator's private chat with the bot."""

    name = CHANNEL

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def notify(
        self,
        staff_key: tuple[str, str],
        text: str,
        *,
        reference: str | None = None,
        attachment: dict[str, Any] | None = None,
        buttons: Sequence[tuple[str, str]] = (),
    ) -> bool:
        channel, external_id = staff_key
        if channel != CHANNEL:
            return False
        try:
            chat_id = int(external_id)
        except ValueError:
            return False
        markup = (
            InlineKeyboardMarkup(
                [[InlineKeyboardButton(title, callback_data=data) for title, data in buttons]]
            )
            if buttons
            else None
        )
        try:
            if _is_telegram_file(attachment):
                await send_file(self.bot, chat_id, attachment or {}, text, markup)
            else:
                await self.bot.send_message(chat_id=chat_id, text=text, reply_markup=markup)
        except TelegramError as error:
            raise _failure(error) from error
        return True


def telegram_file_fetcher(bot: Bot) -> Any:
    """Bytes of a Telegram file by its id, for the web workspace's evidence route (the
    file never gets a public URL: the workspace serves it to authorised staff only)."""

    async def fetch(file_id: str) -> bytes | None:
        try:
            remote = await bot.get_file(file_id)
            return bytes(await remote.download_as_bytearray())
        except TelegramError as error:
            log.warning("telegram file not fetched: %s", type(error).__name__)
            return None

    return fetch
