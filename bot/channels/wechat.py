"""WeChat Official Account (公众号): residents write to the district's account.

WeChat posts each message to ``POST /webhooks/wechat`` as signed XML (AES-encrypted in
safe mode) and waits 5 seconds for an answer; without one it posts the same message
again, three times in all. So:

- every request's signature is checked with wechatpy before anything else (403 and
  nothing processed otherwise); in safe mode the ``msg_signature`` and the AES envelope
  are checked and opened with :class:`wechatpy.crypto.WeChatCrypto`;
- a message becomes one engine event and goes to the intake service with its delivery
  id (``MsgId``, or a hash of sender and time for events), which the service records in
  the same transaction as the event's effects: a retry is never handled twice, even by
  another process. In this process a retry arriving while the first is still running
  waits for the same work instead of starting its own;
- the first reply is answered passively (XML in the HTTP answer) when it is ready within
  ~4 s; otherwise WeChat gets ``success`` and every reply goes through the
  customer-service API. Passive replies cannot carry buttons, so choices are shown as
  numbered lines ("回复 1 …"); customer-service replies use tappable ``msgmenu``
  choices. Either way the payloads offered last are kept per resident, so "1", a tapped
  choice or the choice's text all come back as the button.

:class:`WeChatPort` reaches a resident later (a mediator's reply, a status change, a
rating request): by customer-service message inside WeChat's 48-hour window after the
resident last wrote, by the configured template message outside it, and otherwise
raises ``DeliveryError(permanent=True)`` so the case records that they could not be
reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError
from zoneinfo import ZoneInfo

import xmltodict
from aiohttp import web
from sqlalchemy import select
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from actions.ports import DeliveryError, ResidentPorts
from bot.channels.text_input import text_to_event
from bot.channels.wechat_api import OUT_OF_WINDOW, WeChatApi, WeChatApiError
from bot.dialogue.engine import MAX_ATTACHMENT_BYTES, detect_language
from bot.dialogue.model import (
    AttachmentEvent,
    ButtonEvent,
    CommandEvent,
    Event,
    LocationEvent,
    Reply,
    TextEvent,
    UnsupportedEvent,
)
from bot.i18n import t
from bot.intake_service import IntakeService, Sender
from bot.runtime import Store
from bot.settings import Settings
from storage.cases import Actor, add_event
from storage.models import Case, utcnow
from storage.wechat import get_contact, mark_unsubscribed, remember_options, touch_contact

log = logging.getLogger(__name__)

CHANNEL = "wechat"
PATH = "/webhooks/wechat"
#: WeChat gives up on an answer after 5 s; keep a margin for the network.
PASSIVE_SECONDS = 4.0
#: A passive reply holds at most 2048 bytes of text; longer ones go by API.
PASSIVE_MAX_BYTES = 2000
#: WeChat retries within ~15 s; the answer is remembered a little longer than that.
KEEP_SECONDS = 30.0
#: Largest image kept as evidence: the engine's limit for any attachment.
MAX_IMAGE_BYTES = MAX_ATTACHMENT_BYTES
#: Customer-service messages are allowed for 48 h after the resident last wrote.
WINDOW = timedelta(hours=48)
#: Stop using the window a little early: a message in flight must not arrive late.
WINDOW_MARGIN = timedelta(minutes=5)
#: Menu keys (bot/wechat_menu.yml) that are commands of the engine.
MENU_COMMANDS = frozenset({"start", "status", "human", "help", "new", "cancel"})
SUCCESS = "success"


def delivery_id(message: BaseMessage, raw: dict[str, Any]) -> int:
    """The id a retry of ``message`` shares: ``MsgId``, or for events (which have none)
    a hash of sender and time (plus the event and its key, identical in a retry, so two
    menu taps within one second stay two), folded into the store's signed 64-bit column."""
    msg_id = int(message.id or 0)
    if message.type != "event" and 0 < msg_id < 2**63:
        return msg_id
    seed = "|".join(
        str(raw.get(name) or "")
        for name in ("FromUserName", "CreateTime", "MsgType", "Event", "EventKey", "MsgId")
    )
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") >> 1


# ------------------------------------------------------------------ saying things


def _numbered(reply: Reply, language: str) -> str:
    """A reply as plain text: its choices as numbered lines, hints for requests."""
    lines = [reply.text]
    options = [b for row in reply.buttons for b in row]
    if options:
        lines.append("")
        lines.extend(
            t("wechat.option_line", language, number=n, title=b.title)
            for n, b in enumerate(options, 1)
        )
    if reply.request is not None:
        lines.append(t(f"wechat.request_{reply.request}", language))
    return "\n".join(lines)


def _payloads(replies: Sequence[Reply]) -> list[str]:
    """The choices the resident can answer by number: those of the last reply offering any."""
    for reply in reversed(replies):
        payloads = [b.payload for row in reply.buttons for b in row]
        if payloads:
            return payloads
    return []


async def push_replies(
    api: WeChatApi,
    store: Store,
    openid: str,
    replies: Sequence[Reply],
    language: str,
    *,
    offered: Sequence[Reply] | None = None,
    remember: bool = True,
) -> None:
    """Send replies as customer-service messages: choices as a tappable ``msgmenu``.

    ``offered``: all replies of the turn when some went passively already, so the
    numbers remembered are those of the last choices the resident saw. ``remember``
    False keeps the numbers of an intake in progress (a mediator's plain message).
    """
    for reply in replies:
        options = [b for row in reply.buttons for b in row]
        if options:
            head = reply.text
            if reply.request is not None:
                head += "\n" + t(f"wechat.request_{reply.request}", language)
            items = [(str(n), b.title) for n, b in enumerate(options, 1)]
            await api.send_menu(openid, head, items, t("wechat.menu_tail", language))
        else:
            await api.send_text(openid, _numbered(reply, language))
    if remember:
        async with store.sessions.begin() as session:
            await remember_options(session, openid, _payloads(offered or replies))


def _language(replies: Sequence[Reply], default: str) -> str:
    text = " ".join(r.text for r in replies)
    return detect_language(text) if text.strip() else default


# -------------------------------------------------------------------- the channel


@dataclass(slots=True)
class _Pending:
    """One delivery being handled; retries of it wait on ``task``. ``mode`` says who
    answers: the first request passively, or the customer-service API."""

    task: asyncio.Task[list[Reply]]
    mode: str | None = None
    waiters: int = field(default=0)


class WeChatChannel:
    """Turns WeChat's posts into engine events and the engine's replies into answers."""

    def __init__(
        self,
        settings: Settings,
        service: IntakeService,
        api: WeChatApi,
        *,
        clock: Callable[[], datetime] = utcnow,
        passive_seconds: float = PASSIVE_SECONDS,
    ) -> None:
        assert settings.wechat_token is not None and settings.wechat_app_id is not None
        self.token = settings.wechat_token.get_secret_value()
        aes_key = settings.wechat_aes_key
        self.crypto = (
            WeChatCrypto(self.token, aes_key.get_secret_value(), settings.wechat_app_id)
            if aes_key is not None
            else None
        )
        self.service = service
        self.store = service.store
        self.api = api
        self.clock = clock
        self.language = settings.language
        self.passive_seconds = passive_seconds
        self.evidence_dir = Path(settings.data_dir) / "evidence"
        self._pending: dict[int, _Pending] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- HTTP side

    def _signed(self, request: web.Request) -> bool:
        query = request.query
        try:
            check_signature(self.token, query["signature"], query["timestamp"], query["nonce"])
        except (KeyError, InvalidSignatureException):
            return False
        return True

    async def verify(self, request: web.Request) -> web.Response:
        """WeChat's server check when the URL is saved in the console: echo ``echostr``."""
        if not self._signed(request):
            log.warning("refused wechat verification with a bad signature from %s", request.remote)
            return web.Response(status=403, text="forbidden")
        return web.Response(text=request.query.get("echostr", ""))

    async def receive(self, request: web.Request) -> web.Response:
        if not self._signed(request):
            log.warning("refused wechat post with a bad signature from %s", request.remote)
            return web.Response(status=403, text="forbidden")
        body = await request.read()
        query = request.query
        if self.crypto is not None:
            if query.get("encrypt_type") != "aes" or "msg_signature" not in query:
                log.warning("refused unencrypted wechat post in safe mode from %s", request.remote)
                return web.Response(status=403, text="forbidden")
            try:
                xml = self.crypto.decrypt_message(
                    body, query["msg_signature"], query["timestamp"], query["nonce"]
                )
            except InvalidSignatureException:
                log.warning("refused wechat post with a bad msg_signature from %s", request.remote)
                return web.Response(status=403, text="forbidden")
            except (InvalidAppIdException, ExpatError, KeyError, ValueError, TypeError):
                return web.Response(status=400, text="bad message")
        else:
            xml = body.decode("utf-8", errors="replace")
        try:
            raw = xmltodict.parse(xml)["xml"]
            message = parse_message(xml)
            if message is None or not raw.get("FromUserName"):
                raise ValueError("empty")
        except (ExpatError, KeyError, ValueError, TypeError, AttributeError):
            return web.Response(status=400, text="bad message")
        key = delivery_id(message, raw)
        pending = self._pending.get(key)
        if pending is None:
            pending = _Pending(asyncio.create_task(self._process(message, dict(raw), key)))
            self._pending[key] = pending
            loop = asyncio.get_running_loop()
            pending.task.add_done_callback(
                lambda _task: loop.call_later(KEEP_SECONDS, self._pending.pop, key, None)
            )
        return await self._answer(pending, message, query)

    async def _answer(self, pending: _Pending, message: BaseMessage, query: Any) -> web.Response:
        """Passive reply if the work finished in time and nobody answered yet; else ``success``."""
        try:
            replies = await asyncio.wait_for(asyncio.shield(pending.task), self.passive_seconds)
        except TimeoutError:
            self._push_later(pending, message.source)
            return web.Response(text=SUCCESS)
        except asyncio.CancelledError:
            self._push_later(pending, message.source)
            raise
        except Exception:  # already logged by _process
            return web.Response(text=SUCCESS)
        if pending.mode is not None or not replies:
            return web.Response(text=SUCCESS)
        language = _language(replies, self.language)
        text = _numbered(replies[0], language)
        if len(text.encode("utf-8")) > PASSIVE_MAX_BYTES:
            self._push_later(pending, message.source)
            return web.Response(text=SUCCESS)
        pending.mode = "passive"
        if len(replies) > 1:
            self._spawn(self._push(message.source, replies[1:], language, offered=replies))
        else:
            self._spawn(self._remember(message.source, replies))
        xml = TextReply(message=message, content=text).render()
        if self.crypto is not None:
            xml = self.crypto.encrypt_message(xml, query["nonce"], query["timestamp"])
        return web.Response(text=xml, content_type="application/xml")

    def _push_later(self, pending: _Pending, openid: str) -> None:
        """Nobody answered passively: when the work is done, every reply goes by API."""
        if pending.mode is not None:
            return
        pending.mode = "push"

        async def push() -> None:
            try:
                replies = await pending.task
            except Exception:
                return
            if replies:
                await self._push(openid, replies, _language(replies, self.language))

        self._spawn(push())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for every reply still being pushed (shutdown, tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _remember(self, openid: str, replies: Sequence[Reply]) -> None:
        async with self.store.sessions.begin() as session:
            await remember_options(session, openid, _payloads(replies))

    async def _push(
        self,
        openid: str,
        replies: Sequence[Reply],
        language: str,
        *,
        offered: Sequence[Reply] | None = None,
    ) -> None:
        """Replies by customer-service API; a failure is logged and put on the case."""
        try:
            await push_replies(self.api, self.store, openid, replies, language, offered=offered)
        except WeChatApiError as error:
            log.warning("wechat replies to %s not delivered: %s", openid, error)
            await self._record_failure(openid, error)
            # The numbers the resident may type must still mean what was last offered.
            with contextlib.suppress(Exception):
                await self._remember(openid, offered or replies)

    async def _record_failure(self, openid: str, error: WeChatApiError) -> None:
        """The resident's words are stored already; the case shows that our answer was lost."""
        try:
            async with self.store.sessions.begin() as session:
                case = (
                    await session.execute(
                        select(Case)
                        .where(Case.channel == CHANNEL, Case.chat_id == openid)
                        .order_by(Case.id.desc())
                        .limit(1)
                    )
                ).scalar_one_or_none()
                if case is not None:
                    data = {
                        "reason": f"wechat errcode {error.errcode}",
                        "permanent": error.permanent,
                        "channel": CHANNEL,
                    }
                    await add_event(session, case, "delivery_failed", Actor.system(), data)
        except Exception as failure:
            log.warning("could not record the delivery failure: %s", type(failure).__name__)

    # ----------------------------------------------------------- message to event

    async def _process(self, message: BaseMessage, raw: dict[str, Any], key: int) -> list[Reply]:
        openid = str(message.source)
        try:
            now = self.clock()
            if message.type == "event" and message.event == "unsubscribe":
                async with self.store.sessions.begin() as session:
                    await mark_unsubscribed(session, openid, now)
                log.info("wechat resident %s unfollowed", openid)
                return []
            async with self.store.sessions.begin() as session:
                await touch_contact(session, openid, now)
                contact = await get_contact(session, openid)
                options = list(contact.options or []) if contact is not None else []
            event = await self._event(message, raw, options)
            if event is None:
                return []
            if isinstance(event, list):
                return event
            return await self.service.handle(Sender(CHANNEL, openid, openid), event, key)
        except Exception:
            log.exception("wechat message %s of %s could not be handled", key, openid)
            raise

    async def _event(
        self, message: BaseMessage, raw: dict[str, Any], options: list[str]
    ) -> Event | list[Reply] | None:
        """The engine event for a message; a list is a direct answer; None: nothing to do."""
        kind = message.type
        if kind == "text":
            return self._text_event(str(message.content or ""), raw.get("bizmsgmenuid"), options)
        if kind == "image":
            return await self._image_event(str(message.media_id))
        if kind == "voice":
            words = (message.recognition or "").strip()
            if words:
                return TextEvent(words)
            return [Reply(t("wechat.voice_type_please", self.language))]
        if kind == "location":
            try:
                return LocationEvent(float(message.location_x), float(message.location_y))
            except (TypeError, ValueError):
                return UnsupportedEvent("location")
        if kind == "event":
            name = str(message.event or "").lower()
            if name in ("subscribe", "subscribe_scan"):
                return CommandEvent("start")
            if name == "click":
                command = str(message.key or "").strip().lower()
                return CommandEvent(command) if command in MENU_COMMANDS else None
            return None  # view, scan, template delivery reports …: nothing to answer
        return UnsupportedEvent(kind)

    @staticmethod
    def _text_event(content: str, menu_id: Any, options: list[str]) -> Event:
        """A tapped ``msgmenu`` choice or a typed number is the option's button."""
        if isinstance(menu_id, str) and menu_id.isdigit() and 1 <= int(menu_id) <= len(options):
            return ButtonEvent(options[int(menu_id) - 1])
        typed = unicodedata.normalize("NFKC", content).strip()
        if typed.isdigit() and options and 1 <= int(typed) <= len(options):
            return ButtonEvent(options[int(typed) - 1])
        return text_to_event(content)

    async def _image_event(self, media_id: str) -> Event | list[Reply]:
        """Download the photo now (WeChat keeps media 3 days) and keep it as evidence."""
        try:
            got = await self.api.download_media(media_id, MAX_IMAGE_BYTES)
        except WeChatApiError as error:
            # Not lost: the media id can still be fetched for three days.
            log.warning("wechat media download failed: %s", error)
            return AttachmentEvent("photo", f"wechat-media:{media_id}", None, "image/jpeg")
        if got is None:
            mb = MAX_IMAGE_BYTES // (1024 * 1024)
            return [Reply(t("wechat.image_too_large", self.language, limit=mb))]
        data, mime_type = got
        digest = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(_keep, self.evidence_dir, digest, data)
        return AttachmentEvent("photo", f"wechat:{digest}", len(data), mime_type)


def _keep(folder: Path, digest: str, data: bytes) -> None:
    """Evidence is stored once by content hash, written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / digest
    if target.exists():
        return
    partial = folder / f".{digest}.part"
    partial.write_bytes(data)
    partial.replace(target)


def evidence_path(settings: Settings, file_id: str) -> Path | None:
    """Where the bytes of a ``wechat:<sha256>`` evidence file id are (for the workspace)."""
    if not file_id.startswith("wechat:"):
        return None
    digest = file_id.removeprefix("wechat:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    path = Path(settings.data_dir) / "evidence" / digest
    return path if path.exists() else None


# ------------------------------------------------------------------ the port


class WeChatPort:
    """Reaches a resident on WeChat later: customer-service message inside the 48 h
    window, template message outside it, :class:`DeliveryError` when neither can."""

    channel = CHANNEL

    def __init__(
        self,
        api: WeChatApi,
        store: Store,
        *,
        template_id: str | None,
        timezone: str = "Asia/Shanghai",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.api = api
        self.store = store
        self.template_id = template_id
        self.timezone = timezone
        self.clock = clock

    async def send(self, chat_id: str, replies: Sequence[Reply], *, language: str) -> None:
        if not replies:
            return
        async with self.store.sessions.begin() as session:
            contact = await get_contact(session, chat_id)
            last = contact.last_inbound_at if contact is not None else None
            following = contact.subscribed if contact is not None else True
        if not following:
            raise DeliveryError("the resident unfollowed the official account", permanent=True)
        if last is not None and self.clock() - last < WINDOW - WINDOW_MARGIN:
            try:
                offers = bool(_payloads(replies))
                await push_replies(
                    self.api, self.store, chat_id, replies, language, remember=offers
                )
                return
            except WeChatApiError as error:
                if error.errcode != OUT_OF_WINDOW:
                    raise DeliveryError(str(error), permanent=error.permanent) from error
        await self._template(chat_id, replies, language)

    async def _template(self, chat_id: str, replies: Sequence[Reply], language: str) -> None:
        """Outside the window only a template message may be sent: a short notice that
        brings the resident back; their next message shows the full text."""
        if not self.template_id:
            raise DeliveryError(
                "outside WeChat's 48 h window and no WECHAT_TEMPLATE_ID_STATUS", permanent=True
            )
        text = " ".join(r.text for r in replies).replace("\n", " ")
        when = self.clock().astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M")
        data = {
            "first": t("wechat.template_first", language),
            "keyword1": text if len(text) <= 20 else text[:19] + "…",
            "keyword2": when,
            "remark": t("wechat.template_remark", language),
        }
        try:
            await self.api.send_template(chat_id, self.template_id, data)
        except WeChatApiError as error:
            raise DeliveryError(str(error), permanent=error.permanent) from error


# ----------------------------------------------------------------- wiring


WECHAT = web.AppKey("wechat", WeChatChannel)
WECHAT_PORT = web.AppKey("wechat_port", WeChatPort)
WECHAT_API = web.AppKey("wechat_api", WeChatApi)


async def _verify(request: web.Request) -> web.Response:
    return await request.app[WECHAT].verify(request)


async def _receive(request: web.Request) -> web.Response:
    return await request.app[WECHAT].receive(request)


def add_wechat(
    app: web.Application,
    settings: Settings,
    service: IntakeService,
    ports: ResidentPorts | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    passive_seconds: float = PASSIVE_SECONDS,
) -> WeChatPort:
    """Serve ``/webhooks/wechat`` and register the port for later messages (mediators'
    replies, status changes, rating requests) with ``ports``; also ``app[WECHAT_PORT]``."""
    assert settings.wechat_app_id is not None and settings.wechat_app_secret is not None
    api = WeChatApi(
        None,
        service.store,
        base_url=settings.wechat_api_base_url,
        app_id=settings.wechat_app_id,
        app_secret=settings.wechat_app_secret.get_secret_value(),
        clock=clock,
    )
    channel = WeChatChannel(settings, service, api, clock=clock, passive_seconds=passive_seconds)
    port = WeChatPort(
        api,
        service.store,
        template_id=settings.wechat_template_id_status,
        timezone=settings.timezone,
        clock=clock,
    )
    app[WECHAT_API] = api
    app[WECHAT] = channel
    app[WECHAT_PORT] = port
    if ports is not None:
        ports.register(port)
    app.router.add_get(PATH, _verify)
    app.router.add_post(PATH, _receive)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await api.start()
        log.info("wechat official account channel on %s", PATH)
        yield
        await channel.drain()
        await api.close()

    app.cleanup_ctx.append(lifecycle)
    return port
