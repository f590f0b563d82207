"""A Rasa-compatible REST channel, for messaging apps connected through a bridge.

``POST /webhooks/rest/webhook`` with ``{"sender": "...", "message": "..."}`` answers
``[{"recipient_id", "text", "buttons": [{"title", "payload"}]}]`` exactly like Rasa's
``RestInput``, so bridges written for Rasa work unchanged. Button payloads come back
as messages.

A bridge cannot be written to first, so :class:`RestPort` (the channel's output port)
keeps what a mediator or a status change says in the store's outbox, and the next
answer to that resident starts with it.

Access: with ``TIAOJIE_REST_TOKEN`` set, every call needs ``Authorization: Bearer
<token>``; without one the channel only answers while the server listens on loopback
(see :func:`check_access`). Incoming ids and text are cleaned at this edge
(:mod:`bot.channels.sanitise`) and bad bodies get a 4xx from :mod:`bot.http_errors`.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from bot.channels.sanitise import clean_id, clean_text, escape_for_log
from bot.channels.text_input import text_to_event
from bot.dialogue.model import Reply
from bot.http_errors import BadBody, read_json
from bot.intake_service import IntakeService, Sender
from bot.runtime import Store
from bot.settings import Settings
from storage import outbox
from storage.updates import delivery_number

log = logging.getLogger(__name__)

#: Chinese stays readable in the bridge's logs (JSON allows UTF-8 as is).
_dumps = functools.partial(json.dumps, ensure_ascii=False)
CHANNEL = "rest"
INTAKE = web.AppKey("intake", IntakeService)
HTTP_SETTINGS = web.AppKey("http_channel_settings", Settings)
REST_PORT = web.AppKey("rest_port", object)
#: Longest sender id we accept (Rasa puts no limit; our store column holds 64).
MAX_SENDER = 64
#: Longest bridge message id we accept (a UUID is 36).
MAX_MESSAGE_ID = 128


def reply_payload(reply: Reply) -> dict[str, Any]:
    """What the outbox keeps of a reply: text, flat buttons, attachment."""
    payload: dict[str, Any] = {"text": reply.text}
    buttons = [{"title": b.title, "payload": b.payload} for row in reply.buttons for b in row]
    if buttons:
        payload["buttons"] = buttons
    if reply.attachment:
        payload["attachment"] = dict(reply.attachment)
    return payload


def replies_json(recipient: str, replies: Sequence[Reply]) -> list[dict[str, Any]]:
    return [payload_json(recipient, reply_payload(reply)) for reply in replies]


def payload_json(recipient: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Rasa's REST/callback message shape: ``recipient_id`` first, then the payload."""
    return {"recipient_id": recipient, **payload}


class RestPort:
    """Output port of the REST channel: messages wait in the outbox for the next request."""

    def __init__(self, store: Store, channel: str = CHANNEL) -> None:
        self.store = store
        #: The console chat uses the same outbox under its own channel name.
        self.channel = channel

    async def send(self, chat_id: str, replies: Sequence[Reply], *, language: str) -> None:
        if not replies:
            return
        async with self.store.sessions.begin() as session:
            await outbox.enqueue(
                session, self.channel, chat_id, [reply_payload(r) for r in replies]
            )


# ------------------------------------------------------------------ access and input


def check_access(request: web.Request) -> None:
    """Refuse unless the channel is open to this caller (token, or loopback only).

    Raises :class:`BadBody`: 403 when the channel is off (the server listens beyond
    this machine and no token is set), 401 for a missing or wrong token.
    """
    settings = request.app[HTTP_SETTINGS]
    if not settings.http_channels_open:
        raise BadBody("channel_closed", 403)
    if settings.rest_token is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    expected = settings.rest_token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), expected
    ):
        raise BadBody("unauthorized", 401, {"WWW-Authenticate": 'Bearer realm="tiaojie"'})


async def read_message(request: web.Request) -> tuple[str, str]:
    """``(sender, message)`` of a Rasa-style body, cleaned; :class:`BadBody` otherwise."""
    sender, message, _ = await read_delivery(request)
    return sender, message


async def read_delivery(request: web.Request) -> tuple[str, str, int | None]:
    """``(sender, message, delivery number)``: the number comes from the bridge's own
    message id (``"message_id"`` in the body, as Rasa bridges may send, or an
    ``Idempotency-Key`` header), so a message retried after a lost answer, or sent to
    two workers, is handled once and both get its replies. ``None`` without an id."""
    payload = await read_json(request)
    if not isinstance(payload, dict):
        raise BadBody("rest.not_object")
    sender = payload.get("sender")
    message = payload.get("message")
    if isinstance(sender, bool) or not isinstance(sender, str | int) or not str(sender).strip():
        raise BadBody("rest.no_sender")
    sender = clean_id(str(sender).strip())
    if len(sender) > MAX_SENDER:
        raise BadBody("rest.sender_too_long")
    if message is None:
        message = ""
    if not isinstance(message, str):
        raise BadBody("rest.message_not_text")
    key = payload.get("message_id", request.headers.get("Idempotency-Key"))
    if key is None or key == "":
        return sender, clean_text(message), None
    if isinstance(key, bool) or not isinstance(key, str | int) or len(str(key)) > MAX_MESSAGE_ID:
        raise BadBody("rest.bad_message_id")
    return sender, clean_text(message), delivery_number(f"{sender}\x1f{key}")


# ------------------------------------------------------------------------ handlers


async def rest_webhook(request: web.Request) -> web.Response:
    """One message in; pending outbox messages, then the replies, out."""
    check_access(request)
    sender, message, delivery = await read_delivery(request)
    service = request.app[INTAKE]
    replies = await service.handle(
        Sender(CHANNEL, sender, sender), text_to_event(message), delivery, replay=True
    )
    async with service.store.sessions.begin() as session:
        pending = await outbox.take_pending(session, CHANNEL, sender)
    if pending:
        log.info("rest %s: %d waiting message(s) handed over", escape_for_log(sender), len(pending))
    body = [payload_json(sender, p) for p in pending] + replies_json(sender, replies)
    return web.json_response(body, dumps=_dumps)


async def rest_status(request: web.Request) -> web.Response:
    """Rasa answers ``{"status": "ok"}`` here; bridges use it as a liveness probe."""
    return web.json_response({"status": "ok"})


def add_rest_channel(app: web.Application, service: IntakeService, settings: Settings) -> RestPort:
    """Mount the channel; returns its output port (register it with the app's ports)."""
    app[INTAKE] = service
    app[HTTP_SETTINGS] = settings
    port = RestPort(service.store)
    app[REST_PORT] = port
    app.router.add_post("/webhooks/rest/webhook", rest_webhook)
    app.router.add_get("/webhooks/rest/", rest_status)
    if not settings.http_channels_open:
        log.warning(
            "REST and callback channels are OFF: the server listens on %s, beyond this "
            "machine, and TIAOJIE_REST_TOKEN is not set",
            escape_for_log(settings.http_host),
        )
    return port
