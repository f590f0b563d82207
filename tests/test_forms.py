"""The intake forms in ``bot/forms/``: every category has a small, bilingual form, and a
malformed form file fails at start-up with an error that names the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.dialogue.forms import FORMS_DIR, Forms, FormsError, load_forms
from bot.dialogue.values import prefill

# The dispute intents of design.md's category table.
CATEGORIES = {
    "dispute_family",
    "dispute_neighbor",
    "dispute_labor",
    "dispute_gig_work",
    "dispute_tenancy",
    "dispute_property_mgmt",
    "dispute_consumer",
    "dispute_traffic",
    "dispute_medical",
    "dispute_debt",
    "dispute_contract",
    "dispute_construction",
    "dispute_land_housing",
    "dispute_injury",
    "dispute_environment",
    "dispute_other",
}

# Kinds that are no dispute: danger with no dispute behind it, a booked consultation.
OTHER_KINDS = {"emergency", "legal_consultation"}

# Asked by the engine for every category; a form must not ask them again.
ENGINE_SLOTS = {"location", "street", "community", "phone", "consent"}


@pytest.fixture(scope="module")
def forms() -> Forms:
    return load_forms()


def test_every_category_has_a_form(forms: Forms) -> None:
    assert set(forms.categories) == CATEGORIES | OTHER_KINDS
    assert set(forms.disputes) == CATEGORIES


def test_each_file_is_named_after_its_category() -> None:
    assert {path.stem for path in FORMS_DIR.glob("*.yml")} == CATEGORIES | OTHER_KINDS


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_forms_are_small_and_bilingual(forms: Forms, category: str) -> None:
    form = forms.get(category)
    assert form.category == category
    assert 2 <= len(form.slots) <= 5, "collect only what a mediator needs to start"
    assert form.title.zh.strip() and form.title.en.strip()
    assert form.self_help.zh.strip() and form.self_help.en.strip()
    for slot in form.slots:
        assert slot.name not in ENGINE_SLOTS
        assert slot.prompt.zh.strip() and slot.prompt.en.strip()
        if slot.type == "choice":
            assert 2 <= len(slot.choices) <= 6
            assert len({choice.value for choice in slot.choices}) == len(slot.choices)
            assert all(choice.zh.strip() and choice.en.strip() for choice in slot.choices)


def test_unknown_category_falls_back_to_other(forms: Forms) -> None:
    assert forms.get("dispute_martian").category == "dispute_other"


def test_gig_work_prefills_platform_and_amount(forms: Forms) -> None:
    form = forms.get("dispute_gig_work")
    platform, amount = form.slot("platform"), form.slot("amount")
    assert platform is not None and platform.entity == "platform" and platform.type == "text"
    assert amount is not None and amount.entity == "amount" and amount.type == "amount"
    parse = {
        "entities": [
            {"entity": "platform", "value": "美团"},
            {"entity": "amount", "value": 3000},
        ]
    }
    # The platform also answers "who is the other party" (fallback_entity).
    assert prefill(form.slots, parse) == {
        "platform": "美团",
        "counterparty": "美团",
        "amount": 3000,
    }


@pytest.mark.parametrize(
    "category",
    [
        "dispute_labor",
        "dispute_gig_work",
        "dispute_property_mgmt",
        "dispute_land_housing",
        "dispute_environment",
        "dispute_consumer",
    ],
)
def test_group_prone_categories_ask_headcount(forms: Forms, category: str) -> None:
    slot = forms.get(category).slot("headcount")
    assert slot is not None and slot.entity == "headcount" and slot.type == "integer"


# --- malformed files ---------------------------------------------------------------

OTHER = """\
category: dispute_other
title: {zh: 其他纠纷, en: Other dispute}
slots:
  - name: summary
    label: {zh: 简述, en: Summary}
    prompt: {zh: 请说说是什么事。, en: Tell us what happened.}
  - name: counterparty
    entity: counterparty
    label: {zh: 对方, en: Other party}
    prompt: {zh: 请写对方的称呼。, en: Name the other party.}
self_help: {zh: 保留证据。, en: Keep the evidence.}
"""


def _form(slots: str) -> str:
    return (
        "category: dispute_neighbor\n"
        "title: {zh: 邻里纠纷, en: Neighbour dispute}\n"
        f"slots:\n{slots}"
        "self_help: {zh: 保留证据。, en: Keep the evidence.}\n"
    )


_ISSUE = (
    "  - name: issue\n"
    "    type: {type}\n"
    "    label: {{zh: 问题, en: Problem}}\n"
    "    prompt: {{zh: 请选择问题。, en: Choose the problem.}}\n"
)

# file contents → a fragment of the expected message
BAD_FILES = {
    "bad_yaml": ("category: dispute_neighbor\nslots: [\n  - name: issue\n", "not valid YAML"),
    "unknown_type": (_form(_ISSUE.format(type="colour")), "slots.0.type"),
    "one_choice": (
        _form(
            _ISSUE.format(type="choice")
            + "    choices:\n      - {value: noise, zh: 噪音, en: Noise}\n"
        ),
        "at least two choices",
    ),
    "duplicate_slot": (
        _form(_ISSUE.format(type="text") + _ISSUE.format(type="text")),
        "slot names must be unique",
    ),
}


def test_a_valid_directory_loads(tmp_path: Path) -> None:
    (tmp_path / "dispute_other.yml").write_text(OTHER, encoding="utf-8")
    (tmp_path / "dispute_neighbor.yml").write_text(
        _form(_ISSUE.format(type="text")), encoding="utf-8"
    )
    assert load_forms(tmp_path).categories == ["dispute_neighbor", "dispute_other"]


@pytest.mark.parametrize("problem", sorted(BAD_FILES))
def test_malformed_file_is_named(tmp_path: Path, problem: str) -> None:
    (tmp_path / "dispute_other.yml").write_text(OTHER, encoding="utf-8")
    bad = tmp_path / "dispute_neighbor.yml"
    content, expected = BAD_FILES[problem]
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(FormsError) as raised:
        load_forms(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{bad}:")
    assert expected in message


def test_missing_catch_all_is_an_error(tmp_path: Path) -> None:
    shutil.copy(FORMS_DIR / "dispute_labor.yml", tmp_path)
    with pytest.raises(FormsError, match="dispute_other") as raised:
        load_forms(tmp_path)
    assert str(tmp_path) in str(raised.value)


def test_a_category_defined_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dispute_other.yml").write_text(OTHER, encoding="utf-8")
    (tmp_path / "other_copy.yml").write_text(OTHER, encoding="utf-8")
    with pytest.raises(FormsError, match=r"other_copy\.yml"):
        load_forms(tmp_path)
