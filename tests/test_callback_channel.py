"""Rasa's callback channel against a real bridge endpoint on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from actions.ports import DeliveryError
from bot.channels.callback import CallbackPort
from bot.dialogue.model import Button, Reply
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import RESIDENT_PORTS, create_app
from nlu.interface import NLUBackend

URL = "/webhooks/callback/webhook"
TOKEN = "callback-token-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Bridge:
    """The bridge's callback endpoint: records bodies and headers; ``answers`` scripts
    the status codes of the next calls (200 once the script runs out)."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    calls: int = 0

    async def wait(self, count: int, within: float = 15) -> None:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"only {len(self.received)} of {count} arrived"
            await asyncio.sleep(0.02)


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    port = _free_port()
    state = Bridge(f"http://127.0.0.1:{port}/bridge")

    async def collect(request: web.Request) -> web.Response:
        state.calls += 1
        status = state.answers.pop(0) if state.answers else 200
        if status == 200:
            state.received.append(await request.json())
            state.headers.append(dict(request.headers))
            state.arrived.append(time.monotonic())
        return web.Response(status=status, text="ok" if status == 200 else "no")

    app = web.Application()
    app.router.add_post("/bridge", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state
    await runner.cleanup()


@pytest.fixture
async def serve(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    opened: list[tuple[TestClient, Store]] = []

    async def make(**overrides: Any) -> TestClient:
        settings = load_settings(database_url=sqlite_url, data_dir=tmp_path / "var", **overrides)
        store = Store.open(settings)
        client = TestClient(TestServer(create_app(settings, nlu, store=store)))
        await client.start_server()
        opened.append((client, store))
        return client

    yield make
    for client, store in opened:
        await client.close()
        await store.close()


async def test_message_answered_at_once_and_replies_posted_to_the_bridge(
    serve: Callable[..., Any], bridge: Bridge
) -> None:
    http = await serve(callback_url=bridge.url)
    started = time.monotonic()
    response = await http.post(URL, json={"sender": "cb-1", "message": "房东不退押金三千块"})
    assert response.status == 200 and await response.text() == "success"
    assert time.monotonic() - started < 2
    await bridge.wait(2)
    await asyncio.sleep(0.3)
    assert all(item["recipient_id"] == "cb-1" for item in bridge.received)
    assert any(item.get("buttons") for item in bridge.received)
    button = bridge.received[-1]["buttons"][0]
    assert set(button) == {"title", "payload"}
    # Messages of one sender are handled and answered in order.
    before = len(bridge.received)
    for text in ("yes", "/status"):
        assert (await http.post(URL, json={"sender": "cb-1", "message": text})).status == 200
    await bridge.wait(before + 2)
    await asyncio.sleep(0.5)
    assert bridge.received[-1]["text"]  # /status answered last


async def test_mediator_message_through_the_port_arrives_within_a_second(
    serve: Callable[..., Any], bridge: Bridge
) -> None:
    http = await serve(callback_url=bridge.url, rest_token=TOKEN)
    port = http.app[RESIDENT_PORTS].get("callback")
    assert isinstance(port, CallbackPort)
    reply = Reply(
        "【BA-20261130-0002】调解员 阿芳:您好,我已受理",
        buttons=((Button("好的", "yes"),),),
    )
    sent = time.monotonic()
    await port.send("cb-2", [reply], language="zh")
    await bridge.wait(1, within=1)
    assert bridge.arrived[0] - sent < 1.0
    assert bridge.received[0] == {
        "recipient_id": "cb-2",
        "text": "【BA-20261130-0002】调解员 阿芳:您好,我已受理",
        "buttons": [{"title": "好的", "payload": "yes"}],
    }
    # The bridge can tell our calls from forgeries.
    assert bridge.headers[0]["Authorization"] == f"Bearer {TOKEN}"


async def test_a_failing_bridge_is_retried_then_reported(bridge: Bridge) -> None:
    port = CallbackPort(bridge.url, attempts=4, backoff=0.01)
    await port.start()
    try:
        bridge.answers = [503, 502]
        await port.send("cb-3", [Reply("第一条")], language="zh")
        assert bridge.calls == 3 and [r["text"] for r in bridge.received] == ["第一条"]
        bridge.answers = [503] * 10
        with pytest.raises(DeliveryError) as failed:
            await port.send("cb-3", [Reply("第二条")], language="zh")
        assert failed.value.permanent is False and bridge.calls == 3 + 4
        bridge.answers = [400]
        with pytest.raises(DeliveryError) as refused:
            await port.send("cb-3", [Reply("第三条")], language="zh")
        assert refused.value.permanent is True and bridge.calls == 3 + 4 + 1
    finally:
        await port.close()


async def test_nobody_listening_is_retried_then_reported() -> None:
    port = CallbackPort(f"http://127.0.0.1:{_free_port()}/gone", attempts=3, backoff=0.01)
    try:
        with pytest.raises(DeliveryError) as failed:
            await port.send("cb-4", [Reply("hello")], language="en")
        assert failed.value.permanent is False
    finally:
        await port.close()


async def test_without_a_callback_url_the_channel_is_not_mounted(
    serve: Callable[..., Any],
) -> None:
    http = await serve()
    response = await http.post(URL, json={"sender": "x", "message": "hi"})
    assert response.status == 404
    assert http.app[RESIDENT_PORTS].get("callback") is None
    assert http.app[RESIDENT_PORTS].channels == ["console", "rest"]
