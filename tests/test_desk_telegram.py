"""Issue 10's desk findings through real python-telegram-bot and the stand-in Bot API:
Details (1), buttons pressed in a centre's group (2), ratings from an old keyboard (15),
old cards after release (18), times in the configured zone (20), taking over a case
(22), and a mediator's plain message with one active case (23)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from actions import casework
from bot.channels.telegram import TELEGRAM
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import create_app
from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage.models import CaseStatus, Conversation
from tests.support.bot_api import BotApiStandIn
from tests.test_mediator_desk import (
    RESIDENT,
    STATION_CHAT,
    card_of,
    press,
    private,
    setup_network,
)
from tests.test_telegram import Bot, _free_port, count, file_labour_case, running_bot


@contextlib.asynccontextmanager
async def bot_with(url: str, nlu: NLUBackend, tmp_path: Any, **extra: Any) -> AsyncIterator[Bot]:
    """``running_bot`` with extra settings (a time zone, a sweep interval …)."""
    async with BotApiStandIn() as api:
        port = _free_port()
        settings = load_settings(
            database_url=url,
            telegram_bot_token=api.token,
            telegram_base_url=api.base_url,
            telegram_base_file_url=api.base_file_url,
            data_dir=tmp_path / "var",
            http_port=port,
            **extra,
        )
        store = Store.open(settings)
        app = create_app(settings, nlu, store=store)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield Bot(api, store, settings, port, app)
        finally:
            await runner.cleanup()
            await store.close()


async def claimed_case(bot: Bot, mediator: int = 9101) -> tuple[str, int]:
    await setup_network(bot)
    reference = await file_labour_case(bot, RESIDENT)
    card = await card_of(bot, STATION_CHAT, reference)
    await press(bot, STATION_CHAT, mediator, f"claim:{reference}", card)
    await bot.api.wait_for(
        "sendMessage",
        lambda c: c.chat_id == RESIDENT and "受理" in c.params["text"],
        timeout=10,
    )
    return reference, card


# --------------------------------------------------------------------------- finding 1


async def test_details_button_sends_the_case_to_the_private_chat(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        assert bot.app[TELEGRAM].error_handlers, "no PTB error handler registered"
        await setup_network(bot)
        reference = await file_labour_case(bot, RESIDENT)
        card = await card_of(bot, STATION_CHAT, reference)
        await press(bot, STATION_CHAT, 9101, f"details:{reference}", card)
        sent = await bot.api.wait_for(
            "sendMessage", lambda c: c.chat_id == 9101 and reference in c.params["text"], timeout=10
        )
        text = sent[-1].params["text"]
        assert "劳动" in text and "categories." not in text
        assert "138****5678" in text and "13812345678" not in text  # not their case yet
        answers = [a.params.get("text") or "" for a in bot.api.calls_to("answerCallbackQuery")]
        assert not any("失效" in a for a in answers)


# --------------------------------------------------------------------------- finding 2


async def test_resident_buttons_pressed_in_a_group_reach_nothing(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await setup_network(bot)
        reference = await file_labour_case(bot, RESIDENT)
        card = await card_of(bot, STATION_CHAT, reference)
        in_group = len(bot.sent(STATION_CHAT))
        before = len(bot.api.calls_to("answerCallbackQuery"))
        for user in (9101, 9999):
            for data in ("yes", "cat:dispute_labor", f"rate:{reference}:1"):
                await press(bot, STATION_CHAT, user, data, card)
        answers = await bot.api.wait_for("answerCallbackQuery", count=before + 6, timeout=10)
        assert all("失效" in (a.params.get("text") or "") for a in answers[before:])
        await asyncio.sleep(0.5)
        assert len(bot.sent(STATION_CHAT)) == in_group
        assert await count(bot.store, Conversation, Conversation.chat_id == str(STATION_CHAT)) == 0
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
        assert case.rating is None


# -------------------------------------------------------------------------- finding 15


async def test_a_rating_cannot_be_overwritten_from_an_old_keyboard(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        reference, _ = await claimed_case(bot)
        await private(bot, 9101, f"/outcome {reference} agreement")
        await private(bot, 9101, f"/status {reference} resolved")
        asked = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == RESIDENT and f"rate:{reference}:5" in str(c.params),
            timeout=10,
        )
        message_id = int(asked[-1].response["result"]["message_id"])
        bot.api.push_update(bot.api.callback_update(RESIDENT, f"rate:{reference}:2", message_id))
        removed = await bot.api.wait_for(
            "editMessageReplyMarkup",
            lambda c: c.chat_id == RESIDENT and c.params.get("message_id") == message_id,
            timeout=10,
        )
        assert not (removed[-1].params.get("reply_markup") or {}).get("inline_keyboard")
        await bot.settle(RESIDENT)
        # The same message again (an old keyboard, a second device): refused.
        bot.api.push_update(bot.api.callback_update(RESIDENT, f"rate:{reference}:5", message_id))
        await bot.settle(RESIDENT, 0.5)
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            ratings = [
                e.data["rating"]
                for e in await case_repo.case_events(session, case)
                if e.kind == "rating"
            ]
            rows = await casework.report(session)
        assert case.rating == 2 and ratings == [2]
        [row] = [r for r in rows if r.category == "dispute_labor"]
        assert row.mean_rating == 2.0


# -------------------------------------------------------------------------- finding 18


async def test_release_edits_the_old_card_and_tells_the_resident(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        reference, card = await claimed_case(bot)
        assert (
            "受理人" in (await bot.api.wait_for("editMessageText", timeout=10))[-1].params["text"]
        )
        assert reference in await private(bot, 9101, f"/release {reference}")
        await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == RESIDENT and "回到待受理队列" in c.params["text"],
            timeout=10,
        )
        await bot.settle(STATION_CHAT)
        edits = [
            c
            for c in bot.api.calls_to("editMessageText", STATION_CHAT)
            if c.params.get("message_id") == card
        ]
        last = edits[-1].params
        assert "受理人" not in last["text"]
        buttons = [
            b["callback_data"] for row in last["reply_markup"]["inline_keyboard"] for b in row
        ]
        assert f"claim:{reference}" in buttons
        # No second card in the same group: the old one shows the case as it is.
        posted = [c for c in bot.sent(STATION_CHAT) if reference in c.params["text"]]
        assert len(posted) == 1


# -------------------------------------------------------------------------- finding 20


async def test_case_timeline_in_the_configured_time_zone(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with bot_with(sqlite_url, nlu, tmp_path, timezone="America/New_York") as bot:
        reference, _ = await claimed_case(bot)
        text = await private(bot, 9101, f"/case {reference}")
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            first = (await case_repo.case_events(session, case))[0].created_at
        new_york = first.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M")
        shanghai = first.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
        utc = first.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M")
        assert new_york in text
        assert shanghai not in text and utc not in text


# -------------------------------------------------------------------------- finding 22


async def test_who_takes_over_reads_the_transcript_and_gets_the_evidence(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await setup_network(bot)
        reference = await file_labour_case(bot, RESIDENT)
        card = await card_of(bot, STATION_CHAT, reference)
        # Evidence before anyone claims it.
        before = len(bot.sent(RESIDENT))
        bot.api.push_update(bot.api.photo_update(RESIDENT, b"\xff\xd8slip", file_size=9000))
        await bot.replies(RESIDENT, before + 1)
        await press(bot, STATION_CHAT, 9101, f"claim:{reference}", card)
        await bot.api.wait_for("sendPhoto", lambda c: c.chat_id == 9101, timeout=10)
        bot.api.push_update(bot.api.text_update(RESIDENT, "老板今天又说下个月才发"))
        await bot.api.wait_for(
            "sendMessage", lambda c: c.chat_id == 9101 and "下个月" in c.params["text"], timeout=10
        )
        await private(bot, 9101, f"/reply {reference} 请把工资条拍给我")
        await private(bot, 9101, f"/release {reference}")
        # Another mediator of the station takes over: the file and the words.
        await press(bot, STATION_CHAT, 9102, f"claim:{reference}", card)
        await bot.api.wait_for("sendPhoto", lambda c: c.chat_id == 9102, timeout=10)
        text = await private(bot, 9102, f"/case {reference}")
        assert "老板今天又说下个月才发" in text and "请把工资条拍给我" in text
        assert "13812345678" in text  # now their case: the full number


# -------------------------------------------------------------------------- finding 23


async def test_plain_message_from_a_mediator_with_one_case_reaches_the_resident(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        reference, _ = await claimed_case(bot)
        answer = await private(bot, 9101, "您好,我是负责您案件的调解员,明天上午给您打电话")
        assert "已发送" in answer and reference in answer
        told = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == RESIDENT and "明天上午给您打电话" in c.params["text"],
            timeout=10,
        )
        assert "调解员1" in told[-1].params["text"]
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            kinds = [e.kind for e in await case_repo.case_events(session, case)]
        assert "message_out" in kinds and case.status == CaseStatus.CLAIMED


async def test_follow_up_request_reaches_the_supervisor_with_the_comment(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        reference, _ = await claimed_case(bot)
        await private(bot, 9101, f"/status {reference} resolved")
        asked = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == RESIDENT and f"rate:{reference}:1" in str(c.params),
            timeout=10,
        )
        message_id = int(asked[-1].response["result"]["message_id"])
        bot.api.push_update(bot.api.callback_update(RESIDENT, f"rate:{reference}:1", message_id))
        await bot.api.wait_for(
            "sendMessage", lambda c: c.chat_id == 9104 and reference in c.params["text"], timeout=10
        )
        await bot.settle(RESIDENT)
        bot.api.push_update(bot.api.text_update(RESIDENT, "调解员态度很差,问题也没解决"))
        told = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == 9104 and "态度很差" in c.params["text"],
            timeout=10,
        )
        assert reference in told[-1].params["text"]
