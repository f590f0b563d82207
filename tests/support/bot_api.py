"""A stand-in for the Telegram Bot API, served over real HTTP on 127.0.0.1.

Why this exists: the bot's tests must drive the real python-telegram-bot (PTB)
stack -- its HTTPX request layer, JSON (de)serialisation, ``Updater`` long
polling and error mapping -- without talking to Telegram.  Mocking ``Bot``
methods would skip exactly the layers that break in production, so instead
this module runs a small aiohttp server that speaks the Bot API wire format
and records every call for assertions.

Typical use::

    async with BotApiStandIn() as api:
        app = api.application_builder().build()
        app.add_handler(...)
        async with polling(app):
            api.push_update(api.text_update(chat_id=42, text="/start"))
            [call] = await api.wait_for("sendMessage")
            assert call.params["chat_id"] == 42

Things worth knowing about PTB's request format (v22):

* Every call is an HTTP POST to ``{base_url}{token}/{method}``.  Without
  uploads the body is ``application/x-www-form-urlencoded``; with uploads it
  is ``multipart/form-data``.  Either way *every* value is a string: ints
  become ``"42"``, booleans ``"true"``, and nested objects (``reply_markup``,
  ``entities``, ...) are JSON strings.  The stand-in turns them back into
  Python values (see :data:`JSON_PARAMS`, :data:`INT_PARAMS`, ...) so tests
  can assert ``call.params["reply_markup"]["inline_keyboard"]``.
* Parameters that are ``None`` are not sent at all, so "absent" in
  ``call.params`` means "PTB passed None".
* A direct upload (``send_photo(photo=b"...")``) travels as a multipart part
  named after the parameter (``photo``) and the parameter itself is *absent*
  from the form fields; uploads inside ``media`` use ``attach://<name>``.
* ``getFile`` must return a *relative* ``file_path``; PTB prefixes it with
  ``base_file_url + token``.
* httpx honours ``HTTP(S)_PROXY``/``ALL_PROXY``; if those are set, make sure
  ``NO_PROXY`` covers 127.0.0.1 or PTB will try to reach the stand-in through
  the proxy.

The server is deliberately strict (``strict=True``) where real Telegram is
strict and bots commonly get it wrong: unknown chats or messages, editing a
message without changing it, over-long texts, callback data over 64 bytes,
invalid command names.  Those produce the same 400/403 errors Telegram sends,
so PTB raises ``BadRequest``/``Forbidden`` just like in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import html
import inspect
import json
import mimetypes
import re
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import ClientSession, web
from telegram.ext import Application, ApplicationBuilder

__all__ = [
    "ApiCall",
    "BotApiError",
    "BotApiStandIn",
    "polling",
]

#: Parameters PTB sends as JSON strings inside form bodies; decoded to objects.
JSON_PARAMS = frozenset(
    {
        "allowed_updates",
        "caption_entities",
        "commands",
        "entities",
        "explanation_entities",
        "input_message_content",
        "link_preview_options",
        "media",
        "menu_button",
        "message_ids",
        "options",
        "permissions",
        "prices",
        "question_entities",
        "reaction",
        "reply_markup",
        "reply_parameters",
        "results",
        "rights",
        "scope",
        "shipping_options",
        "suggested_post_parameters",
    }
)

#: Parameters decoded to ``int`` when they look like integers.
INT_PARAMS = frozenset(
    {
        "cache_time",
        "chat_id",
        "direct_messages_topic_id",
        "duration",
        "from_chat_id",
        "heading",
        "height",
        "length",
        "limit",
        "live_period",
        "max_connections",
        "message_id",
        "message_thread_id",
        "offset",
        "proximity_alert_radius",
        "reply_to_message_id",
        "timeout",
        "until_date",
        "user_id",
        "width",
    }
)

#: Parameters decoded to ``float``.
FLOAT_PARAMS = frozenset({"horizontal_accuracy", "latitude", "longitude"})

#: Free-text parameters that are never decoded, even if they look like JSON.
TEXT_PARAMS = frozenset(
    {
        "caption",
        "data",
        "description",
        "first_name",
        "last_name",
        "phone_number",
        "query",
        "question",
        "secret_token",
        "short_description",
        "text",
        "title",
        "url",
        "vcard",
    }
)

#: Update types a bot receives when ``allowed_updates`` is unset or empty.
_OPT_IN_UPDATE_TYPES = frozenset(
    {"chat_member", "message_reaction", "message_reaction_count"}
)

#: Bot API limits the stand-in enforces in strict mode.
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024

#: Upload methods -> parameter that carries the file (and the Message field).
_MEDIA_METHODS = {
    "sendphoto": "photo",
    "senddocument": "document",
    "sendsticker": "sticker",
    "sendvoice": "voice",
    "sendaudio": "audio",
    "sendvideo": "video",
    "sendanimation": "animation",
    "sendvideonote": "video_note",
}

_MEDIA_DIRS = {
    "photo": ("photos", "jpg"),
    "document": ("documents", "bin"),
    "sticker": ("stickers", "webp"),
    "voice": ("voice", "oga"),
    "audio": ("music", "mp3"),
    "video": ("videos", "mp4"),
    "animation": ("animations", "mp4"),
    "video_note": ("video_notes", "mp4"),
}

#: Message fields that are metadata rather than content (not copied/forwarded).
_MESSAGE_META_FIELDS = frozenset(
    {
        "message_id",
        "date",
        "chat",
        "from",
        "reply_to_message",
        "edit_date",
        "reply_markup",
        "forward_origin",
        "message_thread_id",
    }
)

_MESSAGE_UPDATE_FIELDS = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_message",
    "edited_business_message",
)

_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_HTML_TAG_RE = re.compile(r"<[^>]*>")

_ERROR_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
}

# Minimal but plausible payloads for files created by the update builders.
_DEFAULT_CONTENT = {
    "photo": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00standin-photo\xff\xd9",
    "document": b"%PDF-1.4\n% standin document\n%%EOF\n",
    "sticker": b"RIFF\x00\x00\x00\x00WEBPstandin-sticker",
    "voice": b"OggS\x00standin-voice",
}

Json = dict[str, Any]
Handler = Callable[["ApiCall"], Any]
AnyApplication: TypeAlias = Application[Any, Any, Any, Any, Any, Any]
AnyApplicationBuilder: TypeAlias = ApplicationBuilder[Any, Any, Any, Any, Any, Any]


@dataclass
class ApiCall:
    """One HTTP request to a Bot API method, as the stand-in received it.

    ``params`` holds the decoded parameters (JSON strings already parsed, ints
    and bools converted); ``files`` maps multipart part names to uploaded
    bytes.  ``status`` and ``response`` are filled in once the stand-in has
    answered, which makes failure dumps self-explanatory.
    """

    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    file_names: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    response: Any = None

    @property
    def chat_id(self) -> int | str | None:
        """The ``chat_id`` parameter, if any (a convenience for filters)."""
        value = self.params.get("chat_id")
        return value if isinstance(value, int | str) else None

    def describe(self, limit: int = 300) -> str:
        """Return a one-line summary used in timeout dumps."""
        parts = [f"{self.method} {self.params!r}"]
        if self.files:
            sizes = {name: len(data) for name, data in self.files.items()}
            parts.append(f"files={sizes}")
        if self.status is not None and self.status != 200:
            parts.append(f"-> HTTP {self.status}")
        text = " ".join(parts)
        return text if len(text) <= limit else text[: limit - 3] + "..."


class BotApiError(Exception):
    """Raise from a handler to answer like a failed Telegram call.

    The stand-in turns it into ``{"ok": false, "error_code": status,
    "description": ..., "parameters": ...}`` with the same HTTP status, which
    PTB maps to ``BadRequest``, ``Forbidden``, ``RetryAfter`` and friends.
    """

    def __init__(
        self,
        status: int,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        self.status = status
        if description is None:
            if status == 429:
                description = f"Too Many Requests: retry after {retry_after or 1}"
            else:
                description = _ERROR_DESCRIPTIONS.get(status, f"Error {status}")
        self.description = description
        self.parameters: Json = {}
        if retry_after is not None:
            self.parameters["retry_after"] = retry_after
        if migrate_to_chat_id is not None:
            self.parameters["migrate_to_chat_id"] = migrate_to_chat_id
        super().__init__(f"{status}: {description}")

    def body(self) -> Json:
        """Return the JSON body Telegram would send for this error."""
        body: Json = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        return body


def _bad_request(description: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {description}")


def _decode_value(key: str, value: str) -> Any:
    """Undo PTB's stringification of one form/multipart value."""
    if key in TEXT_PARAMS:
        return value
    if key in JSON_PARAMS or value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if key in INT_PARAMS and re.fullmatch(r"-?\d+", value):
        return int(value)
    if key in FLOAT_PARAMS:
        with contextlib.suppress(ValueError):
            return float(value)
    if value in ("true", "false"):
        return value == "true"
    return value


def _decode_params(raw: dict[str, Any]) -> dict[str, Any]:
    """Decode every string value; values from JSON bodies are kept as sent."""
    return {
        key: _decode_value(key, value) if isinstance(value, str) else value
        for key, value in raw.items()
    }


def _infer_chat_type(chat_id: int) -> str:
    """Guess the chat type from the id the way Telegram allocates them."""
    if chat_id > 0:
        return "private"
    if str(chat_id).startswith("-100"):
        return "supergroup"
    return "group"


def _utf16_len(text: str) -> int:
    """Telegram counts message length in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _update_type(update: Json) -> str | None:
    return next((key for key in update if key != "update_id"), None)


def _sender_id(message: Json) -> int | None:
    sender = message.get("from")
    return sender.get("id") if isinstance(sender, dict) else None


class BotApiStandIn:
    """Fake Telegram Bot API on 127.0.0.1 that records calls and serves updates.

    Point PTB at it with ``ApplicationBuilder().token(api.token)
    .base_url(api.base_url).base_file_url(api.base_file_url)`` (or just
    :meth:`application_builder`).  Everything runs on the test's event loop.

    Public state tests may read (and, where sensible, modify):

    * ``calls`` -- every API request, in arrival order.
    * ``messages`` -- ``(chat_id, message_id) -> Message`` for every message
      the stand-in knows about (incoming and sent), kept up to date by edits
      and deletions.
    * ``chats`` -- ``chat_id -> Chat`` for chats the bot can talk to.
    * ``files`` -- ``file_id -> bytes`` served by ``getFile`` and downloads.
    * ``downloads`` -- ``file_path`` of every file download, in order.
    * ``blocked_chats`` -- chats where sending fails with 403 "blocked".
    * ``webhook_url`` / ``webhook_secret_token`` / ``webhook_params``.
    * ``commands`` -- what ``setMyCommands`` stored, keyed by (scope, lang).
    """

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "tiaojie_test_bot",
        *,
        bot_first_name: str = "Tiaojie Test Bot",
        strict: bool = True,
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        self.strict = strict
        bot_id_text = token.split(":", 1)[0]
        self.bot_id = int(bot_id_text) if bot_id_text.isdigit() else 123456
        self.bot_user: Json = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[int, int], Json] = {}
        self.chats: dict[int, Json] = {}
        self.files: dict[str, bytes] = {}
        self.downloads: list[str] = []
        self.blocked_chats: set[int] = set()
        self.commands: dict[tuple[str, str], list[Json]] = {}
        self.webhook_url = ""
        self.webhook_secret_token: str | None = None
        self.webhook_params: dict[str, Any] = {}

        self._file_meta: dict[str, Json] = {}
        self._paths: dict[str, str] = {}
        self._file_counter = 0
        self._message_counters: dict[int, int] = {}
        self._last_update_id = 0
        self._callback_counter = 0
        self._updates: list[Json] = []
        self._confirmed_offset = 0
        self._allowed_updates: frozenset[str] | None = None
        self._failures: dict[str, deque[BotApiError]] = {}
        self._custom_handlers: dict[str, Handler] = {}
        self._updates_event = asyncio.Event()
        self._calls_event = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

        self._handlers: dict[str, Callable[[ApiCall], Awaitable[Any]]] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "editmessagecaption": self._edit_message_caption,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "answercallbackquery": self._true,
            "sendchataction": self._true,
            "sendlocation": self._send_location,
            "sendcontact": self._send_contact,
            "sendmediagroup": self._send_media_group,
            "copymessage": self._copy_message,
            "forwardmessage": self._forward_message,
            "deletemessage": self._delete_message,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "getfile": self._get_file,
            "getchat": self._get_chat,
            "getchatmember": self._get_chat_member,
        }
        for method in _MEDIA_METHODS:
            self._handlers[method] = self._send_media

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start serving.

        The socket is bound before the server starts so the port is known
        without poking at aiohttp internals and cannot race another test.
        """
        if self._runner is not None:
            raise RuntimeError("BotApiStandIn is already running")
        self._closing = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route(
            "GET", "/file/bot{token}/{file_path:.+}", self._handle_file
        )
        app.router.add_route("*", "/{tail:.*}", self._handle_not_found)
        # handler_cancellation: a long poll abandoned by PTB (Updater.stop cancels
        # it) must not keep a handler alive; shutdown_timeout keeps stop() quick.
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, sock)
        try:
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._port = sock.getsockname()[1]
        self._runner = runner

    async def stop(self) -> None:
        """Release pending long polls and shut the server down."""
        self._closing = True
        self._wake_pollers()
        self._wake_call_waiters()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> BotApiStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only valid once started)."""
        if self._port is None:
            raise RuntimeError("BotApiStandIn.start() has not been awaited yet")
        return self._port

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` -- useful for hand-made requests."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """Value for ``ApplicationBuilder.base_url`` (PTB appends the token)."""
        return f"{self.root_url}/bot"

    @property
    def base_file_url(self) -> str:
        """Value for ``ApplicationBuilder.base_file_url`` (PTB appends the token)."""
        return f"{self.root_url}/file/bot"

    def application_builder(self) -> AnyApplicationBuilder:
        """Return an ``ApplicationBuilder`` already pointed at this stand-in."""
        return (
            ApplicationBuilder()
            .token(self.token)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
        )

    # ------------------------------------------------------------------ assertions

    def calls_to(self, method: str, chat_id: int | str | None = None) -> list[ApiCall]:
        """Recorded calls to ``method`` (optionally only those for ``chat_id``)."""
        return [
            call
            for call in self.calls
            if call.method == method
            and (chat_id is None or call.params.get("chat_id") == chat_id)
        ]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - part of the documented test API
        count: int = 1,
    ) -> list[ApiCall]:
        """Wait until at least ``count`` matching calls have been recorded.

        Calls recorded before this coroutine started count too, so it is safe
        to call after the action that triggers them.  Returns every matching
        call so far.  On timeout raises ``TimeoutError`` listing the recorded
        calls, because "expected sendMessage" alone is useless for debugging.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matches = [
                call
                for call in self.calls
                if call.method == method and (predicate is None or predicate(call))
            ]
            if len(matches) >= count:
                return matches
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                raise TimeoutError(
                    self._timeout_report(method, predicate, timeout, count, matches)
                )
            event = self._calls_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _timeout_report(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] | None,
        timeout: float,
        count: int,
        matches: list[ApiCall],
    ) -> str:
        wanted = f"{count} call(s) to {method}" + (
            " matching the predicate" if predicate else ""
        )
        shown = self.calls[-40:]
        skipped = len(self.calls) - len(shown)
        lines = [
            f"Timed out after {timeout}s waiting for {wanted}; {len(matches)} matched.",
            f"Recorded calls ({len(self.calls)}):",
        ]
        if skipped:
            lines.append(f"  ... {skipped} earlier call(s) omitted")
        for index, call in enumerate(shown, start=skipped):
            lines.append(f"  #{index} {call.describe()}")
        lines.append(f"Pending updates: {len(self._updates)}")
        return "\n".join(lines)

    def fail_next(
        self,
        method: str,
        status: int | None = None,
        description: str | None = None,
        retry_after: int | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls to ``method`` fail like Telegram would.

        ``status`` defaults to 429 when ``retry_after`` is given (PTB then
        raises ``RetryAfter``) and to 500 otherwise.  ``description`` defaults
        to Telegram's wording for the status.  Failed calls are still recorded.
        """
        if status is None:
            status = 429 if retry_after is not None else 500
        queue = self._failures.setdefault(method.lower(), deque())
        for _ in range(times):
            queue.append(BotApiError(status, description, retry_after=retry_after))

    def set_handler(self, method: str, handler: Handler | None) -> None:
        """Override (or with ``None`` restore) the answer for ``method``.

        ``handler(call)`` returns the ``result`` value (it may be a coroutine
        function) or raises :class:`BotApiError`.  Useful for methods the
        stand-in does not model, such as ``getChatAdministrators``.
        """
        if handler is None:
            self._custom_handlers.pop(method.lower(), None)
        else:
            self._custom_handlers[method.lower()] = handler

    # ------------------------------------------------------------------ updates

    @property
    def pending_updates(self) -> list[Json]:
        """Updates queued but not yet confirmed by a getUpdates ``offset``."""
        return copy.deepcopy(self._updates)

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates and return its ``update_id``.

        A copy is queued, so later changes to ``update`` have no effect.  A
        missing ``update_id`` is assigned from an increasing counter; an
        explicit one below the confirmed offset is rejected because the bot
        could never receive it.  Messages inside are registered so that the
        bot can reply to, edit or forward them.
        """
        update = copy.deepcopy(update)
        raw_id = update.get("update_id")
        if raw_id is None:
            update_id = self._next_update_id()
        else:
            update_id = int(raw_id)
            if update_id < self._confirmed_offset:
                raise ValueError(
                    f"update_id {update_id} is below the confirmed offset "
                    f"{self._confirmed_offset}; PTB would never receive it"
                )
            self._last_update_id = max(self._last_update_id, update_id)
        update["update_id"] = update_id
        self._register_update(update)
        self._updates.append(update)
        self._updates.sort(key=lambda queued: int(queued["update_id"]))
        self._wake_pollers()
        return update_id

    async def deliver_webhook(
        self, update: dict[str, Any], url: str | None = None
    ) -> int:
        """POST ``update`` to the webhook like Telegram does; return the status.

        Uses the URL and secret token the bot registered via ``setWebhook``
        unless ``url`` is given.  A missing ``update_id`` is assigned.
        """
        target = url or self.webhook_url
        if not target:
            raise RuntimeError("no webhook registered (setWebhook was not called)")
        update = copy.deepcopy(update)
        if update.get("update_id") is None:
            update["update_id"] = self._next_update_id()
        self._register_update(update)
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook_secret_token
        async with (
            ClientSession() as session,
            session.post(target, data=json.dumps(update), headers=headers) as response,
        ):
            await response.read()
            return response.status

    # ------------------------------------------------------------------ builders

    def add_chat(
        self,
        chat_id: int,
        chat_type: str | None = None,
        *,
        title: str | None = None,
        first_name: str = "Test",
        username: str | None = None,
    ) -> Json:
        """Register a chat the bot may talk to and return its Chat object.

        Builders do this automatically; call it directly when the bot must
        message a chat that has not sent anything yet.
        """
        chat_type = chat_type or _infer_chat_type(chat_id)
        chat: Json = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = first_name
        else:
            chat["title"] = title or "Test Group"
        if username:
            chat["username"] = username
        self.chats[chat_id] = chat
        return copy.deepcopy(chat)

    def text_update(
        self,
        chat_id: int,
        text: str,
        user_id: int | None = None,
        *,
        first_name: str = "Test",
        language_code: str = "zh-hans",
        username: str | None = None,
        chat_type: str | None = None,
        chat_title: str | None = None,
        reply_to_message_id: int | None = None,
        update_id: int | None = None,
    ) -> Json:
        """A ``message`` update with text.

        Text starting with ``/`` gets a ``bot_command`` entity, which PTB's
        ``CommandHandler`` requires.  ``chat_type`` defaults to what the id
        implies (positive: private, ``-100...``: supergroup, else group).
        """
        content: Json = {"text": text}
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            content["entities"] = [
                {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
            ]
        return self._message_update(
            chat_id,
            content,
            user_id=user_id,
            first_name=first_name,
            language_code=language_code,
            username=username,
            chat_type=chat_type,
            chat_title=chat_title,
            reply_to_message_id=reply_to_message_id,
            update_id=update_id,
        )

    def edited_text_update(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        user_id: int | None = None,
        *,
        first_name: str = "Test",
        language_code: str = "zh-hans",
        username: str | None = None,
        chat_type: str | None = None,
        chat_title: str | None = None,
        update_id: int | None = None,
    ) -> Json:
        """An ``edited_message`` update: the user edited message ``message_id``."""
        chat = self._ensure_chat(chat_id, chat_type, chat_title, first_name, username)
        user = self._user(chat, user_id, first_name, language_code, username)
        previous = self.messages.get((chat_id, message_id))
        now = int(time.time())
        message: Json = {
            "message_id": message_id,
            "date": previous["date"] if previous else now - 60,
            "edit_date": now,
            "chat": copy.deepcopy(chat),
            "from": user,
            "text": text,
        }
        self._store_message(message)
        return {
            "update_id": update_id or self._next_update_id(),
            "edited_message": copy.deepcopy(message),
        }

    def callback_update(
        self,
        chat_id: int,
        data: str,
        message_id: int,
        user_id: int | None = None,
        *,
        first_name: str = "Test",
        language_code: str = "zh-hans",
        username: str | None = None,
        chat_type: str | None = None,
        chat_title: str | None = None,
        callback_query_id: str | None = None,
        update_id: int | None = None,
    ) -> Json:
        """A ``callback_query`` update: the user pressed a button.

        ``message`` is the stored message ``message_id`` in ``chat_id`` (the
        one carrying the keyboard); if the stand-in has never seen it, a bot
        message with that id is created so edits work.
        """
        chat = self._ensure_chat(chat_id, chat_type, chat_title, first_name, username)
        user = self._user(chat, user_id, first_name, language_code, username)
        message = self.messages.get((chat_id, message_id))
        if message is None:
            message = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": copy.deepcopy(chat),
                "from": copy.deepcopy(self.bot_user),
                "text": "(message with keyboard)",
            }
            self._store_message(message)
        self._callback_counter += 1
        query: Json = {
            "id": callback_query_id or f"{self.bot_id}{self._callback_counter:08d}",
            "from": user,
            "chat_instance": f"{abs(chat_id) * 7919 % 10**12}",
            "message": copy.deepcopy(message),
            "data": data,
        }
        return {
            "update_id": update_id or self._next_update_id(),
            "callback_query": query,
        }

    def photo_update(
        self,
        chat_id: int,
        content: bytes | None = None,
        user_id: int | None = None,
        *,
        caption: str | None = None,
        width: int = 1280,
        height: int = 960,
        file_size: int | None = None,
        **sender: Any,
    ) -> Json:
        """A photo message; ``content`` is served for the largest size.

        ``sender`` takes the same keywords as :meth:`text_update`
        (``first_name``, ``chat_type``, ``update_id``...).
        """
        data = _DEFAULT_CONTENT["photo"] if content is None else content
        file_id = self._new_file("photo", data, file_size=file_size)
        body: Json = {"photo": self._photo_sizes(file_id, width, height)}
        if caption is not None:
            body["caption"] = caption
        return self._message_update(chat_id, body, user_id=user_id, **sender)

    def document_update(
        self,
        chat_id: int,
        content: bytes | None = None,
        user_id: int | None = None,
        *,
        file_name: str = "evidence.pdf",
        mime_type: str = "application/pdf",
        file_size: int | None = None,
        caption: str | None = None,
        **sender: Any,
    ) -> Json:
        """A document message.  ``file_size`` may exceed ``len(content)`` to
        simulate files too big for ``getFile`` (over 20 MB)."""
        data = _DEFAULT_CONTENT["document"] if content is None else content
        file_id = self._new_file(
            "document", data, file_size=file_size, file_name=file_name
        )
        document = self._media_object(
            "document", file_id, file_name=file_name, mime_type=mime_type
        )
        body: Json = {"document": document}
        if caption is not None:
            body["caption"] = caption
        return self._message_update(chat_id, body, user_id=user_id, **sender)

    def sticker_update(
        self,
        chat_id: int,
        user_id: int | None = None,
        *,
        emoji: str = "👍",
        set_name: str | None = None,
        content: bytes | None = None,
        **sender: Any,
    ) -> Json:
        """A (static, regular) sticker message."""
        data = _DEFAULT_CONTENT["sticker"] if content is None else content
        file_id = self._new_file("sticker", data)
        sticker = self._media_object("sticker", file_id)
        sticker["emoji"] = emoji
        if set_name:
            sticker["set_name"] = set_name
        return self._message_update(
            chat_id, {"sticker": sticker}, user_id=user_id, **sender
        )

    def voice_update(
        self,
        chat_id: int,
        user_id: int | None = None,
        *,
        duration: int = 3,
        content: bytes | None = None,
        mime_type: str = "audio/ogg",
        file_size: int | None = None,
        **sender: Any,
    ) -> Json:
        """A voice note message."""
        data = _DEFAULT_CONTENT["voice"] if content is None else content
        file_id = self._new_file("voice", data, file_size=file_size)
        voice = self._media_object("voice", file_id, mime_type=mime_type)
        voice["duration"] = duration
        return self._message_update(
            chat_id, {"voice": voice}, user_id=user_id, **sender
        )

    def contact_update(
        self,
        chat_id: int,
        phone_number: str,
        user_id: int | None = None,
        *,
        contact_first_name: str | None = None,
        contact_user_id: int | None = None,
        **sender: Any,
    ) -> Json:
        """A shared contact.  By default the sender shares their own contact
        (what a ``request_contact`` keyboard button produces)."""
        update = self._message_update(
            chat_id,
            {"contact": {"phone_number": phone_number}},
            user_id=user_id,
            **sender,
        )
        message = update["message"]
        contact = message["contact"]
        contact["first_name"] = contact_first_name or message["from"]["first_name"]
        contact["user_id"] = contact_user_id or message["from"]["id"]
        self._store_message(message)
        return update

    def location_update(
        self,
        chat_id: int,
        latitude: float,
        longitude: float,
        user_id: int | None = None,
        **sender: Any,
    ) -> Json:
        """A shared location."""
        body = {"location": {"latitude": latitude, "longitude": longitude}}
        return self._message_update(chat_id, body, user_id=user_id, **sender)

    # ------------------------------------------------------------------ HTTP layer

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = ApiCall(method=method, params={})
        parse_error: ValueError | None = None
        try:
            await self._read_params(request, call)
        except ValueError as exc:
            parse_error = exc
        self.calls.append(call)
        self._wake_call_waiters()
        if parse_error is not None:
            return self._finish(
                call, _bad_request(f"can't parse request: {parse_error}")
            )
        if request.match_info["token"] != self.token:
            return self._finish(call, BotApiError(401, "Unauthorized"))
        failures = self._failures.get(method.lower())
        if failures:
            return self._finish(call, failures.popleft())
        handler = self._custom_handlers.get(method.lower())
        try:
            if handler is not None:
                result = handler(call)
                if inspect.isawaitable(result):
                    result = await result
            else:
                builtin = self._handlers.get(method.lower(), self._true)
                result = await builtin(call)
        except BotApiError as exc:
            return self._finish(call, exc)
        return self._finish(call, result)

    def _finish(self, call: ApiCall, outcome: Any) -> web.Response:
        if isinstance(outcome, BotApiError):
            status, body = outcome.status, outcome.body()
        else:
            status, body = 200, {"ok": True, "result": outcome}
        call.status = status
        call.response = body
        return web.json_response(body, status=status)

    async def _read_params(self, request: web.Request, call: ApiCall) -> None:
        """Accept query string, JSON, urlencoded and multipart parameters."""
        raw: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("JSON body must be an object")
                raw.update(body)
            elif request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        call.files[key] = value.file.read()
                        call.file_names[key] = value.filename
                    else:
                        raw[key] = value
        call.params = _decode_params(raw)

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            error = BotApiError(401, "Unauthorized")
            return web.json_response(error.body(), status=401)
        path = request.match_info["file_path"]
        self.downloads.append(path)
        file_id = self._paths.get(path)
        if file_id is None or file_id not in self.files:
            return web.json_response(BotApiError(404).body(), status=404)
        return web.Response(
            body=self.files[file_id], content_type="application/octet-stream"
        )

    async def _handle_not_found(self, request: web.Request) -> web.Response:
        return web.json_response(BotApiError(404).body(), status=404)

    def _wake_pollers(self) -> None:
        event, self._updates_event = self._updates_event, asyncio.Event()
        event.set()

    def _wake_call_waiters(self) -> None:
        event, self._calls_event = self._calls_event, asyncio.Event()
        event.set()

    # ------------------------------------------------------------------ bookkeeping

    def _next_update_id(self) -> int:
        self._last_update_id += 1
        return self._last_update_id

    def _next_message_id(self, chat_id: int) -> int:
        self._message_counters[chat_id] = self._message_counters.get(chat_id, 0) + 1
        return self._message_counters[chat_id]

    def _store_message(self, message: Json) -> None:
        chat_id = int(message["chat"]["id"])
        message_id = int(message["message_id"])
        self.messages[(chat_id, message_id)] = copy.deepcopy(message)
        self._message_counters[chat_id] = max(
            self._message_counters.get(chat_id, 0), message_id
        )
        if chat_id not in self.chats:
            self.chats[chat_id] = copy.deepcopy(message["chat"])

    def _register_update(self, update: Json) -> None:
        for key in _MESSAGE_UPDATE_FIELDS:
            message = update.get(key)
            if isinstance(message, dict) and "chat" in message:
                self._store_message(message)
        query = update.get("callback_query")
        if isinstance(query, dict) and isinstance(query.get("message"), dict):
            message = query["message"]
            if (message["chat"]["id"], message["message_id"]) not in self.messages:
                self._store_message(message)

    def _ensure_chat(
        self,
        chat_id: int,
        chat_type: str | None,
        title: str | None,
        first_name: str,
        username: str | None,
    ) -> Json:
        chat = self.chats.get(chat_id)
        if chat is None or (chat_type is not None and chat["type"] != chat_type):
            return self.add_chat(
                chat_id,
                chat_type,
                title=title,
                first_name=first_name,
                username=username,
            )
        return copy.deepcopy(chat)

    def _user(
        self,
        chat: Json,
        user_id: int | None,
        first_name: str,
        language_code: str,
        username: str | None,
    ) -> Json:
        if user_id is None:
            user_id = chat["id"] if chat["type"] == "private" else 5000
        user: Json = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name,
            "language_code": language_code,
        }
        if username:
            user["username"] = username
        return user

    def _message_update(
        self,
        chat_id: int,
        content: Json,
        *,
        user_id: int | None = None,
        first_name: str = "Test",
        language_code: str = "zh-hans",
        username: str | None = None,
        chat_type: str | None = None,
        chat_title: str | None = None,
        reply_to_message_id: int | None = None,
        update_id: int | None = None,
    ) -> Json:
        chat = self._ensure_chat(chat_id, chat_type, chat_title, first_name, username)
        message: Json = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": chat,
            "from": self._user(chat, user_id, first_name, language_code, username),
            **content,
        }
        if reply_to_message_id is not None:
            message["reply_to_message"] = self._reply_stub(chat, reply_to_message_id)
        self._store_message(message)
        return {
            "update_id": update_id or self._next_update_id(),
            "message": copy.deepcopy(message),
        }

    def _reply_stub(self, chat: Json, message_id: int) -> Json:
        stored = self.messages.get((chat["id"], message_id))
        if stored is not None:
            reply = copy.deepcopy(stored)
            reply.pop("reply_to_message", None)
            return reply
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": copy.deepcopy(chat),
        }

    def _new_file(
        self,
        kind: str,
        content: bytes,
        *,
        file_size: int | None = None,
        file_name: str | None = None,
    ) -> str:
        self._file_counter += 1
        number = self._file_counter
        folder, extension = _MEDIA_DIRS.get(kind, ("documents", "bin"))
        if file_name and "." in file_name:
            extension = file_name.rsplit(".", 1)[1]
        file_id = f"{kind.upper()}-{number:04d}-standin"
        path = f"{folder}/file_{number}.{extension}"
        self.files[file_id] = content
        self._file_meta[file_id] = {
            "file_unique_id": f"u{number:04d}{kind[:3]}",
            "file_size": len(content) if file_size is None else file_size,
            "file_path": path,
        }
        self._paths[path] = file_id
        return file_id

    def _meta(self, file_id: str) -> Json:
        """File metadata; created lazily for bytes a test put into ``files``."""
        meta = self._file_meta.get(file_id)
        if meta is None:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", file_id)
            meta = {
                "file_unique_id": f"u-{safe}",
                "file_size": len(self.files[file_id]),
                "file_path": f"files/{safe}",
            }
            self._file_meta[file_id] = meta
            self._paths[meta["file_path"]] = file_id
        return meta

    def _media_object(
        self,
        kind: str,
        file_id: str,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> Json:
        """Build the Message field for a file (minus ``photo``, a list)."""
        meta = self._meta(file_id)
        obj: Json = {
            "file_id": file_id,
            "file_unique_id": meta["file_unique_id"],
            "file_size": meta["file_size"],
        }
        if kind == "sticker":
            obj.update(
                width=512, height=512, is_animated=False, is_video=False, type="regular"
            )
        elif kind in ("video", "animation"):
            obj.update(width=640, height=480, duration=5)
        elif kind == "video_note":
            obj.update(length=240, duration=5)
        elif kind in ("voice", "audio"):
            obj["duration"] = 3
        if file_name and kind in ("document", "audio", "video", "animation"):
            obj["file_name"] = file_name
        if mime_type and kind != "sticker":
            obj["mime_type"] = mime_type
        return obj

    def _photo_sizes(self, file_id: str, width: int, height: int) -> list[Json]:
        """Two PhotoSizes like Telegram sends: a thumbnail and the original."""
        meta = self._meta(file_id)
        scale = 90 / max(width, height, 1)
        thumb_id = f"{file_id}-thumb"
        self.files[thumb_id] = self.files[file_id]
        thumb_meta = self._meta(thumb_id)
        return [
            {
                "file_id": thumb_id,
                "file_unique_id": thumb_meta["file_unique_id"],
                "file_size": thumb_meta["file_size"],
                "width": max(1, round(width * scale)),
                "height": max(1, round(height * scale)),
            },
            {
                "file_id": file_id,
                "file_unique_id": meta["file_unique_id"],
                "file_size": meta["file_size"],
                "width": width,
                "height": height,
            },
        ]

    # ------------------------------------------------------------------ validation

    def _target_chat(self, chat_id: Any) -> Json:
        """Resolve ``chat_id`` the way Telegram does before sending anything."""
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if isinstance(chat_id, str):
            if chat_id.lstrip("-").isdigit():
                chat_id = int(chat_id)
            else:
                username = chat_id.lstrip("@")
                for chat in self.chats.values():
                    if chat.get("username") == username:
                        return copy.deepcopy(chat)
                if self.strict:
                    raise _bad_request("chat not found")
                fake_id = -1000000000000 - (sum(map(ord, username)) % 10**9)
                return self.add_chat(
                    fake_id, "channel", title=username, username=username
                )
        if chat_id in self.blocked_chats:
            raise BotApiError(403, "Forbidden: bot was blocked by the user")
        known = self.chats.get(chat_id)
        if known is not None:
            return copy.deepcopy(known)
        if self.strict:
            raise _bad_request("chat not found")
        return self.add_chat(chat_id)

    def _check_text(self, text: Any, *, parse_mode: Any, caption: bool = False) -> None:
        if not self.strict or text is None:
            return
        if not isinstance(text, str) or (not caption and not text.strip()):
            raise _bad_request("message text is empty")
        visible = text
        if isinstance(parse_mode, str) and parse_mode.upper() == "HTML":
            visible = html.unescape(_HTML_TAG_RE.sub("", text))
        limit = MAX_CAPTION_LENGTH if caption else MAX_TEXT_LENGTH
        if _utf16_len(visible) > limit:
            raise _bad_request(
                "message caption is too long" if caption else "message is too long"
            )

    def _inline_markup(self, markup: Any) -> Json | None:
        """Validate ``reply_markup`` and return it if Telegram would echo it.

        Only inline keyboards come back in the Message; reply keyboards and
        ``ReplyKeyboardRemove`` are accepted but not echoed.
        """
        if markup is None:
            return None
        if isinstance(markup, str):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        if not isinstance(markup, dict):
            raise _bad_request("reply markup must be an object")
        keyboard = markup.get("inline_keyboard")
        if keyboard is None:
            return None
        if self.strict:
            for row in keyboard:
                for button in row:
                    data = button.get("callback_data")
                    if (
                        data is not None
                        and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES
                    ):
                        raise _bad_request("BUTTON_DATA_INVALID")
                    if not button.get("text"):
                        raise _bad_request(
                            "text buttons are unallowed in the inline keyboard"
                        )
        return copy.deepcopy(markup)

    def _reply_target(self, params: dict[str, Any], chat: Json) -> Json | None:
        reply_parameters = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        message_id: Any = params.get("reply_to_message_id")
        reply_chat = chat
        if isinstance(reply_parameters, dict):
            message_id = reply_parameters.get("message_id")
            allow_missing = allow_missing or bool(
                reply_parameters.get("allow_sending_without_reply")
            )
            if reply_parameters.get("chat_id") not in (None, chat["id"]):
                reply_chat = self._target_chat(reply_parameters["chat_id"])
        if message_id is None:
            return None
        message_id = int(message_id)
        if (reply_chat["id"], message_id) not in self.messages:
            if allow_missing:
                return None
            if self.strict:
                raise _bad_request("message to be replied not found")
        return self._reply_stub(reply_chat, message_id)

    def _lookup_message(self, params: dict[str, Any], action: str) -> Json:
        chat = self._target_chat(params.get("chat_id"))
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        stored = self.messages.get((chat["id"], int(message_id)))
        if stored is None:
            if self.strict:
                raise _bad_request(f"message to {action} not found")
            stored = {
                "message_id": int(message_id),
                "date": int(time.time()),
                "chat": chat,
                "from": copy.deepcopy(self.bot_user),
                "text": "",
            }
            self._store_message(stored)
        return self.messages[(chat["id"], int(message_id))]

    def _outgoing(self, call: ApiCall, content: Json) -> Json:
        """Create, store and return a message the bot sends."""
        params = call.params
        chat = self._target_chat(params.get("chat_id"))
        markup = self._inline_markup(params.get("reply_markup"))
        message: Json = {
            "message_id": 0,
            "date": int(time.time()),
            "chat": chat,
            "from": copy.deepcopy(self.bot_user),
        }
        if params.get("message_thread_id"):
            message["message_thread_id"] = params["message_thread_id"]
        reply = self._reply_target(params, chat)
        if reply is not None:
            message["reply_to_message"] = reply
        message.update(content)
        if markup is not None:
            message["reply_markup"] = markup
        message["message_id"] = self._next_message_id(chat["id"])
        self._store_message(message)
        return copy.deepcopy(message)

    def _resolve_file(
        self, call: ApiCall, key: str, value: Any, kind: str
    ) -> tuple[str, str | None]:
        """Turn an upload, ``attach://`` reference, URL or file_id into a file_id."""
        part = key if value is None else None
        if isinstance(value, str) and value.startswith("attach://"):
            part = value.removeprefix("attach://")
        if part is not None:
            if part not in call.files:
                raise _bad_request(f"there is no {kind} in the request")
            name = call.file_names.get(part)
            return self._new_file(kind, call.files[part], file_name=name), name
        if not isinstance(value, str) or not value:
            raise _bad_request(f"there is no {kind} in the request")
        if value.startswith(("http://", "https://")):
            return self._new_file(kind, b""), value.rsplit("/", 1)[-1] or None
        if value in self.files:
            return value, None
        if self.strict:
            raise _bad_request("wrong file identifier/HTTP URL specified")
        return self._new_file(kind, b""), None

    def _media_content(self, call: ApiCall, kind: str, value: Any, key: str) -> Json:
        file_id, name = self._resolve_file(call, key, value, kind)
        if kind == "photo":
            return {"photo": self._photo_sizes(file_id, 1280, 960)}
        mime = None
        if kind == "document":
            guessed = mimetypes.guess_type(name or "")[0]
            mime = guessed or "application/octet-stream"
        return {kind: self._media_object(kind, file_id, file_name=name, mime_type=mime)}

    def _caption_fields(self, params: dict[str, Any]) -> Json:
        caption = params.get("caption")
        if caption is None:
            return {}
        self._check_text(caption, parse_mode=params.get("parse_mode"), caption=True)
        fields: Json = {"caption": caption}
        if params.get("caption_entities"):
            fields["caption_entities"] = params["caption_entities"]
        return fields

    # ------------------------------------------------------------------ methods

    async def _true(self, call: ApiCall) -> bool:
        return True

    async def _get_me(self, call: ApiCall) -> Json:
        return copy.deepcopy(self.bot_user)

    async def _get_updates(self, call: ApiCall) -> list[Json]:
        """getUpdates with Telegram's offset, limit, timeout and filter rules."""
        if self.webhook_url:
            raise BotApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        params = call.params
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        if "allowed_updates" in params:
            allowed = params["allowed_updates"] or []
            self._allowed_updates = frozenset(allowed) if allowed else None
        if offset > 0:
            self._updates = [u for u in self._updates if int(u["update_id"]) >= offset]
            self._confirmed_offset = max(self._confirmed_offset, offset)
        elif offset < 0:
            self._updates = self._updates[offset:]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._updates = [u for u in self._updates if self._is_allowed(u)]
            if self._updates or self._closing:
                return copy.deepcopy(self._updates[:limit])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            event = self._updates_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _is_allowed(self, update: Json) -> bool:
        kind = _update_type(update)
        if self._allowed_updates is None:
            return kind not in _OPT_IN_UPDATE_TYPES
        return kind in self._allowed_updates

    async def _set_webhook(self, call: ApiCall) -> bool:
        params = call.params
        url = params.get("url") or ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook_url = str(url)
        self.webhook_secret_token = params.get("secret_token") if url else None
        self.webhook_params = dict(params) if url else {}
        return True

    async def _delete_webhook(self, call: ApiCall) -> bool:
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook_url = ""
        self.webhook_secret_token = None
        self.webhook_params = {}
        return True

    async def _get_webhook_info(self, call: ApiCall) -> Json:
        info: Json = {
            "url": self.webhook_url,
            "has_custom_certificate": "certificate" in self.webhook_params,
            "pending_update_count": len(self._updates),
        }
        for key in ("max_connections", "allowed_updates", "ip_address"):
            if key in self.webhook_params:
                info[key] = self.webhook_params[key]
        return info

    async def _send_message(self, call: ApiCall) -> Json:
        params = call.params
        text = params.get("text")
        if text is None:
            raise _bad_request("message text is empty")
        self._check_text(text, parse_mode=params.get("parse_mode"))
        content: Json = {"text": text}
        if params.get("entities"):
            content["entities"] = params["entities"]
        if isinstance(params.get("link_preview_options"), dict):
            content["link_preview_options"] = params["link_preview_options"]
        return self._outgoing(call, content)

    def _finish_edit(self, stored: Json, changes: Json, markup: Json | None) -> Json:
        """Apply an edit, enforcing Telegram's "message is not modified" rule."""
        updated = copy.deepcopy(stored)
        for key, value in changes.items():
            if value is None:
                updated.pop(key, None)
            else:
                updated[key] = value
        if markup is None:
            updated.pop("reply_markup", None)
        else:
            updated["reply_markup"] = markup
        comparable = ("text", "entities", "caption", "caption_entities", "reply_markup")
        unchanged = all(updated.get(key) == stored.get(key) for key in comparable)
        if self.strict and unchanged:
            raise _bad_request(
                "message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and "
                "reply markup of the message"
            )
        updated["edit_date"] = int(time.time())
        self._store_message(updated)
        return copy.deepcopy(updated)

    def _editable(self, call: ApiCall) -> Json | None:
        """The stored message an edit targets, or None for inline messages."""
        if call.params.get("inline_message_id"):
            return None
        stored = self._lookup_message(call.params, "edit")
        if self.strict and _sender_id(stored) != self.bot_id:
            raise _bad_request("message can't be edited")
        return stored

    async def _edit_message_text(self, call: ApiCall) -> Json | bool:
        params = call.params
        text = params.get("text")
        if text is None:
            raise _bad_request("message text is empty")
        self._check_text(text, parse_mode=params.get("parse_mode"))
        markup = self._inline_markup(params.get("reply_markup"))
        stored = self._editable(call)
        if stored is None:
            return True
        if self.strict and "text" not in stored:
            raise _bad_request("there is no text in the message to edit")
        changes = {"text": text, "entities": params.get("entities") or None}
        return self._finish_edit(stored, changes, markup)

    async def _edit_message_caption(self, call: ApiCall) -> Json | bool:
        params = call.params
        caption_fields = self._caption_fields(params)
        markup = self._inline_markup(params.get("reply_markup"))
        stored = self._editable(call)
        if stored is None:
            return True
        changes = {
            "caption": caption_fields.get("caption"),
            "caption_entities": caption_fields.get("caption_entities"),
        }
        return self._finish_edit(stored, changes, markup)

    async def _edit_message_reply_markup(self, call: ApiCall) -> Json | bool:
        markup = self._inline_markup(call.params.get("reply_markup"))
        stored = self._editable(call)
        if stored is None:
            return True
        return self._finish_edit(stored, {}, markup)

    async def _delete_message(self, call: ApiCall) -> bool:
        chat = self._target_chat(call.params.get("chat_id"))
        key = (chat["id"], int(call.params.get("message_id") or 0))
        if key not in self.messages:
            if self.strict:
                raise _bad_request("message to delete not found")
            return True
        del self.messages[key]
        return True

    async def _send_media(self, call: ApiCall) -> Json:
        kind = _MEDIA_METHODS[call.method.lower()]
        content = self._media_content(call, kind, call.params.get(kind), kind)
        content.update(self._caption_fields(call.params))
        return self._outgoing(call, content)

    async def _send_media_group(self, call: ApiCall) -> list[Json]:
        media = call.params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad_request("wrong number of media specified; must be 2-10")
        group_id = f"{int(time.time() * 1000)}{len(self.calls)}"
        messages = []
        for item in media:
            kind = str(item.get("type", "document"))
            content = self._media_content(call, kind, item.get("media"), kind)
            content.update(self._caption_fields(item))
            content["media_group_id"] = group_id
            messages.append(self._outgoing(call, content))
        return messages

    async def _send_location(self, call: ApiCall) -> Json:
        params = call.params
        location = {
            "latitude": params.get("latitude"),
            "longitude": params.get("longitude"),
        }
        return self._outgoing(call, {"location": location})

    async def _send_contact(self, call: ApiCall) -> Json:
        params = call.params
        contact = {
            key: params[key]
            for key in ("phone_number", "first_name", "last_name", "user_id", "vcard")
            if key in params
        }
        return self._outgoing(call, {"contact": contact})

    def _source_message(self, call: ApiCall, action: str) -> Json:
        params = call.params
        source_params = {
            "chat_id": params.get("from_chat_id"),
            "message_id": params.get("message_id"),
        }
        return copy.deepcopy(self._lookup_message(source_params, action))

    async def _forward_message(self, call: ApiCall) -> Json:
        source = self._source_message(call, "forward")
        content = {k: v for k, v in source.items() if k not in _MESSAGE_META_FIELDS}
        origin = source.get("forward_origin")
        if origin is None:
            if source["chat"]["type"] == "channel":
                origin = {
                    "type": "channel",
                    "date": source["date"],
                    "chat": source["chat"],
                    "message_id": source["message_id"],
                }
            else:
                origin = {
                    "type": "user",
                    "date": source["date"],
                    "sender_user": source.get("from"),
                }
        content["forward_origin"] = origin
        return self._outgoing(call, content)

    async def _copy_message(self, call: ApiCall) -> Json:
        source = self._source_message(call, "copy")
        content = {k: v for k, v in source.items() if k not in _MESSAGE_META_FIELDS}
        if "caption" in call.params:
            content.pop("caption_entities", None)
            content.update(self._caption_fields(call.params))
        message = self._outgoing(call, content)
        return {"message_id": message["message_id"]}

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    async def _set_my_commands(self, call: ApiCall) -> bool:
        commands = call.params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        if self.strict:
            for command in commands:
                name = str(command.get("command", ""))
                description = str(command.get("description", ""))
                if not _COMMAND_RE.match(name) or not 1 <= len(description) <= 256:
                    raise _bad_request("BOT_COMMAND_INVALID")
        self.commands[self._commands_key(call.params)] = copy.deepcopy(commands)
        return True

    async def _get_my_commands(self, call: ApiCall) -> list[Json]:
        return copy.deepcopy(self.commands.get(self._commands_key(call.params), []))

    async def _delete_my_commands(self, call: ApiCall) -> bool:
        self.commands.pop(self._commands_key(call.params), None)
        return True

    async def _get_file(self, call: ApiCall) -> Json:
        file_id = call.params.get("file_id")
        if not isinstance(file_id, str) or file_id not in self.files:
            raise _bad_request("invalid file_id")
        meta = self._meta(file_id)
        if meta["file_size"] > MAX_DOWNLOAD_SIZE:
            raise _bad_request("file is too big")
        return {"file_id": file_id, **meta}

    async def _get_chat(self, call: ApiCall) -> Json:
        chat = self._target_chat(call.params.get("chat_id"))
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _get_chat_member(self, call: ApiCall) -> Json:
        chat = self._target_chat(call.params.get("chat_id"))
        user_id = int(call.params.get("user_id") or 0)
        if user_id == self.bot_id:
            return {"status": "member", "user": copy.deepcopy(self.bot_user)}
        user: Json = {"id": user_id, "is_bot": False, "first_name": "Test"}
        if chat["type"] == "private" and chat["id"] == user_id:
            user["first_name"] = chat.get("first_name", "Test")
        return {"status": "member", "user": user}


@contextlib.asynccontextmanager
async def polling(
    app: AnyApplication, **start_polling_kwargs: Any
) -> AsyncIterator[AnyApplication]:
    """Run ``app`` with long polling for the duration of the block.

    Follows PTB's documented manual life cycle (initialize, start polling,
    start; then updater.stop, stop, shutdown) and always tears down, so a
    failing assertion never leaves a polling task or HTTP client behind.
    """
    updater = app.updater
    if updater is None:
        raise RuntimeError("the Application was built without an Updater")
    await app.initialize()
    try:
        await app.start()
        await updater.start_polling(**start_polling_kwargs)
        yield app
    finally:
        try:
            if updater.running:
                await updater.stop()
        finally:
            try:
                if app.running:
                    await app.stop()
            finally:
                await app.shutdown()
