"""The dialogue engine, pure: events in, state + replies + actions out, no I/O.

Parses are written out by hand here: they are the engine's input (what any NLU backend
returns), so these tests pin the conversation logic independently of the classifier.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.dialogue.engine import Context, handle, initial_state
from bot.dialogue.forms import default_forms
from bot.dialogue.geography import default_geography
from bot.dialogue.model import (
    AttachEvidence,
    AttachmentEvent,
    ButtonEvent,
    CaseFiled,
    CommandEvent,
    ContactEvent,
    Event,
    FileCase,
    FlagUrgent,
    LocationEvent,
    LookupStatus,
    Outcome,
    StatusResult,
    TextEvent,
    UnsupportedEvent,
    UpdateCase,
)

CTX = Context(forms=default_forms(), geography=default_geography())
CATEGORIES = CTX.forms.disputes


def parse(
    intent: str,
    confidence: float = 0.9,
    entities: list[dict[str, Any]] | None = None,
    ranking: list[str] | None = None,
    risk: bool = False,
) -> dict[str, Any]:
    names = ranking or [intent]
    return {
        "intent": {"name": intent, "confidence": confidence},
        "entities": entities or [],
        "intent_ranking": [
            {"name": n, "confidence": confidence / (i + 1)} for i, n in enumerate(names)
        ],
        "risk": {"flagged": risk, "kinds": ["violence"] if risk else [], "matches": []},
    }


class Chat:
    """Feeds events through the engine, keeping state as JSON like the store does."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = initial_state()
        self.last: Outcome | None = None

    def send(self, event: Event) -> Outcome:
        outcome = handle(self.state, event, CTX)
        # The store keeps JSON: a state that does not survive the round trip is a bug.
        self.state = json.loads(json.dumps(outcome.state))
        self.last = outcome
        return outcome

    def text(self, text: str, **kw: Any) -> Outcome:
        return self.send(TextEvent(text, parse(**kw) if kw else parse("inform", 0.4)))

    @property
    def step(self) -> str:
        return str(self.state["step"])

    def payloads(self) -> list[str]:
        assert self.last is not None
        return [b.payload for r in self.last.replies for row in r.buttons for b in row]

    def texts(self) -> str:
        assert self.last is not None
        return "\n".join(r.text for r in self.last.replies)


def answer_slots(chat: Chat) -> None:
    """Answer every form question the way a resident plausibly would."""
    for _ in range(10):
        if chat.step != "slot":
            return
        form = CTX.forms.get(chat.state["draft"]["category"])
        slot = form.slot(chat.state["draft"]["slot"])
        assert slot is not None
        if slot.type == "choice":
            chat.send(ButtonEvent(f"choice:{slot.choices[0].value}"))
        elif slot.type == "amount":
            chat.text("大概五千块")
        elif slot.type == "integer":
            chat.text("3")
        elif slot.type == "date":
            chat.text("2026-10-01")
        else:
            chat.text("对方是一家公司")
    raise AssertionError("the form never ended")


def finish_after_form(chat: Chat) -> Outcome:
    assert chat.step == "street", chat.texts()
    assert "street:xixiang" in chat.payloads()
    chat.send(ButtonEvent("street:xixiang"))
    assert chat.step == "community" and "comm:固戍" in chat.payloads()
    chat.send(ButtonEvent("comm:固戍"))
    assert chat.step == "phone"
    assert any(r.request == "contact" for r in chat.last.replies)
    chat.text("我的电话 138 1234 5678")
    assert chat.step == "review"  # consent is asked here, by the submit buttons
    assert "138****5678" in chat.texts() and "13812345678" not in chat.texts()
    assert "是否同意" in chat.texts()
    assert {"submit", "submit:no"} <= set(chat.payloads())
    return chat.send(ButtonEvent("submit"))


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_files_a_case(category: str) -> None:
    chat = Chat()
    out = chat.text("我有个纠纷想调解一下,情况是这样的……", intent=category, confidence=0.85)
    assert "隐私" in out.replies[1].text  # privacy notice on first contact
    assert chat.step == "confirm_category"
    assert CTX.forms.get(category).title.zh in chat.texts()
    chat.send(ButtonEvent("yes"))
    answer_slots(chat)
    out = finish_after_form(chat)
    assert chat.step == "filing"
    [action] = out.actions
    assert isinstance(action, FileCase) and action.reason == "submit"
    draft = action.draft
    assert draft["category"] == category
    assert draft["street"] == "xixiang" and draft["community"] == "固戍"
    assert draft["phone"] == "13812345678" and draft["consent"] is True
    required = [s.name for s in CTX.forms.get(category).slots if s.required]
    assert set(required) <= set(draft["slots"])
    out = chat.send(CaseFiled("BA-20261126-0007", "submit", "固戍社区多元调处站", "Gushu"))
    assert "BA-20261126-0007" in out.replies[0].text and "固戍社区" in out.replies[0].text
    assert out.replies[1].text == CTX.forms.get(category).self_help.zh.strip()
    assert chat.step == "done" and chat.state["draft"] is None


def test_entities_in_first_message_are_confirmed_with_the_kind_not_asked() -> None:
    chat = Chat()
    out = chat.text(
        "我在美团送外卖,站长扣了我3000块,在福永",
        intent="dispute_gig_work",
        entities=[
            {"entity": "platform", "value": "美团", "start": 2, "end": 4},
            {"entity": "amount", "value": 3000, "start": 12, "end": 17},
        ],
    )
    # One step confirms the kind and everything the message said.
    assert chat.step == "confirm_category"
    confirm = out.replies[-1].text
    assert "新业态" in confirm or "Gig" in confirm
    assert "美团" in confirm and "3,000" in confirm and "福永" in confirm
    chat.send(ButtonEvent("yes"))
    draft = chat.state["draft"]
    assert draft["slots"]["platform"] == "美团" and draft["slots"]["amount"] == 3000
    assert draft["slots"]["counterparty"] == "美团"  # the platform is the other party
    assert draft["slots"]["issue"] == "deductions"  # 扣 is the form's keyword
    asked = set()
    while chat.step == "slot":
        asked.add(chat.state["draft"]["slot"])
        answer_slots(chat)
    assert not asked & {"platform", "amount", "counterparty", "issue"}
    # The street came from the message too: only its community is still asked.
    assert chat.step == "community" and draft["street"] == "fuyong"


def test_prefill_rejected_means_asking() -> None:
    chat = Chat()
    chat.text(
        "美团扣了我3000块",
        intent="dispute_gig_work",
        entities=[{"entity": "platform", "value": "美团"}, {"entity": "amount", "value": 3000}],
    )
    chat.send(ButtonEvent("no"))  # not this kind: choose one
    assert chat.step == "choose_category"
    chat.send(ButtonEvent("cat:dispute_gig_work"))
    assert chat.step == "confirm_prefill" and "美团" in chat.texts()
    chat.send(ButtonEvent("no"))
    assert chat.step == "slot" and chat.state["draft"]["slots"] == {}


def test_low_confidence_offers_top_three_and_other() -> None:
    chat = Chat()
    chat.text(
        "那个事情搞得我很烦",
        intent="nlu_fallback",
        confidence=0.3,
        ranking=[
            "nlu_fallback",
            "dispute_neighbor",
            "dispute_tenancy",
            "dispute_property_mgmt",
            "dispute_debt",
        ],
    )
    assert chat.step == "choose_category"
    assert chat.payloads() == [
        "cat:dispute_neighbor",
        "cat:dispute_tenancy",
        "cat:dispute_property_mgmt",
        "cat:dispute_other",
    ]
    chat.send(ButtonEvent("cat:dispute_tenancy"))
    assert chat.state["draft"]["category"] == "dispute_tenancy"
    assert chat.step == "slot"


def test_no_to_category_offers_choices_without_it() -> None:
    chat = Chat()
    chat.text(
        "房东不退押金",
        intent="dispute_tenancy",
        ranking=["dispute_tenancy", "dispute_contract", "dispute_consumer"],
    )
    chat.send(TextEvent("不是", parse("deny")))
    assert chat.step == "choose_category"
    assert "cat:dispute_tenancy" not in chat.payloads()
    assert "cat:dispute_other" in chat.payloads()


def test_typing_a_button_title_presses_it() -> None:
    chat = Chat()
    chat.text("楼上天天半夜吵", intent="dispute_neighbor")
    chat.send(TextEvent("是", parse("nlu_fallback", 0.1)))
    assert chat.step in ("slot", "street")


def test_edit_a_field_at_review_then_submit() -> None:
    chat = Chat()
    chat.text("老板欠薪", intent="dispute_labor")
    chat.send(ButtonEvent("yes"))
    answer_slots(chat)
    chat.send(ButtonEvent("street:none"))
    chat.send(ButtonEvent("skip"))  # no phone
    assert chat.step == "review"
    assert "edit:slot:employer" in chat.payloads()
    chat.send(ButtonEvent("edit:slot:employer"))
    assert chat.step == "slot" and chat.state["draft"]["slot"] == "employer"
    chat.text("宏达电子厂")
    assert chat.step == "review" and "宏达电子厂" in chat.texts()
    chat.send(ButtonEvent("edit:location"))
    chat.send(ButtonEvent("street:shajing"))
    chat.text("随便写个社区名")
    assert chat.step == "review"
    out = chat.send(ButtonEvent("submit:no"))  # submitted without consent
    [action] = out.actions
    assert action.draft["slots"]["employer"] == "宏达电子厂"
    assert action.draft["street"] == "shajing" and action.draft["phone"] is None
    assert action.draft["consent"] is False


def test_consent_is_asked_at_the_review_not_before_it() -> None:
    chat = drive_to("phone")
    chat.send(ContactEvent("13900001111"))
    assert chat.step == "review"  # no separate consent question any more
    assert chat.state["draft"]["consent"] is None
    texts = chat.texts()
    assert texts.rstrip().endswith("「提交,但不同意提供联系方式」。")  # the question ends it
    assert "是否同意" in texts and "139****1111" in texts
    payloads = chat.payloads()
    assert payloads[-2:] == ["submit", "submit:no"]
    assert "edit:phone" in payloads and "edit:location" in payloads
    assert chat.last is not None
    titles = [b.title for r in chat.last.replies for row in r.buttons for b in row]
    assert "✅ 同意提供给调解员,提交" in titles and "提交,但不同意提供联系方式" in titles


@pytest.mark.parametrize(
    ("answer", "consent"),
    [
        (ButtonEvent("submit"), True),
        (ButtonEvent("submit:no"), False),
        (TextEvent("同意", parse("nlu_fallback", 0.1)), True),
        (TextEvent("好的!", parse("nlu_fallback", 0.1)), True),
        (TextEvent("yes", parse("nlu_fallback", 0.1)), True),
        (TextEvent("可以提交", parse("affirm", 0.93)), True),
        # A button's title (or its number on WeChat and the console) typed out:
        (TextEvent("提交,但不同意提供联系方式", parse("nlu_fallback", 0.1)), False),
        (TextEvent("同意提供给调解员,提交", parse("nlu_fallback", 0.1)), True),
    ],
    ids=["button", "button-no", "同意", "好的", "yes", "affirm", "title-no", "title-yes"],
)
def test_review_submits_with_the_consent_given(answer: Event, consent: bool) -> None:
    chat = drive_to("review")
    out = chat.send(answer)
    [action] = out.actions
    assert isinstance(action, FileCase) and action.reason == "submit"
    assert action.draft["consent"] is consent
    assert action.draft["phone"] == "13900001111" and chat.step == "filing"


@pytest.mark.parametrize(
    "answer",
    [
        TextEvent("不", parse("nlu_fallback", 0.1)),
        TextEvent("不同意", parse("nlu_fallback", 0.1)),
        TextEvent("no", parse("nlu_fallback", 0.1)),
        TextEvent("算了吧", parse("deny", 0.95)),
        ButtonEvent("no"),  # a yes/no button from an earlier message
    ],
    ids=["不", "不同意", "no", "deny", "button-no"],
)
def test_a_plain_no_at_the_review_asks_which_and_files_nothing(answer: Event) -> None:
    chat = drive_to("review")
    out = chat.send(answer)
    assert out.actions == () and chat.step == "review"
    assert chat.state["draft"]["consent"] is None
    assert "还是暂时不想提交" in out.replies[0].text
    assert chat.payloads()[-2:] == ["submit", "submit:no"]  # asked again, buttons and all
    out = chat.text("提交,但不同意提供联系方式")
    [action] = out.actions
    assert isinstance(action, FileCase) and action.draft["consent"] is False


def test_edit_consent_still_opens_the_consent_question() -> None:
    chat = drive_to("review")
    chat.send(ButtonEvent("edit:consent"))
    assert chat.step == "consent" and chat.payloads() == ["yes", "no"]
    chat.send(ButtonEvent("no"))
    assert chat.step == "review" and chat.state["draft"]["consent"] is False
    out = chat.send(ButtonEvent("submit"))  # the button pressed at the review decides
    [action] = out.actions
    assert isinstance(action, FileCase) and action.draft["consent"] is True


def test_submit_no_is_a_button_payload_for_text_channels() -> None:
    from bot.channels.text_input import text_to_event

    assert text_to_event("submit:no") == ButtonEvent("submit:no")
    assert text_to_event("submit") == ButtonEvent("submit")
    assert isinstance(text_to_event("submit:maybe"), TextEvent)


def test_edit_category_at_review_restarts_the_questions() -> None:
    chat = Chat()
    chat.text("老板欠薪", intent="dispute_labor")
    chat.send(ButtonEvent("yes"))
    answer_slots(chat)
    chat.send(ButtonEvent("street:none"))
    chat.send(ButtonEvent("skip"))
    assert chat.step == "review"
    chat.send(ButtonEvent("edit:category"))
    chat.send(ButtonEvent("cat:dispute_gig_work"))
    assert chat.state["draft"]["category"] == "dispute_gig_work"
    assert chat.step == "slot"


def test_cancel_asks_then_forgets_the_draft() -> None:
    chat = Chat()
    chat.text("邻居漏水", intent="dispute_neighbor")
    chat.send(ButtonEvent("yes"))
    chat.text("不想弄了,取消吧", intent="cancel", confidence=0.95)
    assert chat.step == "confirm_cancel"
    chat.send(ButtonEvent("no"))
    assert chat.step == "slot" and chat.state["draft"]["category"] == "dispute_neighbor"
    chat.send(CommandEvent("cancel"))
    out = chat.send(ButtonEvent("yes"))
    assert chat.state["draft"] is None and chat.step == "describe"
    assert out.actions == ()


def test_unsure_anytime_intent_in_free_text_is_an_answer() -> None:
    chat = Chat()
    chat.text("老板欠薪", intent="dispute_labor")
    chat.send(ButtonEvent("yes"))
    chat.text("帮助电子厂", intent="help", confidence=0.45)
    assert chat.state["draft"]["slots"]["employer"] == "帮助电子厂"


EMERGENCY_STEPS = [
    "new",
    "confirm_category",
    "slot",
    "street",
    "community",
    "phone",
    "consent",
    "review",
    "done",
]


def drive_to(step: str) -> Chat:
    chat = Chat()
    if step == "new":
        return chat
    chat.text("老公喝醉了就吵", intent="dispute_family")
    if step == "confirm_category":
        return chat
    chat.send(ButtonEvent("yes"))
    if step == "slot":
        return chat
    answer_slots(chat)
    if step == "street":
        return chat
    chat.send(ButtonEvent("street:xinan"))
    if step == "community":
        return chat
    chat.send(ButtonEvent("comm:"))
    if step == "phone":
        return chat
    chat.send(ContactEvent("+86 139 0000 1111"))
    if step == "review":
        return chat
    if step == "consent":  # only reached by "edit: consent" (and saved conversations)
        chat.send(ButtonEvent("edit:consent"))
        return chat
    chat.send(ButtonEvent("submit"))
    chat.send(CaseFiled("BA-20261126-0001", "submit"))
    return chat


@pytest.mark.parametrize("step", EMERGENCY_STEPS)
def test_emergency_at_every_step(step: str) -> None:
    chat = drive_to(step)
    assert chat.step == step
    out = chat.send(TextEvent("他拿着刀说要砍死我", parse("emergency", 0.97, risk=True)))
    assert "110" in out.replies[0].text and "12338" in out.replies[0].text
    [action] = out.actions
    if step == "done":
        assert isinstance(action, FlagUrgent) and action.reference == "BA-20261126-0001"
        return
    assert isinstance(action, FileCase) and action.reason == "emergency"
    assert action.draft["risk"] == "urgent" and action.draft["words"]
    out = chat.send(CaseFiled("BA-20261126-0002", "emergency"))
    assert "BA-20261126-0002" in out.replies[0].text
    assert chat.state["draft"]["reference"] == "BA-20261126-0002"
    # A second alarm flags the filed case instead of filing another.
    out = chat.send(TextEvent("他又来了", parse("nlu_fallback", 0.2, risk=True)))
    assert [type(a) for a in out.actions] == [FlagUrgent]


def test_emergency_then_finishing_the_form_updates_the_same_case() -> None:
    chat = drive_to("slot")
    chat.send(TextEvent("我想死", parse("emergency", 0.9, risk=True)))
    out = chat.send(CaseFiled("BA-20261126-0003", "emergency"))
    # Where the resident is comes first: it routes the filed case to the nearest staff.
    assert chat.step == "street" and "street:xixiang" in chat.payloads()
    out = chat.send(ButtonEvent("street:xixiang"))
    [moved] = out.actions
    assert isinstance(moved, UpdateCase) and moved.draft["street"] == "xixiang"
    answer_slots(chat)
    chat.send(ButtonEvent("skip"))
    assert chat.step == "review"
    out = chat.send(ButtonEvent("submit"))
    assert [type(a) for a in out.actions] == [UpdateCase]
    assert "BA-20261126-0003" in out.replies[0].text and chat.step == "done"


def test_violence_answer_in_family_form_raises_urgent() -> None:
    chat = Chat()
    chat.text("老公天天吵架", intent="dispute_family")
    chat.send(ButtonEvent("yes"))
    actions = []
    for _ in range(8):
        if chat.step != "slot":
            break
        slot = chat.state["draft"]["slot"]
        if slot == "safety":
            actions = list(chat.send(ButtonEvent("choice:violence")).actions)
            break
        answer_slots_once(chat)
    assert [type(a) for a in actions] == [FileCase]
    assert actions[0].draft["risk"] == "urgent"


def answer_slots_once(chat: Chat) -> None:
    form = CTX.forms.get(chat.state["draft"]["category"])
    slot = form.slot(chat.state["draft"]["slot"])
    assert slot is not None
    if slot.type == "choice":
        chat.send(ButtonEvent(f"choice:{slot.choices[0].value}"))
    elif not slot.required:
        chat.send(ButtonEvent("skip"))
    else:
        chat.text("一些情况")


def test_resume_after_restart_from_saved_state() -> None:
    chat = drive_to("street")
    saved = json.dumps(chat.state)
    resumed = Chat()
    resumed.state = json.loads(saved)
    out = resumed.send(CommandEvent("start"))
    assert "street:xinan" in resumed.payloads() and resumed.step == "street"
    assert "欢迎回来" in out.replies[0].text


def test_shared_location_maps_to_nearest_street() -> None:
    chat = drive_to("street")
    out = chat.send(LocationEvent(22.728, 113.828))  # near Shajing
    assert chat.state["draft"]["street"] == "shajing", out.replies[0].text
    chat = drive_to("street")
    chat.send(LocationEvent(39.9, 116.4))  # Beijing
    assert chat.step == "street" and chat.state["draft"]["street"] is None


def test_invalid_phone_is_asked_again() -> None:
    chat = drive_to("phone")
    out = chat.text("12345")
    assert chat.step == "phone" and "11" in out.replies[0].text


def test_status_check_mid_form_returns_to_question() -> None:
    chat = drive_to("slot")
    out = chat.send(CommandEvent("status"))
    assert out.actions == (LookupStatus(),)
    out = chat.send(
        StatusResult(
            ({"reference": "BA-1", "category": "dispute_labor", "status": "claimed", "last": ""},)
        )
    )
    assert "BA-1" in out.replies[0].text and chat.step == "slot"


def test_language_switch_and_english_detection() -> None:
    chat = Chat()
    out = chat.text("My landlord keeps my deposit", intent="dispute_tenancy")
    assert chat.state["lang"] == "en" and "Privacy" in out.replies[1].text
    out = chat.send(CommandEvent("language", "zh"))
    assert chat.state["lang"] == "zh" and "中文" in out.replies[0].text
    out = chat.text("please speak english", intent="change_language", confidence=0.9)
    assert chat.state["lang"] == "en"


def test_attachments_kept_in_draft_then_attached_after_filing() -> None:
    chat = drive_to("slot")
    chat.send(AttachmentEvent("photo", "file-1", 120_000))
    assert chat.state["draft"]["attachments"][0]["file_id"] == "file-1"
    out = chat.send(AttachmentEvent("document", "file-2", 30 * 1024 * 1024, "application/pdf"))
    assert "20" in out.replies[0].text and len(chat.state["draft"]["attachments"]) == 1
    out = chat.send(AttachmentEvent("document", "file-3", 1000, "application/x-msdownload"))
    assert len(chat.state["draft"]["attachments"]) == 1
    done = drive_to("done")
    out = done.send(AttachmentEvent("photo", "file-4", 5000))
    assert [type(a) for a in out.actions] == [AttachEvidence]


def test_bad_input_gets_polite_answers_and_keeps_state() -> None:
    chat = drive_to("slot")
    before = chat.state["draft"]["slot"]
    for event in (
        UnsupportedEvent("sticker"),
        TextEvent("   ", {}),
        CommandEvent("frobnicate"),
        ButtonEvent("cat:not_a_category"),
        ButtonEvent("edit:slot:../../etc"),
    ):
        out = chat.send(event)
        assert out.replies and out.actions == ()
        assert chat.state["draft"]["slot"] == before


def test_very_long_description_is_kept_up_to_the_limit() -> None:
    chat = Chat()
    out = chat.text("欠" * 25_000, intent="dispute_labor")
    assert len(chat.state["draft"]["words"][0]) == CTX.max_words
    assert any("太长" in r.text for r in out.replies)


def test_request_human_with_description_files_at_once() -> None:
    chat = drive_to("slot")
    out = chat.send(CommandEvent("human"))
    [action] = out.actions
    assert isinstance(action, FileCase) and action.reason == "human"
    chat.send(CaseFiled("BA-20261126-0009", "human"))
    assert chat.state["draft"]["reference"] == "BA-20261126-0009"


def test_request_human_before_anything_asks_for_a_sentence_first() -> None:
    chat = Chat()
    chat.send(CommandEvent("start"))
    out = chat.send(CommandEvent("human"))
    assert out.actions == ()
    out = chat.text("邻居家的狗咬了我孩子", intent="dispute_injury")
    assert [type(a) for a in out.actions] == [FileCase]


def test_engine_does_not_mutate_its_input() -> None:
    state = initial_state()
    frozen = json.dumps(state)
    handle(state, TextEvent("你好", parse("greet")), CTX)
    assert json.dumps(state) == frozen


def test_a_bare_role_word_is_asked_not_prefilled() -> None:
    chat = Chat()
    chat.text(
        "老板欠了我三个月工资",
        intent="dispute_labor",
        entities=[{"entity": "counterparty", "value": "老板", "additional_info": {"kind": "role"}}],
    )
    chat.send(ButtonEvent("yes"))
    assert chat.step == "slot" and chat.state["draft"]["slot"] == "employer"
    chat = Chat()
    chat.text(
        "宏达电子厂欠了我工资",
        intent="dispute_labor",
        entities=[
            {"entity": "counterparty", "value": "宏达电子厂", "additional_info": {"kind": "name"}}
        ],
    )
    assert chat.step == "confirm_category" and "宏达电子厂" in chat.texts()
    chat.send(ButtonEvent("yes"))
    assert chat.state["draft"]["slots"]["employer"] == "宏达电子厂"
