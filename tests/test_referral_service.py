"""Issue 11 item 1, through the runner and the store: a referral is counted in the
report, and a booked consultation is a case at the street's legal service station."""

from __future__ import annotations

from actions import casework
from bot.dialogue.model import ButtonEvent, TextEvent
from bot.intake_service import IntakeService, Sender
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import engine_context
from nlu.interface import ParseResult
from storage import cases as case_repo


def parse(intent: str, confidence: float = 0.9) -> ParseResult:
    return {
        "intent": {"name": intent, "confidence": confidence},
        "entities": [],
        "intent_ranking": [{"name": intent, "confidence": confidence}],
        "risk": {"flagged": False, "kinds": [], "matches": []},
    }


async def test_referral_is_counted_and_a_booking_reaches_the_legal_service_station(
    store: Store, nlu
) -> None:
    service = IntakeService(store, nlu, engine_context(load_settings(), 0.3))
    who = Sender("rest", "referral-1", "referral-1")
    question = "我老公因为打架被派出所拘留了,能不能请律师辩护"
    replies = await service.handle(who, TextEvent(question, parse("referral")))
    text = "\n".join(r.text for r in replies)
    assert "110" in text and "12348" in text
    async with store.sessions() as session:
        assert await casework.referrals_given(session) == {"crime": 1}
    # Book the free consultation: a short intake, filed as legal_consultation.
    steps = [ButtonEvent("yes")]
    reference = None
    replies = await service.handle(who, steps[0])
    for _ in range(12):
        buttons = [b.payload for r in replies for row in r.buttons for b in row]
        if any("BA-" in r.text for r in replies):
            break
        if any(p.startswith("street:") for p in buttons):
            event = ButtonEvent("street:xixiang")
        elif any(p.startswith("comm:") for p in buttons):
            event = ButtonEvent("comm:流塘")
        elif "submit" in buttons:
            event = ButtonEvent("submit")
        elif "yes" in buttons:
            event = ButtonEvent("yes")
        elif "skip" in buttons:
            event = ButtonEvent("skip")
        else:
            event = TextEvent("想问丈夫被拘留的事怎么办", parse("inform", 0.5))
        replies = await service.handle(who, event)
    for reply in replies:
        if "BA-" in reply.text:
            reference = reply.text[reply.text.index("BA-") :][:16]
    assert reference is not None, [r.text for r in replies]
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
    assert case.category == "legal_consultation"
    assert case.department.code == "xixiang_legal_service"
    assert case.centre.code.startswith("xixiang")
