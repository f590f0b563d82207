"""Issue 9's service side through real python-telegram-bot and the stand-in Bot API:
a resident in danger reaches a person within seconds whatever state their case is in,
the alert goes up a level until somebody presses "I'm on it", and whoever can see an
urgent case can act on it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.web import DESK_SERVICE
from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage.models import Case, CaseStatus, Centre, MediatorRole, RiskLevel, utcnow
from storage.people import add_mediator, get_or_create_resident
from tests.test_mediator_desk import (
    RESIDENT,
    STATION_CHAT,
    STREET_CHAT,
    card_of,
    press,
    private,
    setup_network,
)
from tests.test_telegram import Bot, file_labour_case, running_bot

DISTRICT_CHAT = -1001000
DISTRICT_SUPERVISOR = 9106
STREET_SUPERVISOR = 9104
WORDS = "他现在拿着刀在我家门口说要砍死我,我弟弟电话13912345678"
#: Seconds within which a person must hear of an emergency.
WITHIN = 5.0


async def full_network(bot: Bot) -> None:
    """The desk tests' network plus the district's group and its supervisor."""
    await setup_network(bot)
    async with bot.store.sessions.begin() as session:
        await session.execute(
            update(Centre).where(Centre.code == "baoan").values(telegram_chat_id=DISTRICT_CHAT)
        )
        await add_mediator(
            session,
            channel="telegram",
            external_id=str(DISTRICT_SUPERVISOR),
            display_alias="区中心主任",
            centre_code="baoan",
            role=MediatorRole.SUPERVISOR,
        )
    bot.api.add_chat(DISTRICT_CHAT, "supergroup", title="baoan")
    bot.api.add_chat(DISTRICT_SUPERVISOR, "private")


async def latest_case(bot: Bot, chat: int = RESIDENT) -> Case | None:
    async with bot.store.sessions() as session:
        resident = await get_or_create_resident(session, "telegram", str(chat))
        query = select(Case).where(Case.resident_id == resident.id).order_by(Case.id.desc())
        case = (await session.execute(query)).scalars().first()
        if case is not None:
            await session.refresh(case, ["centre"])
        return case


async def claim(bot: Bot, reference: str, mediator: int = 9101) -> None:
    card = await card_of(bot, STATION_CHAT, reference)
    await press(bot, STATION_CHAT, mediator, f"claim:{reference}", card)
    await bot.api.wait_for(
        "answerCallbackQuery",
        lambda c: f"您已受理 {reference}" in (c.params.get("text") or ""),
        timeout=10,
    )
    await bot.api.wait_for(
        "sendMessage",
        lambda c: c.chat_id == RESIDENT and "调解员1" in c.params["text"],
        timeout=10,
    )


# ---------------------------------------------------------------------- the states


async def before_filing(bot: Bot) -> int | None:
    return None


async def mid_intake(bot: Bot) -> int | None:
    await bot.say(RESIDENT, "老板拖欠我们三个月工资,一共8000元,厂在福永")
    await bot.replies(RESIDENT, 3)
    await bot.press(RESIDENT, "yes")
    await bot.settle(RESIDENT)
    return None


async def filed_unclaimed(bot: Bot) -> int | None:
    await file_labour_case(bot, RESIDENT)
    return None


async def claimed(bot: Bot) -> int | None:
    reference = await file_labour_case(bot, RESIDENT)
    await claim(bot, reference)
    return 9101


async def in_mediation(bot: Bot) -> int | None:
    reference = await file_labour_case(bot, RESIDENT)
    await claim(bot, reference)
    await private(bot, 9101, f"/status {reference} in_mediation")
    await bot.settle(RESIDENT)
    return 9101


async def resolved(bot: Bot) -> int | None:
    reference = await file_labour_case(bot, RESIDENT)
    await claim(bot, reference)
    await private(bot, 9101, f"/outcome {reference} agreement")
    await private(bot, 9101, f"/status {reference} resolved")
    await bot.settle(RESIDENT)
    return 9101


STATES: dict[str, Callable[[Bot], Awaitable[int | None]]] = {
    "before_filing": before_filing,
    "mid_intake": mid_intake,
    "filed_unclaimed": filed_unclaimed,
    "claimed": claimed,
    "in_mediation": in_mediation,
    "resolved": resolved,
}
GROUPS = (STATION_CHAT, STREET_CHAT, DISTRICT_CHAT)


def _has_words(text: str) -> bool:
    return "砍死我" in text


@pytest.mark.parametrize("state", list(STATES))
async def test_an_emergency_reaches_people_within_seconds(
    state: str, sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await full_network(bot)
        mediator = await STATES[state](bot)
        previous = await latest_case(bot)
        seen = {chat: len(bot.sent(chat)) for chat in (*GROUPS, 9101, 9104, 9106)}
        started = time.monotonic()
        bot.api.push_update(bot.api.text_update(RESIDENT, WORDS))
        await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == RESIDENT and "12338" in c.params["text"],
            timeout=WITHIN,
        )

        def fresh(chat: int) -> list[Any]:
            return [c for c in bot.sent(chat)[seen[chat] :] if _has_words(c.params["text"])]

        # A fresh urgent card in a centre's group, with the words, danger and place.
        cards = await bot.api.wait_for(
            "sendMessage",
            lambda c: (
                c.chat_id in GROUPS and _has_words(c.params["text"]) and bool(fresh(c.chat_id))
            ),
            timeout=WITHIN,
        )
        card = cards[-1].params["text"]
        assert "紧急" in card and "危险" in card and "📍" in card
        assert "139****5678" in card and "13912345678" not in card
        # The supervisors, and the case's own mediator when there is one, with a button.
        people = [STREET_SUPERVISOR] if state != "before_filing" else []
        if mediator is not None:
            people.append(mediator)
        for person in people:
            notes = await bot.api.wait_for(
                "sendMessage",
                lambda c, p=person: c.chat_id == p and bool(fresh(p)),
                timeout=WITHIN,
            )
            alert = [c for c in notes if c.chat_id == person and _has_words(c.params["text"])][-1]
            assert "13912345678" not in alert.params["text"]
            buttons = [
                b["callback_data"]
                for row in (alert.params.get("reply_markup") or {}).get("inline_keyboard", [])
                for b in row
            ]
            assert any(b.startswith("ack:") for b in buttons), buttons
        if state == "before_filing":
            assert fresh(STREET_SUPERVISOR) or fresh(DISTRICT_SUPERVISOR)
        assert time.monotonic() - started < WITHIN
        case = await latest_case(bot)
        assert case is not None and case.risk_level == RiskLevel.URGENT
        if previous is not None:
            assert case.reference == previous.reference  # the same case, not a new one
        async with bot.store.sessions() as session:
            events = await case_repo.case_events(
                session, await case_repo.get_case(session, case.reference)
            )
        emergencies = [e for e in events if e.kind == "emergency"]
        assert emergencies and "砍死我" in emergencies[-1].data["words"]
        assert "13912345678" not in emergencies[-1].data["words"]


async def test_a_flagged_message_in_mediation_is_relayed_marked(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await full_network(bot)
        await in_mediation(bot)
        bot.api.push_update(bot.api.text_update(RESIDENT, WORDS))
        relayed = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == 9101 and c.params["text"].startswith("🔴【"),
            timeout=WITHIN,
        )
        assert "砍死我" in relayed[-1].params["text"]
        case = await latest_case(bot)
        assert case is not None
        async with bot.store.sessions() as session:
            events = await case_repo.case_events(
                session, await case_repo.get_case(session, case.reference)
            )
        flagged = [e for e in events if e.kind == "message_in" and e.data.get("flagged")]
        assert len(flagged) == 1


async def test_acknowledging_stops_the_alert_going_up(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await full_network(bot)
        await claimed(bot)
        bot.api.push_update(bot.api.text_update(RESIDENT, WORDS))
        notes = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == 9101 and "🔴 紧急情况" in c.params["text"],
            timeout=WITHIN,
        )
        message_id = int(notes[-1].response["result"]["message_id"])
        case = await latest_case(bot)
        assert case is not None and case.ack_due_at is not None
        await press(bot, 9101, 9101, f"ack:{case.reference}", message_id)
        await bot.api.wait_for(
            "answerCallbackQuery", lambda c: "已记录" in (c.params.get("text") or ""), timeout=10
        )
        after = await latest_case(bot)
        assert after is not None and after.ack_due_at is None
        async with bot.store.sessions() as session:
            events = await case_repo.case_events(
                session, await case_repo.get_case(session, case.reference)
            )
        assert [e.kind for e in events].count("acknowledged") == 1
        counts = await bot.app[DESK_SERVICE].sweep(utcnow() + timedelta(hours=2))
        assert counts["alerted"] == 0


async def test_an_unacknowledged_alert_goes_up_a_level(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await full_network(bot)
        await claimed(bot)
        bot.api.push_update(bot.api.text_update(RESIDENT, WORDS))
        await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == 9101 and "🔴 紧急情况" in c.params["text"],
            timeout=WITHIN,
        )
        case = await latest_case(bot)
        assert case is not None and case.ack_due_at is not None
        desk = bot.app[DESK_SERVICE]
        assert (await desk.sweep(case.ack_due_at - timedelta(seconds=5)))["alerted"] == 0
        counts = await desk.sweep(case.ack_due_at + timedelta(seconds=1))
        assert counts["alerted"] == 1
        # One level above the station is the street; the level after, the district.
        escalated = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == STREET_SUPERVISOR and "无人确认" in c.params["text"],
            timeout=WITHIN,
        )
        assert "砍死我" in escalated[-1].params["text"]
        again = await latest_case(bot)
        assert again is not None and again.ack_due_at is not None
        assert (await desk.sweep(again.ack_due_at + timedelta(seconds=1)))["alerted"] == 1
        await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == DISTRICT_SUPERVISOR and "无人确认" in c.params["text"],
            timeout=WITHIN,
        )
        await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == DISTRICT_CHAT and _has_words(c.params["text"]),
            timeout=WITHIN,
        )


async def test_an_urgent_case_that_moved_up_is_still_claimable_below(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await full_network(bot)
        reference = await file_labour_case(bot, RESIDENT)
        card = await card_of(bot, STATION_CHAT, reference)
        bot.api.push_update(bot.api.text_update(RESIDENT, WORDS))
        await bot.api.wait_for(
            "sendMessage", lambda c: c.chat_id == RESIDENT and "110" in c.params["text"], timeout=10
        )
        await bot.settle(RESIDENT)
        async with bot.store.sessions() as session:
            due = (await case_repo.get_case(session, reference)).escalate_at
        assert (await bot.app[DESK_SERVICE].sweep(due + timedelta(seconds=1)))["escalated"] == 1
        moved = await latest_case(bot)
        assert moved is not None and moved.centre.code == "fuyong"
        # A station mediator presses ✋ on the station's old card: it works.
        await press(bot, STATION_CHAT, 9102, f"claim:{reference}", card)
        answer = await bot.api.wait_for(
            "answerCallbackQuery", lambda c: "您已受理" in (c.params.get("text") or ""), timeout=10
        )
        assert answer
        told = await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == RESIDENT and "接手" in c.params["text"],
            timeout=10,
        )
        text = told[-1].params["text"]
        assert "1 个工作日" not in text and "24 小时" not in text and "24小时" not in text
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
        assert case.status == CaseStatus.CLAIMED and case.mediator.external_id == "9102"


async def test_an_urgent_case_is_never_promised_a_working_day(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await full_network(bot)
        bot.api.push_update(bot.api.text_update(RESIDENT, "我们住在福永凤凰社区," + WORDS))
        await bot.api.wait_for(
            "sendMessage", lambda c: c.chat_id == RESIDENT and "110" in c.params["text"], timeout=10
        )
        await bot.settle(RESIDENT)
        case = await latest_case(bot)
        assert case is not None and case.risk_level == RiskLevel.URGENT
        async with bot.store.sessions.begin() as session:
            # Wherever the first message put it, a station mediator may claim it.
            await session.execute(
                update(Case)
                .where(Case.id == case.id)
                .values(
                    centre_id=select(Centre.id)
                    .where(Centre.code == "fuyong-fenghuang")
                    .scalar_subquery()
                )
            )
        await bot.app[DESK_SERVICE].claim(case.reference, await _mediator(bot, "9101"))
        await bot.settle(RESIDENT)
        texts = [c.params["text"] for c in bot.sent(RESIDENT)]
        for text in texts:
            assert "1 个工作日" not in text and "24 小时" not in text, text
        assert any("接手" in text for text in texts)


async def _mediator(bot: Bot, ident: str) -> Any:
    from actions import casework

    async with bot.store.sessions() as session:
        return await casework.active_mediator(session, "telegram", ident)
