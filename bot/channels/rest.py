"""A Rasa-compatible REST channel, for messaging apps connected through a bridge.

``POST /webhooks/rest/webhook`` with ``{"sender": "...", "message": "..."}`` answers
``[{"recipient_id", "text", "buttons": [{"title", "payload"}]}]`` exactly like Rasa's
``RestInput``, so bridges written for Rasa work unchanged. Button payloads come back
as messages.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web

from bot.channels.text_input import text_to_event
from bot.dialogue.model import Reply
from bot.i18n import t
from bot.intake_service import IntakeService, Sender

#: Chinese stays readable in the bridge's logs (JSON allows UTF-8 as is).
_dumps = functools.partial(json.dumps, ensure_ascii=False)
CHANNEL = "rest"
INTAKE = web.AppKey("intake", IntakeService)
#: Longest sender id we accept (Rasa puts no limit; our store column holds 64).
MAX_SENDER = 64


def replies_json(recipient: str, replies: list[Reply]) -> list[dict[str, Any]]:
    body = []
    for reply in replies:
        item: dict[str, Any] = {"recipient_id": recipient, "text": reply.text}
        buttons = [{"title": b.title, "payload": b.payload} for row in reply.buttons for b in row]
        if buttons:
            item["buttons"] = buttons
        body.append(item)
    return body


def _bad_request(key: str) -> web.Response:
    return web.json_response(
        {"error": t(f"rest.{key}", "en"), "message": t(f"rest.{key}", "zh")}, status=400
    )


async def rest_webhook(request: web.Request) -> web.Response:
    try:
        payload = await request.json()
    except ValueError:
        return _bad_request("not_json")
    if not isinstance(payload, dict):
        return _bad_request("not_object")
    sender = payload.get("sender")
    message = payload.get("message")
    if not isinstance(sender, str | int) or not str(sender).strip():
        return _bad_request("no_sender")
    sender = str(sender).strip()
    if len(sender) > MAX_SENDER:
        return _bad_request("sender_too_long")
    if message is None:
        message = ""
    if not isinstance(message, str):
        return _bad_request("message_not_text")
    service = request.app[INTAKE]
    replies = await service.handle(Sender(CHANNEL, sender, sender), text_to_event(message))
    return web.json_response(replies_json(sender, replies), dumps=_dumps)


def add_rest_channel(app: web.Application, service: IntakeService) -> None:
    app[INTAKE] = service
    app.router.add_post("/webhooks/rest/webhook", rest_webhook)
    app.router.add_get("/webhooks/rest/", rest_status)


async def rest_status(request: web.Request) -> web.Response:
    """Rasa answers ``{"status": "ok"}`` here; bridges use it as a liveness probe."""
    return web.json_response({"status": "ok"})
