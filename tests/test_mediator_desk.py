"""The mediators' desk end to end: real python-telegram-bot against the stand-in Bot API.

A resident files; the centre's group gets the card; a mediator claims it; the resident
is told; messages and photos are relayed both ways; notes, outcome, resolution; the
resident rates; the report counts it. Plus: 20 simultaneous claims, refusals for
everyone who may not act, escalation by the sweep, transfer and release.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from actions import casework
from bot.web import DESK_SERVICE
from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage.models import CaseStatus, Centre, MediatorRole
from storage.people import add_mediator
from tests.test_telegram import Bot, file_labour_case, running_bot

STATION_CHAT = -1001001  # 凤凰社区多元调处站's group
STREET_CHAT = -1001002  # 福永街道分中心's group
XIXIANG_CHAT = -1001003
RESIDENT = 6001


async def setup_network(bot: Bot) -> None:
    async with bot.store.sessions.begin() as session:
        for code, chat in (
            ("fuyong-fenghuang", STATION_CHAT),
            ("fuyong", STREET_CHAT),
            ("xixiang", XIXIANG_CHAT),
        ):
            await session.execute(
                update(Centre).where(Centre.code == code).values(telegram_chat_id=chat)
            )
            bot.api.add_chat(chat, "supergroup", title=code)
        for ident, centre, role in (
            ("9101", "fuyong-fenghuang", MediatorRole.MEDIATOR),
            ("9102", "fuyong-fenghuang", MediatorRole.MEDIATOR),
            ("9103", "xixiang", MediatorRole.MEDIATOR),
            ("9104", "fuyong", MediatorRole.SUPERVISOR),
            ("9105", "fuyong-fenghuang", MediatorRole.MEDIATOR),
        ):
            await add_mediator(
                session,
                channel="telegram",
                external_id=ident,
                display_alias=f"调解员{ident[-1]}",
                centre_code=centre,
                role=role,
            )
        from storage.people import deactivate_mediator

        await deactivate_mediator(session, "telegram", "9105")
    for ident in (9101, 9102, 9103, 9104, 9105, 9999):
        bot.api.add_chat(ident, "private")


async def card_of(bot: Bot, chat: int, reference: str) -> int:
    calls = await bot.api.wait_for(
        "sendMessage", lambda c: c.chat_id == chat and reference in c.params["text"], timeout=10
    )
    return int(calls[-1].response["result"]["message_id"])


async def press(bot: Bot, chat: int, user: int, data: str, message_id: int) -> None:
    bot.api.push_update(bot.api.callback_update(chat, data, message_id, user_id=user))


async def private(bot: Bot, user: int, text: str, **kw: Any) -> str:
    before = len(bot.sent(user))
    bot.api.push_update(bot.api.text_update(user, text, user_id=user, **kw))
    calls = await bot.replies(user, before + 1)
    return str(calls[-1].params["text"])


async def test_full_mediation_loop(sqlite_url: str, nlu: NLUBackend, tmp_path: Any) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await setup_network(bot)
        reference = await file_labour_case(bot, RESIDENT)
        card = await card_of(bot, STATION_CHAT, reference)
        posted = bot.api.calls_to("sendMessage", STATION_CHAT)[-1].params
        assert "138****5678" in posted["text"] and "13812345678" not in posted["text"]
        payloads = [
            b["callback_data"] for row in posted["reply_markup"]["inline_keyboard"] for b in row
        ]
        assert payloads == [f"claim:{reference}", f"details:{reference}"]

        # Claim: the card changes, the mediator is confirmed, the resident is told.
        await press(bot, STATION_CHAT, 9101, f"claim:{reference}", card)
        edited = await bot.api.wait_for("editMessageText", timeout=10)
        assert "调解员1" in edited[-1].params["text"]
        told = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == RESIDENT and "调解员1" in c.params["text"],
            timeout=10,
        )
        assert reference in told[-1].params["text"]

        # Relay, resident → mediator (text and photo), then mediator → resident.
        bot.api.push_update(bot.api.text_update(RESIDENT, "老板今天又说下个月才发"))
        relayed = await bot.api.wait_for(
            "sendMessage", lambda c: c.chat_id == 9101 and "下个月" in c.params["text"], timeout=10
        )
        assert reference in relayed[-1].params["text"]
        relay_id = int(relayed[-1].response["result"]["message_id"])
        bot.api.push_update(bot.api.photo_update(RESIDENT, b"\xff\xd8pay-slip", file_size=9000))
        await bot.api.wait_for("sendPhoto", lambda c: c.chat_id == 9101, timeout=10)
        update_ = bot.api.text_update(
            9101, "收到,我明天联系厂方", user_id=9101, reply_to_message_id=relay_id
        )
        bot.api.push_update(update_)
        back = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == RESIDENT and "明天联系厂方" in c.params["text"],
            timeout=10,
        )
        assert "调解员1" in back[-1].params["text"]
        await bot.api.wait_for(
            "sendMessage", lambda c: c.chat_id == 9101 and "已发送" in c.params["text"], timeout=10
        )
        assert "已发送" in await private(bot, 9101, f"/reply {reference} 请带上工资条")

        # Case work by the mediator.
        assert "备注" in await private(bot, 9101, f"/note {reference} 已电话联系老板")
        details = await private(bot, 9101, f"/case {reference}")
        assert "13812345678" in details  # the case's own mediator sees the full number
        assert reference in await private(bot, 9101, "/mine")
        await private(bot, 9101, f"/status {reference} in_mediation")
        await private(bot, 9101, f"/outcome {reference} agreement")
        await private(bot, 9101, f"/status {reference} resolved")
        asked = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == RESIDENT and "达成调解协议" in c.params["text"],
            timeout=10,
        )
        rating_buttons = asked[-1].params["reply_markup"]["inline_keyboard"][0]
        assert [b["callback_data"] for b in rating_buttons][-1] == f"rate:{reference}:5"

        # The resident rates 2 and comments: the supervisor is asked to call back.
        message_id = int(asked[-1].response["result"]["message_id"])
        bot.api.push_update(bot.api.callback_update(RESIDENT, f"rate:{reference}:2", message_id))
        await bot.api.wait_for(
            "sendMessage", lambda c: c.chat_id == 9104 and reference in c.params["text"], timeout=10
        )
        bot.api.push_update(bot.api.text_update(RESIDENT, "等了好久才有人理"))
        await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == RESIDENT and "意见已记录" in c.params["text"],
            timeout=10,
        )

        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            kinds = [e.kind for e in await case_repo.case_events(session, case)]
            rows = await casework.report(session)
        assert case.status == CaseStatus.RESOLVED and case.rating == 2
        assert case.rating_comment == "等了好久才有人理"
        for kind in (
            "announced",
            "claim",
            "message_in",
            "message_out",
            "note",
            "outcome",
            "rating",
            "follow_up_requested",
        ):
            assert kind in kinds, kind
        assert kinds.count("message_in") == 2 and kinds.count("message_out") == 2
        [row] = [r for r in rows if r.category == "dispute_labor"]
        assert row.resolved == 1 and row.mean_rating == 2.0


async def test_twenty_mediators_press_claim_at_once(
    db_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(db_url, nlu, tmp_path) as bot:
        await setup_network(bot)
        async with bot.store.sessions.begin() as session:
            for n in range(20):
                await add_mediator(
                    session,
                    channel="telegram",
                    external_id=str(9200 + n),
                    display_alias=f"甲{n}",
                    centre_code="fuyong-fenghuang",
                )
        reference = await file_labour_case(bot, RESIDENT)
        card = await card_of(bot, STATION_CHAT, reference)
        before = len(bot.api.calls_to("answerCallbackQuery"))
        for n in range(20):
            await press(bot, STATION_CHAT, 9200 + n, f"claim:{reference}", card)
        answers = await bot.api.wait_for("answerCallbackQuery", count=before + 20, timeout=30)
        claim_answers = answers[before:]
        won = [a for a in claim_answers if "您已受理" in (a.params.get("text") or "")]
        lost = [a for a in claim_answers if "已由" in (a.params.get("text") or "")]
        assert len(won) == 1 and len(lost) == 19, [a.params.get("text") for a in claim_answers]
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            kinds = [e.kind for e in await case_repo.case_events(session, case)]
        assert kinds.count("claim") == 1 and case.status == CaseStatus.CLAIMED


async def test_refusals_change_nothing(sqlite_url: str, nlu: NLUBackend, tmp_path: Any) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await setup_network(bot)
        reference = await file_labour_case(bot, RESIDENT)
        card = await card_of(bot, STATION_CHAT, reference)
        commands = [
            "/queue",
            "/mine",
            f"/case {reference}",
            f"/note {reference} x",
            f"/status {reference} resolved",
            f"/outcome {reference} agreement",
            f"/transfer {reference} xixiang 测试",
            f"/release {reference}",
            f"/reply {reference} hi",
        ]
        for user in (9999, 9105):  # a stranger, a deactivated mediator
            for command in commands:
                answer = await private(bot, user, command)
                assert "调解员" in answer  # "only for registered mediators" / deactivated
        # Mediator of another centre: may not claim, see or change this case.
        for command in commands[2:]:
            answer = await private(bot, 9103, command)
            assert "权限" in answer, (command, answer)
        for user in (9999, 9105, 9103):
            await press(bot, STATION_CHAT, user, f"claim:{reference}", card)
        await press(bot, STATION_CHAT, 9101, "claim:../../etc/passwd", card)
        await asyncio.sleep(1.0)
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            kinds = [e.kind for e in await case_repo.case_events(session, case)]
        assert case.status == CaseStatus.NEW and case.mediator_id is None
        assert not {"claim", "note", "outcome", "transfer", "status_change"} & set(kinds)
        assert not bot.api.calls_to("editMessageText")


async def test_sweep_escalates_and_announces_upward(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await setup_network(bot)
        reference = await file_labour_case(bot, RESIDENT)
        await card_of(bot, STATION_CHAT, reference)
        async with bot.store.sessions() as session:
            due = (await case_repo.get_case(session, reference)).escalate_at
        the_desk = bot.app[DESK_SERVICE]
        quiet = await the_desk.sweep(due - timedelta(minutes=1))
        assert quiet["escalated"] == 0 and quiet["announced"] == 0
        assert (await the_desk.sweep(due + timedelta(seconds=1)))["escalated"] == 1
        await card_of(bot, STREET_CHAT, reference)
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
        assert case.centre.code == "fuyong" and case.escalation_level == 1
        # Queues follow: the street's supervisor sees it; then transfer and release.
        assert reference in await private(bot, 9104, "/queue")
        answer = await private(bot, 9104, f"/transfer {reference} xixiang 居民住在西乡")
        assert "西乡" in answer
        await card_of(bot, XIXIANG_CHAT, reference)
        assert reference in await private(bot, 9103, "/queue")


async def test_urgent_case_goes_to_centre_and_parent_at_once(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await setup_network(bot)
        reference = await file_labour_case(bot, RESIDENT)
        await card_of(bot, STATION_CHAT, reference)
        bot.api.push_update(bot.api.text_update(RESIDENT, "老板带人拿着刀堵在宿舍门口说要砍死我"))
        emergency = await bot.api.wait_for(
            "sendMessage", lambda c: c.chat_id == RESIDENT and "110" in c.params["text"], timeout=10
        )
        assert "12338" in emergency[-1].params["text"]
        # Re-announced, urgent badge, to the station and to its street centre.
        for chat in (STATION_CHAT, STREET_CHAT):
            cards = await bot.api.wait_for(
                "sendMessage",
                lambda c, chat=chat: (
                    c.chat_id == chat
                    and reference in c.params["text"]
                    and "紧急" in c.params["text"]
                ),
                timeout=10,
            )
            assert cards
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
        assert case.risk_level.value == "urgent"
