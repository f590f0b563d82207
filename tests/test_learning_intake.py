"""The runner captures residents' first messages for review, masked, on both databases."""

from __future__ import annotations

from sqlalchemy import text

from actions import learning
from bot.dialogue.model import ButtonEvent, TextEvent
from bot.intake_service import IntakeService, Sender
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import engine_context

PHONE = "13812345678"
ID_NUMBER = "11010519491231002X"
BANK_CARD = "6250941006528599"


async def test_first_message_is_captured_masked_once(store: Store, nlu) -> None:
    service = IntakeService(store, nlu, engine_context(load_settings(), nlu.config.threshold))
    who = Sender("rest", "learn-1", "learn-1")
    words = f"房东不退押金三千块,我电话{PHONE},身份证{ID_NUMBER},退到卡{BANK_CARD}"
    assert await service.handle(who, TextEvent(words))
    await service.handle(who, TextEvent("是的"))  # the answer is not a first message
    async with store.engine.connect() as connection:
        raw = "\n".join(
            repr(tuple(row))
            for row in (await connection.execute(text("SELECT * FROM nlu_captures"))).all()
        )
    for secret in (PHONE, ID_NUMBER, BANK_CARD):
        assert secret not in raw
    async with store.sessions() as session:
        items = await learning.inbox(session, limit=None)
    assert len(items) == 1
    assert items[0].channel == "rest" and items[0].predicted == "dispute_tenancy"
    assert "房东不退押金三千块" in items[0].text and "138****5678" in items[0].text


async def test_greeting_alone_is_not_captured(store: Store, nlu) -> None:
    service = IntakeService(store, nlu, engine_context(load_settings(), nlu.config.threshold))
    await service.handle(Sender("rest", "learn-2", "learn-2"), TextEvent("你好"))
    async with store.sessions() as session:
        assert await learning.inbox(session, limit=None) == []


async def test_no_to_the_proposed_kind_and_the_kind_picked_are_signals(store: Store, nlu) -> None:
    """The answers arrive on the runner's in-memory fast path; their signals are kept."""
    service = IntakeService(store, nlu, engine_context(load_settings(), nlu.config.threshold))
    who = Sender("rest", "learn-3", "learn-3")
    await service.handle(who, TextEvent("楼上邻居天天半夜装修,吵得孩子睡不着"))
    async with store.sessions() as session:
        [item] = await learning.inbox(session, limit=None)
    assert item.predicted == "dispute_neighbor" and item.signals == []
    await service.handle(who, TextEvent("no"))
    await service.handle(who, ButtonEvent("cat:dispute_construction"))
    async with store.sessions() as session:
        [item] = await learning.inbox(session, limit=None)
    assert item.signals == ["resident_denied_kind", "resident_chose_other_kind"]
    assert item.weak_label == "dispute_construction"
