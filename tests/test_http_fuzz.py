"""Fuzz every HTTP endpoint that takes a body: REST, callback and Telegram's webhook.

A seeded generator (so a failure can be replayed) makes at least 200 body shapes per
endpoint: wrong types, deep nesting, odd charsets and bytes that are not UTF-8, huge
bodies, unicode junk (NUL, lone surrogates, bidi overrides, line separators) inside
otherwise good messages. Each shape knows whether it is good. The real application
answers: good ones 2xx and handled, bad ones 4xx with a bilingual JSON message, never
a 500, nothing of theirs stored or sent; ``/healthz`` still 200 afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.runtime import Store
from bot.settings import load_settings
from bot.web import create_app
from nlu.interface import NLUBackend
from storage.models import Conversation, Resident
from tests.support.bot_api import BotApiStandIn

SEED = 20261130
SHAPES = 230
JUNK = [
    "\x00", "\ud800", "\udfff", "\udbff\udc00", "\u2028", "\u2029", "\x1b[31m", "\r\n", "\n",
    "\t", "\x7f", "\x85", "\ufeff", "\u202e", "😀", "中文", "ℌ", "\\", '"', "'", "<b>", "%s",
    "{0}", "\ufffd", "ﾟ", "𠀀",
]  # fmt: skip
MARK = "FUZZMARK"


@dataclass
class Shape:
    """One request body; ``good`` ones must be handled, the others refused with a 4xx."""

    name: str
    body: bytes
    content_type: str = "application/json"
    good: bool = False
    sender: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def junk_text(rng: random.Random, length: int) -> str:
    alphabet = [*JUNK, "a", "b", " ", "你", "好", "。", "1"]
    return "".join(rng.choice(alphabet) for _ in range(length))


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: lone surrogates travel as \\ud800


def _nested(depth: int, leaf: Any = 1) -> str:
    kind = random.Random(depth).choice(["list", "dict"])
    if kind == "list":
        return "[" * depth + json.dumps(leaf) + "]" * depth
    return '{"a":' * depth + json.dumps(leaf) + "}" * depth


def message_shapes(seed: int, count: int) -> list[Shape]:
    """Rasa-style ``{"sender", "message"}`` bodies, good and bad (REST and callback)."""
    rng = random.Random(seed)

    def good(i: int) -> Shape:
        sender = f"ok-{i}-" + rng.choice(["", "\ud800", "\n", "中", "x\x00y", "\u2028"])
        text = rng.choice(["邻居漏水", "欠薪三个月", "hello", "/status", "yes", ""])
        text += " " + junk_text(rng, rng.randint(0, 40)) + MARK
        variant = rng.randrange(5)
        payload: dict[str, Any] = {"sender": sender, "message": text}
        if variant == 1:
            payload["metadata"] = json.loads(_nested(10, "x"))  # extra keys are ignored
        body = _json(payload)
        content_type = "application/json"
        if variant == 2:
            body = json.dumps(payload).encode("utf-16")  # escapes keep surrogates encodable
            content_type = "application/json; charset=utf-16"
        elif variant == 3:
            content_type = "application/json; charset=UTF8"
        elif variant == 4:
            content_type = "text/plain"
        return Shape("good", body, content_type, good=True, sender=sender)

    def bad(i: int) -> Shape:
        who = f"bad-{i}"
        kind = rng.randrange(18)
        if kind == 0:
            raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
            return Shape("random bytes", raw)
        if kind == 1:
            text = json.dumps({"sender": who, "message": "hi"})
            return Shape("truncated", text[: rng.randint(0, len(text) - 1)].encode())
        if kind == 2:
            body = json.dumps({"sender": who, "message": "\ud800 hi"}, ensure_ascii=False)
            return Shape("surrogate bytes", body.encode("utf-8", "surrogatepass"))
        if kind == 3:
            charset = rng.choice(["klingon", "rot13", "zlib", "utf-9", "x" * 40, "base64"])
            return Shape(
                "charset",
                _json({"sender": who, "message": "hi"}),
                f"application/json; charset={charset}",
            )
        if kind == 4:
            value = rng.choice([[], None, 1, "x", True, 1.5, [{"sender": who}], -0.0, 10**30])
            return Shape("not object", _json(value))
        if kind == 5:
            return Shape("no sender", _json({"message": "hi", "user": who}))
        if kind == 6:
            sender = rng.choice([None, True, False, 1.5, [who], {"id": who}, "", "   ", "\t"])
            return Shape("sender type", _json({"sender": sender, "message": "hi"}))
        if kind == 7:
            return Shape("long sender", _json({"sender": who + "x" * 64, "message": "hi"}))
        if kind == 8:
            message = rng.choice([1, 1.5, True, [MARK], {"text": MARK}, [[[]]]])
            return Shape("message type", _json({"sender": who, "message": message}))
        if kind == 9:
            depth = rng.choice([33, 100, 1000, 5000])
            body = f'{{"sender": "{who}", "message": {_nested(depth, MARK)}}}'
            return Shape("deep message", body.encode())
        if kind == 10:
            return Shape("deep top", _nested(rng.choice([1000, 100_000]), MARK).encode())
        if kind == 11:
            body = f'{{"sender": "{who}", "message": "hi", "x": {_nested(2000)}}}'
            return Shape("deep extra", body.encode())
        if kind == 12 and rng.random() < 0.3:
            big = {"sender": who, "message": MARK + "x" * (1024 * 1024 + rng.randint(1, 9999))}
            return Shape("huge", _json(big))
        if kind == 13:
            return Shape("empty", b"")
        if kind == 14:
            return Shape("nan", b'{"sender": NaN, "message": Infinity}')
        if kind == 15:
            return Shape("bom", b"\xef\xbb\xbf" + _json({"sender": who, "message": "hi"}))
        if kind == 16:
            utf32 = _json({"sender": who, "message": "hi"}).decode().encode("utf-32")
            return Shape("utf-32 undeclared", utf32)
        return Shape("whitespace", rng.choice([b" ", b"\n\n", b"\x00", b"{}", b'{"sender":}']))

    shapes = [good(i) if rng.random() < 0.2 else bad(i) for i in range(count)]
    return shapes


def test_generator_makes_every_kind() -> None:
    shapes = message_shapes(SEED, SHAPES)
    names = {s.name for s in shapes}
    assert len(shapes) >= 200 and {"good", "huge", "deep top", "charset", "not object"} <= names
    assert sum(s.good for s in shapes) >= 30


async def _count(store: Store, model: Any, *where: Any) -> int:
    async with store.sessions() as session:
        query = select(func.count()).select_from(model).where(*where)
        return int((await session.execute(query)).scalar_one())


def _assert_refusal(status: int, body: bytes, shape: Shape) -> None:
    assert 400 <= status < 500, (shape.name, status, body[:200])
    answer = json.loads(body)
    assert answer["error"] and answer["message"] and answer["error"] != answer["message"]


# ----------------------------------------------------------------------------- REST


@pytest.fixture
async def app_client(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[tuple[TestClient, Store]] = []

    async def make(**overrides: Any) -> tuple[TestClient, Store]:
        settings = load_settings(database_url=sqlite_url, data_dir=tmp_path / "var", **overrides)
        store = Store.open(settings)
        client = TestClient(TestServer(create_app(settings, nlu, store=store)))
        await client.start_server()
        clients.append((client, store))
        return client, store

    yield make
    for client, store in clients:
        await client.close()
        await store.close()


async def test_rest_fuzz_never_500_and_refuses_bad_bodies(
    app_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    http, store = await app_client()
    shapes = message_shapes(SEED, SHAPES)
    good_senders: set[str] = set()
    caplog.set_level(logging.INFO)
    for shape in shapes:
        caplog.clear()
        response = await http.post(
            "/webhooks/rest/webhook", data=shape.body, headers={"Content-Type": shape.content_type}
        )
        body = await response.read()
        assert response.status != 500, shape
        if shape.good:
            assert response.status == 200, (shape, body[:300])
            answer = json.loads(body)
            assert isinstance(answer, list) and answer
            good_senders.add(answer[0]["recipient_id"])
        else:
            _assert_refusal(response.status, body, shape)
            warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1, (shape.name, [r.getMessage() for r in warnings])
        shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert not any(MARK in line for line in shown), "message text logged at INFO"
        assert all("\n" not in line for line in shown)
    # Nothing of the bad ones stored; every good sender has exactly one conversation.
    assert await _count(store, Conversation, Conversation.chat_id.like("bad-%")) == 0
    assert await _count(store, Resident, Resident.external_id.like("bad-%")) == 0
    assert await _count(store, Conversation, Conversation.channel == "rest") == len(good_senders)
    health = await http.get("/healthz")
    assert health.status == 200, await health.text()


async def test_rest_refusals_are_the_right_4xx(app_client: Callable[..., Any]) -> None:
    http, _ = await app_client()
    url = "/webhooks/rest/webhook"
    cases = [
        (b'{"sender":"a","message":"hi"}', "application/json; charset=klingon", 415),
        (b'{"sender":"a","message":"hi"}', "application/json; charset=rot13", 415),
        (b"[" * 1000 + b"]" * 1000, "application/json", 400),
        (b'{"sender":"a","message":"' + b"x" * (1024 * 1024) + b'"}', "application/json", 413),
        (b"null", "application/json", 400),
        (b'"x"', "application/json", 400),
    ]
    for body, content_type, status in cases:
        response = await http.post(url, data=body, headers={"Content-Type": content_type})
        assert response.status == status, (body[:40], await response.text())
    # Unknown paths and methods get JSON too.
    assert (await http.get("/nowhere")).status == 404
    wrong = await http.get(url)
    assert wrong.status == 405 and "message" in await wrong.json()


# ------------------------------------------------------------------------- callback


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Receiver:
    """A bridge's callback endpoint on 127.0.0.1, recording what it is sent."""

    url: str
    received: list[dict[str, Any]]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    received: list[dict[str, Any]] = []

    async def collect(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/callback", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Receiver(f"http://127.0.0.1:{port}/callback", received)
    await runner.cleanup()


async def test_callback_fuzz_never_500_and_sends_nothing_for_bad_bodies(
    app_client: Callable[..., Any], receiver: Receiver
) -> None:
    http, store = await app_client(callback_url=receiver.url)
    shapes = message_shapes(SEED + 1, SHAPES)
    good = 0
    for shape in shapes:
        response = await http.post(
            "/webhooks/callback/webhook",
            data=shape.body,
            headers={"Content-Type": shape.content_type},
        )
        body = await response.read()
        assert response.status != 500, shape
        if shape.good:
            assert response.status == 200 and body == b"success", (shape, body[:200])
            good += 1
        else:
            _assert_refusal(response.status, body, shape)
    # Every good message was answered on the callback URL; no bad one was.
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        recipients = {item["recipient_id"] for item in receiver.received}
        if len(recipients) >= len({s.sender for s in shapes if s.good}) - 5:
            await asyncio.sleep(0.5)
            break
        await asyncio.sleep(0.1)
    recipients = {item["recipient_id"] for item in receiver.received}
    assert not any(r.startswith("bad-") for r in recipients)
    assert all(r.startswith("ok-") for r in recipients) and len(recipients) >= good * 0.9
    assert await _count(store, Conversation, Conversation.chat_id.like("bad-%")) == 0
    assert (await http.get("/healthz")).status == 200


# ------------------------------------------------------------------ Telegram webhook

SECRET = "fuzz-secret_0123456789"


def update_shapes(seed: int, count: int, api: BotApiStandIn) -> list[Shape]:
    """Telegram webhook bodies: real updates (some with junk text) and everything else."""
    rng = random.Random(seed)
    next_id = iter(range(1000, 1_000_000))

    def good(i: int) -> Shape:
        chat = 700_000 + i
        text = rng.choice(["邻居太吵", "hello", "/start", "欠薪"]) + " " + junk_text(rng, 20) + MARK
        update = api.text_update(chat, text, update_id=next(next_id))
        return Shape("good", _json(update), good=True, sender=str(chat))

    def bad(i: int) -> Shape:
        chat = 900_000 + i
        real = api.text_update(chat, "bad " + MARK, update_id=next(next_id))
        kind = rng.randrange(14)
        if kind == 0:
            value = rng.choice([[], None, 1, "x", True, 1.5, [real], 0])
            return Shape("not object", _json(value))
        if kind == 1:
            return Shape("message str", _json({"update_id": next(next_id), "message": "str"}))
        if kind == 2:
            return Shape("message only str", _json({"message": "str"}))
        if kind == 3:
            big = rng.choice([10**30, -1, 2**63, -(2**63), 2**53 + 1])
            return Shape("update_id range", _json({**real, "update_id": big}))
        if kind == 4:
            wrong: Any = rng.choice(["5", 5.5, True, None, [5], {"id": 5}])
            return Shape("update_id type", _json({**real, "update_id": wrong}))
        if kind == 5:
            return Shape("no update_id", _json({k: v for k, v in real.items() if k != "update_id"}))
        if kind == 6:
            depth = rng.choice([40, 1000, 100_000])
            return Shape("deep", _nested(depth).encode())
        if kind == 7:
            body = f'{{"update_id": {next(next_id)}, "message": {_nested(1000)}}}'
            return Shape("deep message", body.encode())
        if kind == 8:
            message: dict[str, Any] = {
                "text": MARK,
                "chat": rng.choice([None, "x", {"id": "x"}, []]),
            }
            return Shape(
                "malformed message", _json({"update_id": next(next_id), "message": message})
            )
        if kind == 9:
            return Shape("random bytes", bytes(rng.randrange(256) for _ in range(50)))
        if kind == 10:
            return Shape(
                "wrong secret", _json(real), headers={"X-Telegram-Bot-Api-Secret-Token": "no"}
            )
        if kind == 11:
            return Shape("no secret", _json(real), headers={"X-Telegram-Bot-Api-Secret-Token": ""})
        if kind == 12:
            return Shape("charset", _json(real), "application/json; charset=klingon")
        text = json.dumps(real)
        return Shape("truncated", text[: rng.randint(1, len(text) - 1)].encode())

    return [good(i) if rng.random() < 0.15 else bad(i) for i in range(count)]


async def test_telegram_webhook_fuzz_never_500(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Path
) -> None:
    async with BotApiStandIn() as api:
        port = _free_port()
        settings = load_settings(
            database_url=sqlite_url,
            telegram_bot_token=api.token,
            telegram_base_url=api.base_url,
            telegram_base_file_url=api.base_file_url,
            telegram_webhook_url=f"http://127.0.0.1:{port}/webhooks/telegram",
            telegram_webhook_secret=SECRET,
            data_dir=tmp_path / "var",
            http_port=port,
        )
        store = Store.open(settings)
        runner = web.AppRunner(create_app(settings, nlu, store=store))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            shapes = update_shapes(SEED + 2, SHAPES, api)
            url = f"http://127.0.0.1:{port}/webhooks/telegram"
            good_chats: set[int] = set()
            async with aiohttp.ClientSession() as http:
                for shape in shapes:
                    headers = {
                        "Content-Type": shape.content_type,
                        "X-Telegram-Bot-Api-Secret-Token": SECRET,
                        **shape.headers,
                    }
                    async with http.post(url, data=shape.body, headers=headers) as response:
                        body = await response.read()
                        status = response.status
                    assert status != 500, shape
                    if shape.good:
                        assert status == 200, (shape, body[:200])
                        good_chats.add(int(str(shape.sender)))
                        # Answered only after handling: the replies went out already.
                        assert api.calls_to("sendMessage", int(str(shape.sender)))
                    elif shape.name in ("wrong secret", "no secret"):
                        assert status == 403
                        _assert_refusal(status, body, shape)
                    else:
                        _assert_refusal(status, body, shape)
                async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                    assert health.status == 200
            replied = {c.chat_id for c in api.calls_to("sendMessage")}
            assert good_chats <= replied
            assert all(int(str(chat)) < 900_000 for chat in replied)
            assert await _count(store, Conversation, Conversation.chat_id.like("9%")) == 0
        finally:
            await runner.cleanup()
            await store.close()
