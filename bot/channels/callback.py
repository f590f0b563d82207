"""Rasa's *callback* channel: messages in over HTTP, every reply POSTed to a bridge.

``POST /webhooks/callback/webhook`` with ``{"sender", "message"}`` answers ``success``
at once (as Rasa's ``CallbackInput`` does); the message is handled in the background
and each reply is POSTed as ``{"recipient_id", "text", "buttons"?, "attachment"?}`` to
``TIAOJIE_CALLBACK_URL``. :class:`CallbackPort` is the same POST as an output port, so
a mediator's answer or a status change reaches the bridge the moment it is sent,
instead of waiting for the resident's next message as on the plain REST channel.

Delivery: one aiohttp client session owned by the app; connection errors, timeouts
and 5xx are retried with exponential backoff (tenacity), a 4xx is a permanent
:class:`~actions.ports.DeliveryError` (the bridge refuses this message; sending it
again cannot help). When ``TIAOJIE_REST_TOKEN`` is set, our POSTs carry it as a bearer
token so the bridge can tell them from forgeries, and incoming calls must carry it too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from yarl import URL

from actions.ports import DeliveryError
from bot.channels.rest import check_access, read_message, reply_payload
from bot.channels.sanitise import escape_for_log
from bot.channels.text_input import text_to_event
from bot.dialogue.model import Reply
from bot.intake_service import IntakeService, Sender
from bot.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "callback"
#: Seconds one POST to the bridge may take.
POST_TIMEOUT_S = 5.0


class _Transient(Exception):
    """A failure worth another try (connection, timeout, 5xx)."""


class CallbackPort:
    """Output port: POSTs each reply to the bridge's callback URL, in order."""

    channel = CHANNEL

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        attempts: int = 4,
        backoff: float = 0.2,
        timeout: float = POST_TIMEOUT_S,
    ) -> None:
        self.url = url
        #: For logs: the URL without any user or password in it.
        self.shown_url = str(URL(url).with_user(None))
        self._token = token
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, chat_id: str, replies: Sequence[Reply], *, language: str) -> None:
        """POST every reply in order; :class:`DeliveryError` on the first that fails."""
        for reply in replies:
            await self.post({"recipient_id": chat_id, **reply_payload(reply)})

    async def post(self, body: dict[str, Any]) -> None:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_Transient),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._backoff, max=5.0),
                reraise=True,
            ):
                with attempt:
                    await self._post_once(body)
        except _Transient as error:
            log.warning(
                "callback to %s failed after %d attempts: %s", self.shown_url, self._attempts, error
            )
            raise DeliveryError(str(error)) from None

    async def _post_once(self, body: dict[str, Any]) -> None:
        await self.start()
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            async with self._session.post(self.url, data=data, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _Transient(type(error).__name__) from None
        if status >= 500 or status == 429:
            raise _Transient(f"HTTP {status}")
        if status >= 400:
            log.warning("callback to %s refused with HTTP %d", self.shown_url, status)
            raise DeliveryError(f"HTTP {status}", permanent=True)


class CallbackChannel:
    """Takes messages, handles them in the background, sends replies through the port."""

    def __init__(self, service: IntakeService, port: CallbackPort) -> None:
        self.service = service
        self.port = port
        self._tasks: set[asyncio.Task[None]] = set()
        #: One chat's messages are handled and answered in arrival order.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, sender: str) -> asyncio.Lock:
        lock = self._locks.get(sender)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[sender] = lock
        return lock

    def accept(self, sender: str, message: str) -> None:
        lock = self._lock(sender)
        task = asyncio.create_task(self._handle(sender, message, lock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, sender: str, message: str, lock: asyncio.Lock) -> None:
        async with lock:
            try:
                replies = await self.service.handle(
                    Sender(CHANNEL, sender, sender), text_to_event(message)
                )
                await self.port.send(sender, replies, language="zh")
            except DeliveryError as error:
                log.warning(
                    "replies to callback %s not delivered (%s)",
                    escape_for_log(sender),
                    "permanent" if error.permanent else "gave up",
                )
            except Exception:
                log.exception("callback message of %s failed", escape_for_log(sender))

    async def drain(self, wait_s: float = 10.0) -> None:
        """Let messages in flight finish (at shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=wait_s)

    async def webhook(self, request: web.Request) -> web.Response:
        check_access(request)
        sender, message = await read_message(request)
        self.accept(sender, message)
        return web.Response(text="success")


CALLBACK = web.AppKey("callback_channel", CallbackChannel)


def add_callback_channel(
    app: web.Application, service: IntakeService, settings: Settings
) -> CallbackPort | None:
    """Mount the channel when ``TIAOJIE_CALLBACK_URL`` is set; returns its port."""
    if settings.callback_url is None:
        return None
    token = settings.rest_token.get_secret_value() if settings.rest_token else None
    port = CallbackPort(settings.callback_url, token=token)
    channel = CallbackChannel(service, port)
    app[CALLBACK] = channel
    app.router.add_post("/webhooks/callback/webhook", channel.webhook)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await port.start()
        yield
        await channel.drain()
        await port.close()

    app.cleanup_ctx.append(lifecycle)
    return port
