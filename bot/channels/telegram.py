"""Telegram, through python-telegram-bot v22: residents' private chats with the bot.

One handler per kind of content turns a Telegram update into an engine event and sends
the engine's replies back. Polling when no webhook URL is configured; otherwise our own
aiohttp server receives Telegram's POSTs, refuses any without the right secret header,
and feeds the rest to the same handlers. Outgoing calls go through PTB's rate limiter so
a burst of replies never trips Telegram's flood limits.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from telegram import (
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from yarl import URL

from actions.desk import DeskService
from actions.leadership import Leadership
from actions.ports import ResidentPorts
from bot.channels.sanitise import clean_text
from bot.channels.telegram_desk import TelegramDesk
from bot.channels.telegram_metrics import metered_requests
from bot.channels.telegram_ports import (
    TelegramCardTarget,
    TelegramResidentPort,
    TelegramStaffPort,
    reply_markup,
)
from bot.channels.text_input import COMMAND, PAYLOAD
from bot.dialogue.model import (
    AttachmentEvent,
    ButtonEvent,
    CommandEvent,
    ContactEvent,
    Event,
    LocationEvent,
    Reply,
    TextEvent,
    UnsupportedEvent,
)
from bot.http_errors import BadBody, error_response, read_json
from bot.i18n import normalise_language, t
from bot.intake_service import IntakeService, Sender
from bot.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFAULT_WEBHOOK_PATH = "/webhooks/telegram"
PRIVATE = filters.ChatType.PRIVATE

SERVICE_KEY = "intake_service"


def webhook_path(settings: Settings) -> str:
    if not settings.telegram_webhook_url:
        return DEFAULT_WEBHOOK_PATH
    return URL(settings.telegram_webhook_url).path or DEFAULT_WEBHOOK_PATH


def _service(context: ContextTypes.DEFAULT_TYPE) -> IntakeService:
    return context.application.bot_data[SERVICE_KEY]


def _sender(update: Update) -> Sender:
    chat = update.effective_chat
    user = update.effective_user
    assert chat is not None
    return Sender(CHANNEL, str(chat.id), str(user.id if user else chat.id))


def _language(update: Update) -> str:
    user = update.effective_user
    return normalise_language(user.language_code if user else None)


# ------------------------------------------------------------------------- replies


async def send_replies(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int, replies: list[Reply], language: str
) -> None:
    """Send replies as HTML-escaped text; drop a stale share-contact keyboard once."""
    chat_data = context.chat_data if context.chat_data is not None else {}
    for reply in replies:
        markup: object = reply_markup(reply, language)
        if markup is None and chat_data.get("keyboard"):
            markup = ReplyKeyboardRemove()
            chat_data["keyboard"] = False
        if isinstance(markup, ReplyKeyboardMarkup):
            chat_data["keyboard"] = True
        await context.bot.send_message(
            chat_id=chat_id,
            text=html.escape(reply.text),
            parse_mode=ParseMode.HTML,
            reply_markup=markup,  # type: ignore[arg-type]
        )


async def _run(update: Update, context: ContextTypes.DEFAULT_TYPE, event: Event) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    replies = await _service(context).handle(_sender(update), event, update.update_id)
    await send_replies(context, chat.id, replies, _language(update))


# ------------------------------------------------------------------------ handlers


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Typed text, including commands (kept as commands, not parsed as words)."""
    message = update.effective_message
    if message is None or message.text is None:
        return
    # Polling delivers what Telegram's JSON held: NUL and lone surrogates are cleaned
    # here as on every other edge, so they can never block a later save.
    text = clean_text(message.text)
    command = COMMAND.match(text.strip())
    event: Event
    if command:
        event = CommandEvent(command.group(1).lower(), (command.group(2) or "").strip())
    else:
        event = TextEvent(text)
    await _run(update, context, event)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A pressed inline button of a resident's conversation. Callback data is checked,
    never trusted, and only presses in a private chat reach the intake: a press in a
    centre's group (an old card, a forged button) must never start a conversation there.
    The pressed keyboard is removed, so an answered question cannot be answered again
    from an old message (a rating overwritten, a kind chosen twice)."""
    query = update.callback_query
    if query is None:
        return
    data = query.data or ""
    chat = update.effective_chat
    if not PAYLOAD.match(data) or chat is None or chat.type != ChatType.PRIVATE:
        log.warning("refused callback data from user %s", query.from_user.id)
        await query.answer(t("telegram.bad_button", _language(update)))
        return
    await query.answer()
    with contextlib.suppress(TelegramError):
        await query.edit_message_reply_markup(reply_markup=None)
    await _run(update, context, ButtonEvent(data))


async def on_contact(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None or message.contact is None:
        return
    user = update.effective_user
    own = user is not None and message.contact.user_id == user.id
    await _run(update, context, ContactEvent(message.contact.phone_number, own))


async def on_location(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None or message.location is None:
        return
    location = message.location
    await _run(update, context, LocationEvent(location.latitude, location.longitude))


async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None or not message.photo:
        return
    largest = message.photo[-1]
    await _run(
        update, context, AttachmentEvent("photo", largest.file_id, largest.file_size, "image/jpeg")
    )


async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None or message.document is None:
        return
    document = message.document
    event = AttachmentEvent(
        "document", document.file_id, document.file_size, document.mime_type, document.file_name
    )
    await _run(update, context, event)


async def on_unsupported(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, voice, video, polls, edits …: a polite "please type", nothing lost."""
    message = update.effective_message
    kind = "edit" if update.edited_message else "other"
    if message is not None:
        for name in ("sticker", "voice", "video", "video_note", "audio", "animation", "poll"):
            if getattr(message, name, None):
                kind = name
                break
    await _run(update, context, UnsupportedEvent(kind))


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """One place that logs every handler failure with its update id (never the words)."""
    update_id = update.update_id if isinstance(update, Update) else None
    error = context.error
    log.error("telegram update %s failed: %s", update_id, type(error).__name__)
    log.debug("handler failure", exc_info=error)


def add_handlers(application: Application) -> None:  # type: ignore[type-arg]
    application.add_error_handler(on_error)
    application.add_handler(CallbackQueryHandler(on_button))
    application.add_handler(MessageHandler(PRIVATE & filters.UpdateType.EDITED, on_unsupported))
    application.add_handler(MessageHandler(PRIVATE & filters.TEXT, on_text))
    application.add_handler(MessageHandler(PRIVATE & filters.CONTACT, on_contact))
    application.add_handler(MessageHandler(PRIVATE & filters.LOCATION, on_location))
    application.add_handler(MessageHandler(PRIVATE & filters.PHOTO, on_photo))
    application.add_handler(MessageHandler(PRIVATE & filters.Document.ALL, on_document))
    application.add_handler(MessageHandler(PRIVATE, on_unsupported))


def build_application(settings: Settings, service: IntakeService) -> Application:  # type: ignore[type-arg]
    """The PTB application: our base URL, the rate limiter, one handler per content kind."""
    assert settings.telegram_bot_token is not None
    calls, polling = metered_requests()  # every Bot API answer counted (issue 16)
    builder: ApplicationBuilder = (  # type: ignore[type-arg]
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_base_url)
        .request(calls)
        .get_updates_request(polling)
        .rate_limiter(AIORateLimiter(max_retries=3))
        # Different chats in parallel; one chat's updates stay in order (IntakeService lock).
        .concurrent_updates(8)
    )
    if settings.telegram_base_file_url:
        builder = builder.base_file_url(settings.telegram_base_file_url)
    if settings.telegram_webhook_url:
        builder = builder.updater(None)
    application = builder.build()
    application.bot_data[SERVICE_KEY] = service
    add_handlers(application)
    return application


# ---------------------------------------------------------------- webhook and life


TELEGRAM = web.AppKey("telegram", Application)
TELEGRAM_SETTINGS = web.AppKey("telegram_settings", Settings)
DESK = web.AppKey("desk", object)


#: Largest update id accepted: Telegram's are far smaller; beyond this JSON numbers and
#: our BIGINT column stop being exact, and such an update could never be recorded.
MAX_UPDATE_ID = 2**53


def _update_from(data: object, bot: object) -> Update:
    """The update in Telegram's webhook body, or :class:`BadBody` (400) saying why.

    Checked before PTB sees it: an object, a whole ``update_id`` in range, and at least
    one update field that is an object, so ``[]``, ``null``, ``{"message": "x"}`` or an
    id of 10^30 are refused up front instead of being accepted and dropped.
    """
    if not isinstance(data, dict):
        raise BadBody("not_update")
    update_id = data.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int):
        raise BadBody("not_update")
    if not 0 <= update_id <= MAX_UPDATE_ID:
        raise BadBody("bad_update_id")
    if not any(isinstance(v, dict) for k, v in data.items() if k != "update_id"):
        raise BadBody("not_update")
    try:
        update = Update.de_json(data, bot)  # type: ignore[arg-type]
    except Exception:  # PTB's de_json raises whatever a malformed field provokes
        raise BadBody("not_update") from None
    if update is None:
        raise BadBody("not_update")
    return update


async def telegram_webhook(request: web.Request) -> web.Response:
    """Telegram's POST: answered 200 only once the update has been handled.

    Anything without the configured secret is refused with 403; a body that is not an
    update gets a 4xx (Telegram does not resend those). The update is processed while
    Telegram waits, so a crash before the answer makes Telegram deliver it again, and
    the store's processed-update ids keep the redelivery from being handled twice.
    Text in the body is cleaned of NUL and lone surrogates first (see
    :mod:`bot.channels.sanitise`).
    """
    settings = request.app[TELEGRAM_SETTINGS]
    expected = settings.telegram_webhook_secret
    given = request.headers.get(SECRET_HEADER, "")
    if expected is None or not hmac.compare_digest(
        given.encode("utf-8", "replace"), expected.get_secret_value().encode()
    ):
        log.warning("refused webhook call without the right secret from %s", request.remote)
        return error_response("bad_secret", 403)
    application = request.app[TELEGRAM]
    update = _update_from(await read_json(request), application.bot)
    await application.process_update(update)
    return web.Response(text="ok")


def add_telegram(
    app: web.Application,
    settings: Settings,
    service: IntakeService,
    desk_service: DeskService,
    ports: ResidentPorts,
    leadership: Leadership | None = None,
) -> None:
    """Run the bot inside our aiohttp app: polling, or webhook on our own route.

    With a ``leadership``, only the leading worker polls (two pollers of one bot get
    409 Conflict from Telegram); a new leader starts polling when elected. Every worker
    can send and take webhook deliveries.

    Registers Telegram's output ports (residents' chats, centre groups, mediators'
    chats) with the desk service, and the mediators' handlers.
    """
    application = build_application(settings, service)
    ports.register(TelegramResidentPort(application.bot))
    desk_service.add_card_target(TelegramCardTarget(application.bot, service.store))
    desk_service.add_staff_port(TelegramStaffPort(application.bot))
    desk = TelegramDesk(application, desk_service, service.store, settings.timezone)
    desk.add_handlers()
    app[TELEGRAM] = application
    app[DESK] = desk
    app[TELEGRAM_SETTINGS] = settings
    if settings.telegram_webhook_url:
        app.router.add_post(webhook_path(settings), telegram_webhook)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await application.initialize()
        await application.start()
        if settings.telegram_webhook_url:
            assert settings.telegram_webhook_secret is not None
            await application.bot.set_webhook(
                settings.telegram_webhook_url,
                secret_token=settings.telegram_webhook_secret.get_secret_value(),
                allowed_updates=Update.ALL_TYPES,
            )
        elif leadership is None:
            await start_polling()
        log.info("telegram started (%s)", "webhook" if settings.telegram_webhook_url else "polling")
        yield
        await stop_polling()
        await application.stop()
        await application.shutdown()

    async def start_polling() -> None:
        if application.updater is not None and not application.updater.running:
            await application.updater.start_polling(allowed_updates=Update.ALL_TYPES)

    async def stop_polling() -> None:
        if application.updater is not None and application.updater.running:
            await application.updater.stop()

    if leadership is not None and not settings.telegram_webhook_url:
        leadership.on_elected(start_polling)
        leadership.on_deposed(stop_polling)

    app.cleanup_ctx.append(lifecycle)
