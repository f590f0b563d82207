"""Intake forms as data: what a mediator needs to know for each kind of dispute.

Each category has a YAML file in ``bot/forms/`` (Rasa-domain style: slots with a type,
an optional NLU entity that pre-fills them, validation and a prompt per language) plus
the self-help text shown when the case is filed. An administrator edits those files, not
code; :func:`load_forms` validates them at start-up so a typo fails loudly, naming the
file, instead of in the middle of a resident's conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FORMS_DIR = Path(__file__).resolve().parent.parent / "forms"

SlotType = Literal["text", "amount", "date", "integer", "choice"]


class Localised(BaseModel):
    """A text in Simplified Chinese and English (both required)."""

    model_config = ConfigDict(extra="forbid")
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.zh


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(pattern=r"^[a-z0-9_]{1,24}$")
    zh: str
    en: str
    #: Choosing this answer raises the case's risk (e.g. violence at home → urgent).
    risk: Literal["elevated", "urgent"] | None = None
    #: Words in a first message (or a typed answer) that mean this choice, so it is
    #: confirmed with the kind instead of asked (工资/欠薪 → wages, 漏水 → leak).
    keywords: list[str] = Field(default_factory=list)

    def label(self, language: str) -> str:
        return self.en if language == "en" else self.zh


class Slot(BaseModel):
    """One question; ``entity`` names the NLU entity that answers it without asking."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,23}$")
    type: SlotType = "text"
    entity: str | None = None
    #: Another entity that answers it when ``entity`` is not found (美团 → the other
    #: party of a platform worker's dispute).
    fallback_entity: str | None = None
    #: For a date: ``past`` refuses a date still to come (the default: disputes are
    #: about what happened), ``any`` takes both.
    when: Literal["past", "any"] = "past"
    required: bool = True
    #: Ask it one by one even though it is optional (a skip button is offered); by
    #: default only required slots and risk questions are asked (see Form.asked).
    ask: bool = False
    label: Localised
    prompt: Localised
    choices: list[Choice] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None
    max_length: int = Field(default=500, gt=0, le=4000)

    @model_validator(mode="after")
    def _choices_for_choice(self) -> Slot:
        if self.type == "choice" and len(self.choices) < 2:
            raise ValueError(f"slot {self.name!r}: a choice slot needs at least two choices")
        return self


class Form(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: A dispute kind (``dispute_*``) or one of the kinds that are no dispute:
    #: ``emergency`` and ``legal_consultation``.
    category: str = Field(pattern=r"^(dispute_[a-z_]+|emergency|legal_consultation)$")
    title: Localised
    slots: list[Slot] = Field(default_factory=list, max_length=8)
    self_help: Localised

    @model_validator(mode="after")
    def _unique_slots(self) -> Form:
        names = [slot.name for slot in self.slots]
        if len(names) != len(set(names)):
            raise ValueError("slot names must be unique within a form")
        return self

    def slot(self, name: str) -> Slot | None:
        return next((slot for slot in self.slots if slot.name == name), None)

    def asked(self, slot: Slot) -> bool:
        """Asked one by one: required slots, optional ones whose answer can raise the
        risk (violence at home), and those the form marks ``ask: true``. Other
        optional slots (amounts, headcounts, kinds of evidence, dates) are taken from
        the first message when it says them, else left to the review's edit buttons:
        ask less."""
        return slot.required or slot.ask or any(c.risk for c in slot.choices)


class FormsError(Exception):
    """A form file is malformed; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Forms:
    """All categories' forms, keyed by category, in the order the files list them."""

    by_category: dict[str, Form]

    def get(self, category: str) -> Form:
        return self.by_category.get(category) or self.by_category["dispute_other"]

    @property
    def categories(self) -> list[str]:
        return list(self.by_category)

    @property
    def disputes(self) -> list[str]:
        """The dispute kinds a resident may pick (not emergency or consultation)."""
        return [c for c in self.by_category if c.startswith("dispute_")]


def _load_file(path: Path) -> Form:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise FormsError(f"{path}: not valid YAML: {error}") from None
    try:
        return Form.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise FormsError(f"{path}: {where}: {first['msg']}") from None


def load_forms(directory: Path = FORMS_DIR) -> Forms:
    """Read and validate every ``*.yml`` form; ``dispute_other`` must exist as the catch-all."""
    forms: dict[str, Form] = {}
    for path in sorted(directory.glob("*.yml")):
        form = _load_file(path)
        if form.category in forms:
            raise FormsError(f"{path}: category {form.category} is defined twice")
        forms[form.category] = form
    if "dispute_other" not in forms:
        raise FormsError(f"{directory}: no form for dispute_other (the catch-all category)")
    return Forms(forms)


@cache
def default_forms() -> Forms:
    return load_forms()
