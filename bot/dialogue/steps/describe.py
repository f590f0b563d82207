"""The first steps: the resident describes what happened, and the kind is settled."""

from __future__ import annotations

import copy
import unicodedata

from bot.dialogue.forms import Slot
from bot.dialogue.model import Button, ButtonEvent, Event, FileCase, TextEvent
from bot.dialogue.registry import step
from bot.dialogue.state import Step
from bot.dialogue.steps.form import (
    apply_prefill,
    collect_prefill,
    next_question,
    pending_slots,
    prefill_lines,
    start_form,
)
from bot.dialogue.turn import Turn, intent_of, yes_no

#: Conversation intents that are not a description when nothing was described yet.
SMALL_TALK = frozenset({"greet", "thank", "goodbye", "affirm", "deny"})


def readable(text: str) -> bool:
    """Chinese or English words we can take as a description (not emoji, digits only,
    or mostly another script such as Korean, Japanese kana, Cyrillic or Arabic)."""
    cjk = latin = other = 0
    for ch in text:
        if "\u3400" <= ch <= "\u9fff":
            cjk += 1
        elif ch.isascii() and ch.isalpha():
            latin += 1
        elif unicodedata.category(ch).startswith("L"):
            other += 1
    if cjk and cjk >= other:
        return True
    return latin >= 2 and latin >= other


def describe(turn: Turn, event: TextEvent) -> None:
    """Take a description, then confirm the category or offer the likely ones."""
    name, confidence = intent_of(event.parse)
    existing = turn.state.get("draft")
    first = not (existing and existing.get("words")) and not (existing or {}).get("human")
    if name == "referral" and confidence >= turn.ctx.threshold and first:
        from bot.dialogue.steps.referral import give_referral  # it imports this module

        give_referral(turn, event.text.strip())
        return
    draft = turn.draft
    turn.add_words(event.text.strip())
    draft["entities"] = list(draft["entities"]) + list(event.parse.get("entities") or [])
    ranking = [
        str(item.get("name"))
        for item in event.parse.get("intent_ranking") or []
        if str(item.get("name", "")).startswith("dispute_")
    ]
    draft["candidates"] = [c for c in ranking if c != "dispute_other"][:3]
    if draft.get("human"):
        # Filed at once for a person to look at: under the kind only when the
        # classifier is sure, else "other" (the resident picks the kind next).
        sure = name.startswith("dispute_") and confidence >= turn.ctx.threshold
        draft["category"] = name if sure else "dispute_other"
        draft["confidence"] = confidence if sure else 0.0
        turn.actions.append(FileCase(copy.deepcopy(dict(draft)), "human"))
        turn.go(Step.CONFIRM_CATEGORY)
        return
    if name.startswith("dispute_") and confidence >= turn.ctx.threshold:
        draft["category"] = name
        draft["confidence"] = confidence
        collect_prefill(turn)  # confirmed together with the kind: one step
        turn.go(Step.CONFIRM_CATEGORY)
    else:
        turn.go(Step.CHOOSE_CATEGORY)
    turn.ask()


@step(Step.NEW, Step.DESCRIBE)
class Describe:
    """Asks what happened; greets on first contact, then takes the description."""

    def handle(self, turn: Turn, event: Event) -> None:
        if turn.step == Step.NEW:
            turn.go(Step.DESCRIBE)
            turn.say("greeting")
            turn.say("privacy")
            if not isinstance(event, TextEvent):
                turn.ask()
                return
        if not isinstance(event, TextEvent):
            turn.ask()
            return
        name, confidence = intent_of(event.parse)
        draft = turn.state.get("draft")
        if not (draft and draft["words"]) and not readable(event.text):
            turn.say("describe_in_words")  # emoji, digits, another script: no guess
            return
        if name in SMALL_TALK and not (draft and draft["words"]):
            if name in ("thank", "goodbye"):
                turn.say(name)
            turn.ask()
            return
        if name == "out_of_scope" and confidence >= turn.ctx.threshold:
            turn.say("out_of_scope")
            turn.ask()
            return
        describe(turn, event)

    def ask(self, turn: Turn) -> None:
        turn.say("ask_describe")


def merged_slot(turn: Turn) -> Slot | None:
    """The first question after the kind, when it is a choice: asked together with
    the kind ("Labour dispute. What is the main problem? [unpaid wages] … [not this
    kind]"), so pressing a choice confirms the kind and answers it in one message."""
    draft = turn.draft
    found = (draft.get("prefill") or {}).get("slots") or {}
    pending = [s for s in pending_slots(turn) if s.name not in found]
    if pending and pending[0].choices and "slots" in (draft.get("prefill") or {}):
        return pending[0]
    return None


@step(Step.CONFIRM_CATEGORY)
class ConfirmCategory:
    """Confirms the kind and what the description already answered, in one step; only
    asked when the classifier is sure enough."""

    def handle(self, turn: Turn, event: Event) -> None:
        draft = turn.draft
        slot = merged_slot(turn)
        if slot and isinstance(event, ButtonEvent) and event.payload.startswith("choice:"):
            value = event.payload.removeprefix("choice:")
            if any(c.value == value for c in slot.choices):
                apply_prefill(turn)
                draft["slots"][slot.name] = value
                next_question(turn)
                return
        answer = yes_no(event, turn)
        if answer is True:
            if "slots" in (draft.get("prefill") or {}):
                apply_prefill(turn)
                next_question(turn)
            else:  # a conversation saved before the kind and prefill were merged
                start_form(turn)
        elif answer is False:
            rejected = draft["category"]
            draft["prefill"] = {}
            draft["candidates"] = [c for c in draft["candidates"] if c != rejected][:3]
            turn.go(Step.CHOOSE_CATEGORY)
            turn.ask()
        elif isinstance(event, TextEvent):
            describe(turn, event)
        else:
            turn.ask()

    def ask(self, turn: Turn) -> None:
        draft = turn.draft
        if float(draft.get("confidence") or 0.0) < turn.ctx.threshold:
            # Never ask to confirm a guess below the fallback threshold: offer choices.
            turn.go(Step.CHOOSE_CATEGORY)
            turn.ask()
            return
        title = turn.category_title(draft.get("category") or "dispute_other")
        lines = prefill_lines(turn) if "slots" in (draft.get("prefill") or {}) else []
        slot = merged_slot(turn)
        if slot is None:
            key = "confirm_category_with" if lines else "confirm_category"
            turn.say(key, turn.yes_no_buttons(), category=title, lines="\n".join(lines))
            return
        rows = [[Button(c.label(turn.lang), f"choice:{c.value}")] for c in slot.choices]
        rows.append([Button(turn.text("not_this_kind"), "no")])
        text = turn.text("kind_and_question", category=title, question=slot.prompt.get(turn.lang))
        if lines:
            text = (
                turn.text("kind_noted", category=title, lines="\n".join(lines))
                + "\n"
                + (slot.prompt.get(turn.lang))
            )
        turn.reply(text, rows)


@step(Step.CHOOSE_CATEGORY)
class ChooseCategory:
    """The likely kinds (at most three) and "other" as buttons."""

    def handle(self, turn: Turn, event: Event) -> None:
        if isinstance(event, ButtonEvent) and event.payload.startswith("cat:"):
            category = event.payload.removeprefix("cat:")
            if category in turn.ctx.forms.by_category:
                draft = turn.draft
                draft["category"] = category
                draft["confidence"] = 1.0
                if draft.get("editing"):
                    draft["slots"], draft["skipped"] = {}, []
                    draft["editing"] = False
                start_form(turn)
                return
        if isinstance(event, TextEvent):
            describe(turn, event)
            return
        turn.ask()

    def ask(self, turn: Turn) -> None:
        forms = turn.ctx.forms
        draft = turn.state.get("draft") or {}
        candidates = [c for c in draft.get("candidates") or [] if c in forms.by_category]
        if not candidates:
            candidates = [c for c in forms.disputes if c != "dispute_other"]
        rows = [[Button(turn.category_title(c), f"cat:{c}")] for c in candidates]
        rows.append([Button(turn.category_title("dispute_other"), "cat:dispute_other")])
        turn.say("choose_category", rows)


@step(Step.EDIT_WORDS)
class EditWords:
    """At the review: the description written again replaces the old one."""

    def handle(self, turn: Turn, event: Event) -> None:
        if isinstance(event, TextEvent) and event.text.strip():
            turn.draft["words"] = []
            turn.add_words(event.text.strip())
            next_question(turn)
            return
        turn.ask()

    def ask(self, turn: Turn) -> None:
        turn.say("ask_words")
