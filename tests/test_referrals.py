"""Issue 11 item 1: legal matters mediation does not take get a referral from the
catalogue (bot/referrals/*.yml) and an offer of a free legal consultation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bot.dialogue.engine import Context, Step, handle, initial_state
from bot.dialogue.forms import default_forms
from bot.dialogue.geography import default_geography
from bot.dialogue.model import (
    ButtonEvent,
    CaseFiled,
    ContactEvent,
    Event,
    FileCase,
    GiveReferral,
    Outcome,
    TextEvent,
)
from bot.referrals import GENERAL, REFERRALS_DIR, ReferralsError, default_referrals, load_referrals
from nlu.interface import ParseResult

CTX = Context(forms=default_forms(), geography=default_geography())


def parse(intent: str, confidence: float = 0.9) -> ParseResult:
    return {
        "intent": {"name": intent, "confidence": confidence},
        "entities": [],
        "intent_ranking": [{"name": intent, "confidence": confidence}],
        "risk": {"flagged": False, "kinds": [], "matches": []},
    }


class Chat:
    def __init__(self) -> None:
        self.state: dict[str, Any] = dict(initial_state())
        self.last: Outcome | None = None

    def send(self, event: Event) -> Outcome:
        self.last = handle(self.state, event, CTX)
        self.state = json.loads(json.dumps(self.last.state))
        return self.last

    def say(self, text: str, intent: str = "inform", confidence: float = 0.5) -> Outcome:
        return self.send(TextEvent(text, parse(intent, confidence)))

    def texts(self) -> str:
        assert self.last is not None
        return "\n".join(r.text for r in self.last.replies)


QUESTIONS = {
    "我老公因为打架被派出所拘留了,能不能请律师辩护,要坐牢吗": ("crime", ["110", "12348"]),
    "城管罚了我5000块,我觉得不合理,可以告他们吗": ("administrative", ["60", "6 个月"]),
    "公司股东一直不分红,我能查账吗": ("business_law", ["律师", "免费法律咨询"]),
    "我的商标被人抢注了怎么办": ("business_law", ["12348"]),
    "请问遗嘱需要公证吗": (GENERAL, ["12348"]),
    "My company got a fine from the market regulator, can I appeal?": (
        "administrative",
        ["60 days", "6 months"],
    ),
}


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_a_legal_question_is_referred_from_the_catalogue(question: str) -> None:
    topic, words = QUESTIONS[question]
    chat = Chat()
    out = chat.say(question, "referral", 0.8)
    assert out.actions == (GiveReferral(topic),)
    answer = default_referrals().get(topic).answer("en" if question.isascii() else "zh")
    assert answer in chat.texts()
    for word in words:
        assert word in chat.texts()
    assert chat.state["step"] == Step.OFFER_CONSULTATION
    assert [b.payload for r in out.replies for row in r.buttons for b in row] == ["yes", "no"]


def test_booking_a_consultation_is_a_short_intake_filed_as_legal_consultation() -> None:
    chat = Chat()
    question = "我老公被公安抓了,想请律师辩护,怎么办"
    chat.say(question, "referral", 0.85)
    chat.send(ButtonEvent("yes"))
    # The question was asked already: straight to where, phone, review (and consent).
    assert chat.state["step"] == Step.STREET
    chat.send(ButtonEvent("street:xixiang"))
    chat.send(ButtonEvent("comm:"))
    chat.send(ContactEvent("13812345678"))
    assert chat.state["step"] == Step.REVIEW and "免费法律咨询" in chat.texts()
    out = chat.send(ButtonEvent("submit"))
    [action] = out.actions
    assert isinstance(action, FileCase) and action.reason == "submit"
    draft = action.draft
    assert draft["category"] == "legal_consultation" and draft["referral"] == "crime"
    assert draft["slots"]["question"] == question and draft["street"] == "xixiang"
    assert draft["phone"] == "13812345678" and draft["consent"] is True
    out = chat.send(CaseFiled("BA-20261130-0010", "submit", "西乡街道分中心", "Xixiang"))
    assert "BA-20261130-0010" in out.replies[0].text and "法律援助" in out.replies[0].text
    assert chat.state["step"] == Step.DONE


@pytest.mark.parametrize("answer", ["不用了", "不用了。", "no thanks", "no"])
def test_no_thanks_ends_politely(answer: str) -> None:
    chat = Chat()
    chat.say("我被人骗了两万块钱,报警了吗还要", "referral", 0.7)
    out = chat.say(answer, "deny" if answer == "no" else "inform", 0.5)
    assert not out.actions
    assert chat.state["draft"] is None and chat.state["step"] == Step.DESCRIBE
    assert "祝您" in chat.texts() or "All the best" in chat.texts()


def test_a_dispute_after_the_offer_is_a_normal_intake() -> None:
    chat = Chat()
    chat.say("派出所说这个不归他们管", "referral", 0.6)
    chat.say("房东不退我押金3000", "dispute_tenancy", 0.9)
    assert chat.state["step"] == Step.CONFIRM_CATEGORY
    assert chat.state["draft"]["category"] == "dispute_tenancy"


def test_an_unsure_referral_is_not_given() -> None:
    chat = Chat()
    out = chat.say("我想问一下", "referral", 0.2)
    assert not any(isinstance(a, GiveReferral) for a in out.actions)


def test_every_topic_is_bilingual_and_the_catch_all_exists() -> None:
    referrals = load_referrals()
    assert {"crime", "administrative", "business_law", GENERAL} <= set(referrals.topics)
    for topic in referrals.topics.values():
        assert topic.answer("zh") and topic.answer("en") and topic.title["en"]
        assert topic.keywords or topic.topic == GENERAL
    assert referrals.pick("完全无关的话").topic == GENERAL


def test_a_malformed_referral_file_is_named(tmp_path: Path) -> None:
    for path in REFERRALS_DIR.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "crime.yml").write_text("topic: crime\ntitle: {zh: 刑事}\ntext: {zh: x, en: y}\n")
    with pytest.raises(ReferralsError, match=r"crime\.yml"):
        load_referrals(tmp_path)
