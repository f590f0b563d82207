"""Issue 11 item 6: use what was understood and ask less; check typed answers.

Parametrised over every dispute form: what the first message states (the form's own
keywords, the NLU's entities) is confirmed with the kind in one step and never asked
again; bad dates, amounts and headcounts are asked again politely.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from bot.dialogue.engine import Context, Step, handle, initial_state
from bot.dialogue.forms import Form, Slot, default_forms
from bot.dialogue.geography import default_geography
from bot.dialogue.model import ButtonEvent, ContactEvent, Event, Outcome, TextEvent
from nlu.interface import ParseResult

TODAY = date(2026, 11, 30)
CTX = Context(forms=default_forms(), geography=default_geography(), today=TODAY)
FORMS = [CTX.forms.get(category) for category in CTX.forms.disputes]
#: What an NLU entity of each kind looks like when it names someone (not a bare role).
ENTITIES: dict[str, dict[str, Any]] = {
    "counterparty": {
        "entity": "counterparty",
        "value": "王建国",
        "additional_info": {"kind": "name"},
    },
    "platform": {"entity": "platform", "value": "美团"},
    "amount": {"entity": "amount", "value": 5000},
    "headcount": {"entity": "headcount", "value": 12},
    "date": {"entity": "date", "value": "2026-10-01"},
}


def parse(intent: str, confidence: float = 0.9, entities: list[Any] | None = None) -> ParseResult:
    return {
        "intent": {"name": intent, "confidence": confidence},
        "entities": entities or [],
        "intent_ranking": [{"name": intent, "confidence": confidence}],
        "risk": {"flagged": False, "kinds": [], "matches": []},
    }


class Chat:
    def __init__(self, ctx: Context = CTX) -> None:
        self.ctx = ctx
        self.state: dict[str, Any] = dict(initial_state())
        self.last: Outcome | None = None
        self.asked: list[str] = []

    def send(self, event: Event) -> Outcome:
        self.last = handle(self.state, event, self.ctx)
        self.state = json.loads(json.dumps(self.last.state))
        if self.step == Step.SLOT:
            self.asked.append(self.state["draft"]["slot"])
        return self.last

    def say(self, text: str, intent: str = "inform", confidence: float = 0.4, **kw: Any) -> Outcome:
        return self.send(TextEvent(text, parse(intent, confidence, **kw)))

    @property
    def step(self) -> str:
        return str(self.state["step"])

    def texts(self) -> str:
        assert self.last is not None
        return "\n".join(r.text for r in self.last.replies)

    def payloads(self) -> list[str]:
        assert self.last is not None
        return [b.payload for r in self.last.replies for row in r.buttons for b in row]


def answer(chat: Chat, slot: Slot) -> None:
    if slot.choices:
        chat.send(ButtonEvent(f"choice:{slot.choices[-1].value}"))
    else:
        good = {"amount": "5000", "integer": "3", "date": "上个月", "text": "对方是个体户"}
        chat.say(good[slot.type])


def finish_form(chat: Chat, form: Form) -> None:
    for _ in range(12):
        if chat.step != Step.SLOT:
            return
        slot = form.slot(chat.state["draft"]["slot"])
        assert slot is not None
        answer(chat, slot)
    raise AssertionError("the form never ended")


def first_message(form: Form) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """Words and entities that answer every slot the form can pre-fill, and the values."""
    words, entities, expected = [], [], {}
    for slot in form.slots:
        if slot.choices:
            choice = next((c for c in slot.choices if c.keywords), None)
            if choice:
                words.append(choice.keywords[0])
                expected[slot.name] = choice.value
        elif slot.entity in ENTITIES and slot.entity not in {e["entity"] for e in entities}:
            entities.append(ENTITIES[slot.entity])
    return ",".join(words), entities, expected


@pytest.mark.parametrize("form", FORMS, ids=[f.category for f in FORMS])
def test_what_the_first_message_states_is_not_asked_again(form: Form) -> None:
    text, entities, _ = first_message(form)
    chat = Chat()
    chat.say(f"有个纠纷:{text}", form.category, 0.9, entities=entities)
    assert chat.step == Step.CONFIRM_CATEGORY
    found = chat.state["draft"]["prefill"]["slots"]
    assert found, "the message answers something"
    for name in found:  # each shown in the one confirmation
        slot = form.slot(name)
        assert slot is not None and slot.label.zh in chat.texts()
    chat.send(ButtonEvent("yes"))
    finish_form(chat, form)
    assert not set(chat.asked) & set(found), chat.asked
    assert chat.step in (Step.STREET, Step.COMMUNITY)
    assert found.items() <= chat.state["draft"]["slots"].items()


@pytest.mark.parametrize(
    ("category", "message", "slot", "value"),
    [
        ("dispute_labor", "老板拖欠了我两个月工资", "issue", "wages"),
        ("dispute_labor", "厂里欠薪三个月了", "issue", "wages"),
        ("dispute_neighbor", "楼上漏水到我家", "issue", "leak"),
        ("dispute_neighbor", "楼上半夜蹦迪", "issue", "noise"),
        ("dispute_environment", "工厂半夜机器响", "timing", "night"),
        ("dispute_injury", "在小区里被狗咬了", "cause", "animal"),
        ("dispute_tenancy", "My landlord keeps my deposit", "issue", "deposit"),
    ],
)
def test_form_keywords_answer_choice_questions(
    category: str, message: str, slot: str, value: str
) -> None:
    chat = Chat()
    chat.say(message, category, 0.9)
    assert chat.state["draft"]["prefill"]["slots"][slot] == value
    chat.send(ButtonEvent("yes"))
    assert chat.state["draft"]["slots"][slot] == value
    finish_form(chat, CTX.forms.get(category))
    assert slot not in chat.asked


def test_the_platform_answers_who_the_other_party_is() -> None:
    chat = Chat()
    chat.say("美团扣了我的钱", "dispute_gig_work", 0.9, entities=[ENTITIES["platform"]])
    chat.send(ButtonEvent("yes"))
    assert chat.state["draft"]["slots"]["counterparty"] == "美团"


def test_a_choice_pressed_with_the_kind_confirms_both() -> None:
    chat = Chat()
    out = chat.say("我和我们家那位闹得很僵", "dispute_family", 0.9)
    assert "choice:divorce" in chat.payloads() and "no" in chat.payloads()
    assert "婚姻家庭" in out.replies[-1].text
    chat.send(ButtonEvent("choice:custody"))
    assert chat.state["draft"]["slots"]["issue"] == "custody"
    assert chat.step == Step.SLOT and chat.state["draft"]["slot"] == "relation"


BAD = {
    "date": [
        ("小车司机", "日期"),
        ("邻居", "日期"),
        ("下個月", "还没到"),
        ("2027-03-01", "还没到"),
    ],
    "amount": [("三个月", "金额"), ("邻居", "金额")],
    "integer": [("三个月前", "多少人"), ("邻居", "多少人")],
}
GOOD = {"date": "三个月前", "amount": "五千块", "integer": "十几个人"}
CHECKED = [
    (form, slot)
    for form in FORMS
    for slot in form.slots
    if slot.type in ("date", "amount", "integer")
]


def drive_to_review(form: Form) -> Chat:
    chat = Chat()
    chat.say("有个纠纷想找人调解", form.category, 0.9)
    chat.send(ButtonEvent("yes"))
    finish_form(chat, form)
    if chat.step == Step.STREET:
        chat.send(ButtonEvent("street:xixiang"))
    chat.send(ButtonEvent("comm:"))
    chat.send(ContactEvent("13812345678"))
    assert chat.step == Step.REVIEW
    return chat


@pytest.mark.parametrize(
    ("form", "slot"), CHECKED, ids=[f"{f.category}.{s.name}" for f, s in CHECKED]
)
def test_bad_dates_amounts_and_headcounts_are_asked_again(form: Form, slot: Slot) -> None:
    chat = drive_to_review(form)
    chat.send(ButtonEvent(f"edit:slot:{slot.name}"))
    assert chat.step == Step.SLOT and chat.state["draft"]["slot"] == slot.name
    for text, hint in BAD[slot.type]:
        out = chat.say(text)
        assert chat.step == Step.SLOT and chat.state["draft"]["slot"] == slot.name
        assert hint in out.replies[0].text, (text, out.replies[0].text)
        assert slot.prompt.zh in chat.texts()  # and the question again
    chat.say(GOOD[slot.type])
    assert chat.step == Step.REVIEW
    assert chat.state["draft"]["slots"][slot.name] not in (None, "")


@pytest.mark.parametrize("typed", ["是", "是。", " 是 ", "1", "１"])
def test_a_typed_button_title_or_number_presses_it(typed: str) -> None:
    chat = Chat()
    chat.say("楼上邻居漏水", "dispute_neighbor", 0.9)
    assert chat.payloads()[0] == "yes"
    chat.say(typed)
    assert chat.step == Step.SLOT and chat.state["draft"]["slots"]["issue"] == "leak"


def test_a_number_is_an_answer_where_a_number_is_asked() -> None:
    chat = drive_to_review(CTX.forms.get("dispute_labor"))
    chat.send(ButtonEvent("edit:slot:headcount"))
    assert "skip" in chat.payloads()
    chat.say("1")  # one person, not the first button (skip)
    assert chat.state["draft"]["slots"]["headcount"] == 1


def test_channels_without_share_buttons_never_mention_them() -> None:
    plain = Context(
        forms=CTX.forms, geography=CTX.geography, features=frozenset({"buttons"}), today=TODAY
    )
    chat = Chat(plain)
    chat.say("楼上邻居漏水", "dispute_neighbor", 0.9)
    chat.send(ButtonEvent("yes"))  # a leak, as the message said
    chat.say("楼上602")
    chat.say("上个月")
    seen = chat.texts()
    assert chat.step == Step.STREET and all(r.request is None for r in chat.last.replies)
    chat.send(ButtonEvent("street:xixiang"))
    chat.send(ButtonEvent("comm:"))
    assert chat.step == Step.PHONE
    seen += chat.texts()
    assert all(r.request is None for r in chat.last.replies)
    for word in ("位置", "分享", "location", "Share"):
        assert word not in seen
    full = Chat()
    full.say("楼上邻居漏水", "dispute_neighbor", 0.9)
    full.send(ButtonEvent("yes"))
    full.say("楼上602")
    full.say("上个月")
    assert any(r.request == "location" for r in full.last.replies)


@pytest.mark.parametrize(
    "message",
    ["😡😡😡", "👍", "13812345678", "Привет, у меня проблема", "안녕하세요 문제가 있어요"],
)
def test_unreadable_first_messages_get_a_request_to_describe(message: str) -> None:
    chat = Chat()
    out = chat.say(message, "dispute_neighbor", 0.5)
    assert "Chinese or English" in out.replies[-1].text
    assert chat.state.get("draft") is None or not chat.state["draft"]["words"]
    assert chat.step == Step.DESCRIBE and not out.actions
