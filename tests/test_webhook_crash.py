"""Finding 5: a crash between receiving a Telegram update and handling it loses nothing.

A real ``tiaojie run`` process in webhook mode (stand-in Bot API on 127.0.0.1, a SQLite
file) receives an update; while the update is being handled — its text is with the NLU
server, a stand-in Rasa that holds the first parse — the process is killed with
SIGKILL. Telegram got no 200, so it delivers the update again to the restarted process,
which handles it; a further redelivery is recognised and not handled twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from storage.db import create_engine, session_factory
from storage.models import Conversation, ProcessedUpdate
from tests.support.bot_api import BotApiStandIn

ROOT = Path(__file__).resolve().parent.parent
SECRET = "crash-test_secret-42"
CHAT = 4242
TEXT = "你好"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RasaStandIn:
    """A Rasa server whose first parse never answers (until the test says so)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.arrived = asyncio.Event()
        self.hold = True
        self.parses = 0
        self._runner: web.AppRunner | None = None

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"model_file": "stand-in.tar.gz", "num_active_training_jobs": 0})

    async def parse(self, request: web.Request) -> web.Response:
        text = (await request.json())["text"]
        self.parses += 1
        if self.hold:
            self.arrived.set()
            await asyncio.sleep(3600)
        intent = {"name": "greet", "confidence": 0.97}
        return web.json_response(
            {"text": text, "intent": intent, "entities": [], "intent_ranking": [intent]}
        )

    async def __aenter__(self) -> RasaStandIn:
        app = web.Application()
        app.router.add_get("/status", self.status)
        app.router.add_post("/model/parse", self.parse)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def _start(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert process.returncode is None, await process.stderr.read()  # type: ignore[union-attr]
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientConnectorError:
                pass
            await asyncio.sleep(0.2)
    process.kill()
    raise AssertionError("tiaojie run did not become healthy")


async def _post(url: str, update: dict[str, Any]) -> int:
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=json.dumps(update), headers=headers) as response,
    ):
        return response.status


async def _counts(url: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            conversations = await session.execute(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.chat_id == str(CHAT))
            )
            version = await session.execute(
                select(Conversation.version).where(Conversation.chat_id == str(CHAT))
            )
            updates = await session.execute(
                select(func.count())
                .select_from(ProcessedUpdate)
                .where(ProcessedUpdate.source == "telegram")
            )
            return (
                int(conversations.scalar_one()),
                int(version.scalar_one_or_none() or 0),
                int(updates.scalar_one()),
            )
    finally:
        await engine.dispose()


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_update_killed_mid_handling_is_redelivered_and_handled_once(
    sqlite_url: str, nlu_model_dir: Path, tmp_path: Path, processes: list[Any]
) -> None:
    port = _free_port()
    webhook = f"http://127.0.0.1:{port}/webhooks/telegram"
    async with BotApiStandIn() as api, RasaStandIn() as rasa:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TIAOJIE_", "TELEGRAM_", "RASA_"))
        }
        env.update(
            TIAOJIE_DATABASE_URL=sqlite_url,
            TIAOJIE_DATA_DIR=str(tmp_path / "var"),
            TIAOJIE_HTTP_PORT=str(port),
            TIAOJIE_MODEL_DIR=str(nlu_model_dir),
            TIAOJIE_NLU_BACKEND="rasa",
            RASA_URL=f"http://127.0.0.1:{rasa.port}",
            RASA_TIMEOUT="30",
            TELEGRAM_BOT_TOKEN=api.token,
            TELEGRAM_BASE_URL=api.base_url,
            TELEGRAM_BASE_FILE_URL=api.base_file_url,
            TELEGRAM_WEBHOOK_URL=webhook,
            TELEGRAM_WEBHOOK_SECRET=SECRET,
            NO_PROXY="127.0.0.1,localhost",
        )
        first = await _start(env, port)
        processes.append(first)
        update = api.text_update(CHAT, TEXT, update_id=777_001)
        delivery = asyncio.create_task(_post(webhook, update))
        # The update is received and being handled (its text is at the NLU) ...
        await asyncio.wait_for(rasa.arrived.wait(), timeout=30)
        await asyncio.sleep(0.2)
        assert not delivery.done(), "answered before the update was handled"
        # ... when the process dies.
        first.send_signal(signal.SIGKILL)
        await first.wait()
        with pytest.raises(aiohttp.ClientError):
            await delivery
        assert api.calls_to("sendMessage", CHAT) == []
        assert await _counts(sqlite_url) == (0, 0, 0)

        # Telegram got no 200, so it delivers again, to the restarted process.
        rasa.hold = False
        second = await _start(env, port)
        processes.append(second)
        assert await _post(webhook, update) == 200
        # 200 came after handling: the replies are already out.
        sent = len(api.calls_to("sendMessage", CHAT))
        assert sent >= 1
        assert await _counts(sqlite_url) == (1, 1, 1)
        # A further redelivery (say our 200 was lost) is not handled twice.
        assert await _post(webhook, update) == 200
        await asyncio.sleep(0.5)
        assert len(api.calls_to("sendMessage", CHAT)) == sent
        assert await _counts(sqlite_url) == (1, 1, 1)
        second.terminate()
        await asyncio.wait_for(second.wait(), timeout=20)
