"""The conversation's saved state, typed: the steps it can be at and the draft case.

The state is stored as JSON in the ``conversations`` table, so these are a
:class:`~typing.TypedDict` (a typed view of the very dict that is saved, nothing to
convert) and a :class:`~enum.StrEnum` whose values are the strings older versions
saved: a conversation saved before this module existed loads unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict


class Step(StrEnum):
    """Where a conversation stands: the question it waits for an answer to."""

    NEW = "new"
    DESCRIBE = "describe"
    CONFIRM_CATEGORY = "confirm_category"
    CHOOSE_CATEGORY = "choose_category"
    CONFIRM_PREFILL = "confirm_prefill"
    SLOT = "slot"
    STREET = "street"
    COMMUNITY = "community"
    PHONE = "phone"
    CONSENT = "consent"
    REVIEW = "review"
    EDIT_WORDS = "edit_words"
    CONFIRM_CANCEL = "confirm_cancel"
    FILING = "filing"
    DONE = "done"
    #: After a referral: "book a free legal consultation?"
    OFFER_CONSULTATION = "offer_consultation"

    @classmethod
    def of(cls, value: object) -> Step:
        """The step saved as ``value``; an unknown or missing one starts over."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.NEW


class Trigger(TypedDict):
    """The message that made a case urgent, and what kind of danger it shows."""

    text: str
    kinds: list[str]


class Draft(TypedDict, total=False):
    """The case being written. Every key :func:`new_draft` sets is always present."""

    words: list[str]
    category: str | None
    confidence: float
    candidates: list[str]
    entities: list[dict[str, Any]]
    slots: dict[str, Any]
    skipped: list[str]
    prefill: dict[str, Any]
    street: str | None
    community: str | None
    location_done: bool
    phone: str | None
    phone_done: bool
    consent: bool | None
    risk: str
    risk_kinds: list[str]
    attachments: list[dict[str, Any]]
    reference: str | None
    editing: bool
    human: bool
    #: The slot being asked (step ``slot``).
    slot: str
    #: The emergency message (set when the case was filed as urgent).
    trigger: Trigger
    #: A referral topic the consultation was booked after.
    referral: str


class State(TypedDict, total=False):
    """A conversation as saved; ``step``, ``lang``, ``lang_set``, ``draft``, ``cases``
    are always present (see :func:`initial_state`)."""

    step: str
    lang: str
    lang_set: bool
    draft: Draft | None
    cases: list[str]
    #: Button titles of the last question → payloads (typing a title presses it).
    offered: dict[str, str]
    #: The step to go back to after "cancel? no".
    resume: str
    #: A rated case waiting for the resident's comment.
    comment_for: str
    #: The newest case of this chat made urgent: later words go to it.
    urgent_case: str
    #: The referral topic offered (step ``offer_consultation``).
    referral: str
    #: The runner's marker of mediator messages already shown (REST, console).
    seen_out: int


def new_draft() -> Draft:
    return {
        "words": [],
        "category": None,
        "confidence": 0.0,
        "candidates": [],
        "entities": [],
        "slots": {},
        "skipped": [],
        "prefill": {},
        "street": None,
        "community": None,
        "location_done": False,
        "phone": None,
        "phone_done": False,
        "consent": None,
        "risk": "normal",
        "risk_kinds": [],
        "attachments": [],
        "reference": None,
        "editing": False,
        "human": False,
    }


def initial_state() -> State:
    return {"step": Step.NEW.value, "lang": "zh", "lang_set": False, "draft": None, "cases": []}
