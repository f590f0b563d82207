"""Conversations saved before the engine became a package still load and finish.

The JSON files in tests/data/dialogue_states/ were written by the single-module engine
(commit "Test data: conversation states saved …"), at every step a resident can leave
a conversation at. Each must load, answer /help at the same step, and be carried to a
filed case by a resident who answers every question.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.dialogue.engine import Context, Step, handle
from bot.dialogue.forms import default_forms
from bot.dialogue.geography import default_geography
from bot.dialogue.model import (
    ButtonEvent,
    CaseFiled,
    CommandEvent,
    ContactEvent,
    FileCase,
    TextEvent,
    UpdateCase,
)

CTX = Context(forms=default_forms(), geography=default_geography())
SAVED = sorted((Path(__file__).parent / "data/dialogue_states").glob("*.json"))


def saved(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8"))["state"])


def test_every_step_was_saved() -> None:
    steps = {saved(path)["step"] for path in SAVED}
    intake = set(Step) - {Step.OFFER_CONSULTATION}  # the referral step is newer
    assert steps == {s.value for s in intake}


def answer(state: dict[str, Any]) -> Any:
    """What a cooperative resident sends at ``state``'s step."""
    step = Step(state["step"])
    draft = state.get("draft") or {}
    if step in (Step.NEW, Step.DESCRIBE):
        return TextEvent(
            "楼上邻居漏水", {"intent": {"name": "dispute_neighbor", "confidence": 0.9}}
        )
    if step == Step.CHOOSE_CATEGORY:
        return ButtonEvent("cat:dispute_neighbor")
    if step == Step.SLOT:
        slot = CTX.forms.get(draft["category"]).slot(draft["slot"])
        assert slot is not None
        if slot.choices:
            return ButtonEvent(f"choice:{slot.choices[0].value}")
        return TextEvent(
            {"amount": "500", "integer": "3", "date": "2026-10-01"}.get(slot.type, "对方")
        )
    if step == Step.STREET:
        return ButtonEvent("street:xixiang")
    if step == Step.COMMUNITY:
        return ButtonEvent("comm:")
    if step == Step.PHONE:
        return ContactEvent("13812345678")
    if step == Step.REVIEW:
        return ButtonEvent("submit")
    if step == Step.EDIT_WORDS:
        return TextEvent("楼上漏水很严重")
    if step == Step.DONE:
        return TextEvent(
            "又有一件事,房东不退押金", {"intent": {"name": "dispute_tenancy", "confidence": 0.9}}
        )
    return ButtonEvent("yes")


@pytest.mark.parametrize("path", SAVED, ids=[p.stem for p in SAVED])
def test_saved_state_loads_and_answers_help_at_the_same_step(path: Path) -> None:
    state = saved(path)
    out = handle(state, CommandEvent("help"), CTX)
    assert out.state["step"] == state["step"]
    assert "/status" in out.replies[0].text
    assert out.state.get("draft") == state.get("draft")


@pytest.mark.parametrize("path", SAVED, ids=[p.stem for p in SAVED])
def test_saved_state_goes_on_to_a_filed_case(path: Path) -> None:
    state = saved(path)
    if state["step"] == Step.FILING:  # the runner files it: feed its result
        out = handle(state, CaseFiled("BA-20261130-0009", "submit"), CTX)
        assert out.state["step"] == Step.DONE and "BA-20261130-0009" in out.replies[0].text
        return
    for _ in range(25):
        out = handle(state, answer(state), CTX)
        state = json.loads(json.dumps(out.state))
        done = [a for a in out.actions if isinstance(a, FileCase) and a.reason == "submit"]
        if state["step"] == Step.DONE:  # an urgent case filed early is updated at the end
            done += [a for a in out.actions if isinstance(a, UpdateCase)]
        if done:
            draft = done[0].draft
            assert draft["words"] and draft["category"] and draft["consent"] is True
            return
    raise AssertionError(f"{path.stem}: never filed; stuck at {state['step']}")
