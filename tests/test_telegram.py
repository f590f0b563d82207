"""End to end through the real python-telegram-bot, against a stand-in Bot API server.

The bot runs inside our real aiohttp application (polling or webhook mode), with the
real built-in NLU and a real SQLite store; only Telegram's servers are replaced by the
stand-in on 127.0.0.1, which records every call the bot makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from bot.runtime import Store
from bot.settings import Settings, load_settings
from bot.web import create_app
from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage.conversations import load_conversation
from storage.models import Case, Conversation
from tests.support.bot_api import ApiCall, BotApiStandIn

SECRET = "s3cret-token_for-tests"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Bot:
    api: BotApiStandIn
    store: Store
    settings: Settings
    port: int
    app: web.Application

    async def say(self, chat_id: int, text: str, **kw: Any) -> int:
        return self.api.push_update(self.api.text_update(chat_id, text, **kw))

    async def replies(self, chat_id: int, count: int) -> list[ApiCall]:
        return await self.api.wait_for(
            "sendMessage", lambda c: c.chat_id == chat_id, timeout=10, count=count
        )

    def sent(self, chat_id: int) -> list[ApiCall]:
        return self.api.calls_to("sendMessage", chat_id)

    def last_buttons(self, chat_id: int) -> tuple[int, list[str]]:
        """The message id and callback payloads of the last message with inline buttons."""
        for call in reversed(self.sent(chat_id)):
            markup = call.params.get("reply_markup") or {}
            if "inline_keyboard" in markup:
                payloads = [b["callback_data"] for row in markup["inline_keyboard"] for b in row]
                return int(call.response["result"]["message_id"]), payloads
        raise AssertionError("no message with inline buttons")

    async def press(self, chat_id: int, payload: str) -> None:
        message_id, payloads = self.last_buttons(chat_id)
        assert payload in payloads, payloads
        before = len(self.sent(chat_id))
        self.api.push_update(self.api.callback_update(chat_id, payload, message_id))
        await self.replies(chat_id, before + 1)

    async def settle(self, chat_id: int, pause: float = 0.3) -> None:
        """Wait until the bot has stopped sending to ``chat_id`` for ``pause`` seconds."""
        count = -1
        while count != len(self.sent(chat_id)):
            count = len(self.sent(chat_id))
            await asyncio.sleep(pause)


@contextlib.asynccontextmanager
async def running_bot(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any, *, webhook: bool = False
) -> AsyncIterator[Bot]:
    async with BotApiStandIn() as api:
        port = _free_port()
        overrides: dict[str, Any] = {
            "database_url": sqlite_url,
            "telegram_bot_token": api.token,
            "telegram_base_url": api.base_url,
            "telegram_base_file_url": api.base_file_url,
            "data_dir": tmp_path / "var",
            "http_port": port,
        }
        if webhook:
            overrides["telegram_webhook_url"] = f"http://127.0.0.1:{port}/webhooks/telegram"
            overrides["telegram_webhook_secret"] = SECRET
        settings = load_settings(**overrides)
        store = Store.open(settings)
        app = create_app(settings, nlu, store=store)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            yield Bot(api, store, settings, port, app)
        finally:
            await runner.cleanup()
            await store.close()


@pytest.fixture
async def bot(sqlite_url: str, nlu: NLUBackend, tmp_path: Any) -> AsyncIterator[Bot]:
    async with running_bot(sqlite_url, nlu, tmp_path) as running:
        yield running


@dataclass
class Saved:
    """A chat's saved conversation, as the store has it."""

    state: dict[str, Any]
    version: int


async def count(store: Store, model: Any, *where: Any) -> int:
    async with store.sessions() as session:
        return int(
            (
                await session.execute(select(func.count()).select_from(model).where(*where))
            ).scalar_one()
        )


async def file_labour_case(bot: Bot, chat: int) -> str:
    """A resident goes through the whole intake by text and buttons; returns the reference."""
    await bot.say(chat, "老板拖欠我们三个月工资,一共8000元,厂在福永,十几个工友都没拿到钱")
    calls = await bot.replies(chat, 3)
    assert "隐私" in calls[1].params["text"]
    assert "劳动争议" in calls[2].params["text"]
    await bot.press(chat, "yes")
    await bot.settle(chat)
    _, payloads = bot.last_buttons(chat)
    if payloads == ["yes", "no"]:  # confirm what the first message already said
        await bot.press(chat, "yes")
        await bot.settle(chat)
    for _ in range(8):
        _, payloads = bot.last_buttons(chat)
        text = bot.sent(chat)[-1].params["text"]
        before = len(bot.sent(chat))
        if any(p.startswith(("street:", "comm:")) for p in payloads):
            break
        if "单位" in text:
            await bot.say(chat, "宏达电子厂")
            await bot.replies(chat, before + 1)
        elif any(p.startswith("choice:") for p in payloads):
            await bot.press(chat, "choice:wages")
        elif "skip" in payloads:
            await bot.press(chat, "skip")
        else:
            await bot.say(chat, "宏达电子厂")
            await bot.replies(chat, before + 1)
        await bot.settle(chat, 0.15)
    _, payloads = bot.last_buttons(chat)
    if "street:fuyong" in payloads:
        await bot.press(chat, "street:fuyong")
        await bot.settle(chat, 0.15)
    _, payloads = bot.last_buttons(chat)
    if any(p.startswith("comm:") for p in payloads):
        await bot.press(chat, "comm:凤凰")
        await bot.settle(chat, 0.15)
    # Phone: the resident shares their contact with the reply-keyboard button.
    keyboard = bot.sent(chat)[-1].params.get("reply_markup", {}).get("keyboard")
    assert keyboard, [c.describe() for c in bot.sent(chat)[-4:]]
    assert keyboard[0][0]["request_contact"] is True
    before = len(bot.sent(chat))
    bot.api.push_update(bot.api.contact_update(chat, "+8613812345678"))
    await bot.replies(chat, before + 1)
    await bot.settle(chat, 0.15)
    review = bot.sent(chat)[-1].params["text"]  # consent is asked here, at the review
    assert "138****5678" in review and "13812345678" not in review
    assert "是否同意" in review
    await bot.press(chat, "submit")  # "✅ 同意提供给调解员,提交"
    await bot.settle(chat)
    filed = [c.params["text"] for c in bot.sent(chat) if "BA-" in c.params["text"]]
    assert filed, [c.params["text"] for c in bot.sent(chat)[-3:]]
    reference = next(word for word in filed[-1].replace("(", " ").split() if "BA-" in word)
    return reference[reference.index("BA-") : reference.index("BA-") + 16]


async def test_resident_files_a_case_over_telegram(bot: Bot) -> None:
    chat = 5001
    reference = await file_labour_case(bot, chat)
    async with bot.store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        assert case.category == "dispute_labor"
        assert case.street == "福永" and case.community == "凤凰"
        assert case.centre is not None and case.centre.code == "fuyong-fenghuang"
        assert case.department is not None and case.department.code == "labour_bureau"
        assert case.fields["employer"] == "宏达电子厂" and case.fields["issue"] == "wages"
        assert case.fields.get("amount") == 8000
        assert case.phone_masked == "138****5678"
        assert bot.store.vault.decrypt(case.phone_encrypted) == "13812345678"
        assert case.contact_consent is True
        assert "8000元" in case.resident_words
        kinds = [e.kind for e in await case_repo.case_events(session, case)]
        assert kinds[:2] == ["filed", "routed"]
    # Every button press was answered, and all text went out HTML-escaped.
    assert len(bot.api.calls_to("answerCallbackQuery")) >= 4
    assert all(c.params.get("parse_mode") == "HTML" for c in bot.sent(chat))
    # The self-help for wage arrears follows the reference.
    assert "一年" in bot.sent(chat)[-1].params["text"]


async def post_update(bot: Bot, update: dict[str, Any], secret: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    url = f"http://127.0.0.1:{bot.port}/webhooks/telegram"
    async with aiohttp.ClientSession() as http, http.post(url, json=update, headers=headers) as r:
        return r.status


async def test_webhook_secret_and_duplicate_updates(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path, webhook=True) as bot:
        assert bot.api.webhook_url.endswith("/webhooks/telegram")
        assert bot.api.webhook_secret_token == SECRET
        chat = 5003
        update = bot.api.text_update(chat, "楼上邻居天天半夜蹦迪,吵得孩子睡不着")
        update["update_id"] = 9001
        # Forged: no secret, or the wrong one. Refused, and nothing is processed.
        assert await post_update(bot, update, None) == 403
        assert await post_update(bot, update, "wrong-secret") == 403
        assert await post_update(bot, update, "") == 403
        await asyncio.sleep(0.3)
        assert bot.sent(chat) == []
        assert await count(bot.store, Conversation, Conversation.chat_id == str(chat)) == 0
        # The real one, then Telegram redelivering the same update id.
        assert await bot.api.deliver_webhook(update) == 200
        await bot.replies(chat, 3)
        await bot.settle(chat)
        sent = len(bot.sent(chat))
        assert await bot.api.deliver_webhook(update) == 200
        await asyncio.sleep(0.5)
        assert len(bot.sent(chat)) == sent
        # Not JSON at all: a clear 400, nothing processed.
        url = f"http://127.0.0.1:{bot.port}/webhooks/telegram"
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=b"\x00garbage", headers=headers) as response,
        ):
            assert response.status == 400


async def test_two_updates_for_one_chat_at_once_keep_order(bot: Bot) -> None:
    chat = 5004
    await bot.say(chat, "房东不退押金三千块")
    await bot.replies(chat, 3)
    message_id, _ = bot.last_buttons(chat)
    # Two presses arrive together; the second must see the state the first left.
    bot.api.push_update(bot.api.callback_update(chat, "yes", message_id))
    bot.api.push_update(bot.api.text_update(chat, "/status"))
    await bot.settle(chat, 0.5)
    async with bot.store.sessions() as session:
        state = Saved(*await load_conversation(session, "telegram", str(chat)))
    assert state.version == 3  # three events, three saves, none lost
    assert state.state["draft"]["category"] == "dispute_tenancy"
    texts = [c.params["text"] for c in bot.sent(chat)]
    assert any("还没有提交过案件" in text for text in texts)


async def test_photo_evidence_sticker_and_long_message(bot: Bot) -> None:
    chat = 5005
    reference = await file_labour_case(bot, chat)
    before = len(bot.sent(chat))
    bot.api.push_update(bot.api.photo_update(chat, b"\xff\xd8jpeg", file_size=150_000))
    await bot.replies(chat, before + 1)
    assert reference in bot.sent(chat)[-1].params["text"]
    async with bot.store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        evidence = [e for e in await case_repo.case_events(session, case) if e.kind == "evidence"]
    assert len(evidence) == 1 and evidence[0].data["kind"] == "photo"
    assert evidence[0].data["size"] == 150_000
    # Too big a document: refused politely, nothing attached.
    before = len(bot.sent(chat))
    bot.api.push_update(bot.api.document_update(chat, b"%PDF", file_size=25 * 1024 * 1024))
    await bot.replies(chat, before + 1)
    assert "20" in bot.sent(chat)[-1].params["text"]
    # A sticker: "please type".
    before = len(bot.sent(chat))
    bot.api.push_update(bot.api.sticker_update(chat))
    await bot.replies(chat, before + 1)
    assert "文字" in bot.sent(chat)[-1].params["text"]
    # A 5,000-character message is taken as a new description, not dropped.
    other = 5006
    await bot.say(other, "我要投诉物业乱收费," + "物业费又涨了" * 830)
    calls = await bot.replies(other, 3)
    assert all(len(c.params["text"]) <= 4096 for c in calls)
    async with bot.store.sessions() as session:
        state, _ = await load_conversation(session, "telegram", str(other))
    assert len(state["draft"]["words"][0]) > 4900


async def test_forged_callback_data_is_refused(bot: Bot) -> None:
    chat = 5007
    await bot.say(chat, "邻居家狗天天叫")
    await bot.replies(chat, 3)
    message_id, _ = bot.last_buttons(chat)
    bot.api.push_update(bot.api.callback_update(chat, "drop table cases; --", message_id))
    answered = await bot.api.wait_for("answerCallbackQuery", timeout=5)
    assert answered[-1].params.get("text")
    await asyncio.sleep(0.3)
    async with bot.store.sessions() as session:
        state, _ = await load_conversation(session, "telegram", str(chat))
    assert state["step"] == "confirm_category"


def take_away(db: Path) -> None:
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists():
            path.rename(path.with_name(path.name + ".away"))
    db.mkdir()


def bring_back(db: Path) -> None:
    db.rmdir()
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        away = path.with_name(path.name + ".away")
        if away.exists():
            away.rename(path)


async def test_database_down_mid_conversation(bot: Bot, tmp_path: Any) -> None:
    chat = 5008
    await bot.say(chat, "快递丢了,快递公司不赔")
    await bot.replies(chat, 3)
    await bot.settle(chat)
    async with bot.store.sessions() as session:
        before = Saved(*await load_conversation(session, "telegram", str(chat)))
    # The database goes away: its file is replaced by a directory SQLite cannot open.
    db_path = Path(bot.settings.database_url.split("///", 1)[1])
    await bot.store.engine.dispose()
    take_away(db_path)
    sent = len(bot.sent(chat))
    message_id, _ = bot.last_buttons(chat)
    bot.api.push_update(bot.api.callback_update(chat, "yes", message_id))
    await bot.replies(chat, sent + 1)
    assert "请过一会儿再发" in bot.sent(chat)[-1].params["text"]
    # It comes back: nothing was half written, and the resident can carry on.
    bring_back(db_path)
    async with bot.store.sessions() as session:
        after = Saved(*await load_conversation(session, "telegram", str(chat)))
    assert after.version == before.version and after.state == before.state
    assert await count(bot.store, Case) == 0
    sent = len(bot.sent(chat))
    bot.api.push_update(bot.api.callback_update(chat, "yes", message_id))
    await bot.replies(chat, sent + 1)
    assert "请过一会儿再发" not in bot.sent(chat)[-1].params["text"]
