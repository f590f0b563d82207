"""The intake service with two processes' worth of state caches on one database.

Each bot process keeps the last saved state of a chat in memory; when another process
moved the conversation on in between, the stale save must be refused and the event
handled again on the fresh state, never overwriting the other process's work.
"""

from __future__ import annotations

from bot.dialogue.model import ButtonEvent, TextEvent
from bot.intake_service import IntakeService, Sender
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import engine_context
from storage.conversations import load_conversation


async def test_a_stale_cached_state_is_never_saved_over_newer_work(store: Store, nlu) -> None:
    ctx = engine_context(load_settings(), nlu.config.threshold)
    first = IntakeService(store, nlu, ctx)
    second = IntakeService(store, nlu, ctx)
    who = Sender("rest", "two-processes", "two-processes")
    await first.handle(who, TextEvent("楼上邻居天天半夜装修,吵得孩子睡不着"))
    await first.handle(who, ButtonEvent("yes"))  # first now caches version 2
    replies = await second.handle(who, ButtonEvent("choice:noise"))  # version 3, elsewhere
    assert replies
    async with store.sessions() as session:
        state, version = await load_conversation(session, "rest", "two-processes")
    assert version == 3 and state["draft"]["slots"].get("issue") == "noise"
    # The first process answers the next question from its stale cache: refused, redone.
    await first.handle(who, TextEvent("楼上602的住户"))
    async with store.sessions() as session:
        state, version = await load_conversation(session, "rest", "two-processes")
    assert version == 4
    assert state["draft"]["slots"].get("issue") == "noise"  # the other process's answer kept
    assert state["draft"]["slots"].get("neighbour") == "楼上602的住户"
