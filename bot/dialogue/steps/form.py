"""The kind's own questions: what the first message already said, then the slots."""

from __future__ import annotations

from typing import Any

from bot.dialogue.forms import Slot
from bot.dialogue.model import Button, ButtonEvent, Event, TextEvent
from bot.dialogue.registry import step
from bot.dialogue.state import Step
from bot.dialogue.turn import Turn, yes_no
from bot.dialogue.values import check_answer, entity_value, prefill
from bot.dialogue.views import format_value, location_text
from storage.phone import mask_phone, normalise_phone


def next_question(turn: Turn) -> None:
    """Go to the first unanswered question, or to the review, and ask it."""
    advance(turn)
    turn.ask()


def advance(turn: Turn) -> None:
    """Go to the first unanswered question, or to the review (without asking).

    An urgent draft asks where the resident is before anything else: the case is
    filed already and that is what routes it to the nearest staff.
    """
    draft = turn.draft
    pending = pending_slots(turn)
    if draft.get("risk") == "urgent" and not draft["location_done"] and not draft.get("editing"):
        turn.go(Step.COMMUNITY if draft["street"] else Step.STREET)
    elif draft.get("editing"):
        draft["editing"] = False
        turn.go(Step.REVIEW)
    else:
        if pending:
            turn.go(Step.SLOT)
            draft["slot"] = pending[0].name
        elif not draft["location_done"]:
            turn.go(Step.COMMUNITY if draft["street"] else Step.STREET)
        elif not draft["phone_done"]:
            turn.go(Step.PHONE)
        else:  # consent is asked at the review, by its two submit buttons
            turn.go(Step.REVIEW)


def pending_slots(turn: Turn) -> list[Slot]:
    """The form's questions still to ask one by one (see :meth:`Form.asked`)."""
    draft = turn.draft
    form = turn.form
    done = set(draft["slots"]) | set(draft["skipped"])
    return [s for s in form.slots if s.name not in done and form.asked(s)]


def collect_prefill(turn: Turn) -> bool:
    """Keep in the draft what the description already answers; True if anything."""
    draft = turn.draft
    form = turn.form
    entities = {"entities": draft["entities"]}
    words = " ".join(draft["words"])
    found = prefill(form.slots, entities, words, turn.ctx.today)
    found = {k: v for k, v in found.items() if k not in draft["slots"]}
    location = prefill_location(turn)
    phone = entity_value(entities, "phone")
    phone = normalise_phone(str(phone)) if phone else None
    if draft["phone_done"]:
        phone = None
    draft["prefill"] = {"slots": found, "location": location, "phone": phone}
    return bool(found or location or phone)


def apply_prefill(turn: Turn) -> None:
    """The resident said yes to what was understood: it becomes the draft's."""
    from bot.dialogue.router import raise_urgent  # the router imports the steps

    draft = turn.draft
    found: dict[str, Any] = draft.pop("prefill", {})
    draft["prefill"] = {}
    draft["slots"].update(found.get("slots") or {})
    if found.get("location"):
        draft["street"], draft["community"] = found["location"]
        # A street without its community still gets the community question.
        draft["location_done"] = draft["community"] is not None
    if found.get("phone"):
        draft["phone"] = found["phone"]
        draft["phone_done"] = True
    for name, value in (found.get("slots") or {}).items():
        slot = turn.form.slot(name)
        risk = next((c.risk for c in slot.choices if c.value == value), None) if slot else None
        if risk == "urgent" and draft["risk"] != "urgent":
            raise_urgent(turn, [f"{draft['category']}:{name}:{value}"])
        elif risk == "elevated" and draft["risk"] == "normal":
            draft["risk"] = "elevated"


def prefill_lines(turn: Turn) -> list[str]:
    """What the description already answers, one line each (phone masked)."""
    found = turn.draft.get("prefill") or {}
    form = turn.form
    lang = turn.lang
    lines = []
    for name, value in (found.get("slots") or {}).items():
        slot = form.slot(name)
        if slot:
            lines.append(f"• {slot.label.get(lang)}: {format_value(turn, slot, value)}")
    if found.get("location"):
        street, community = found["location"]
        lines.append(f"• {turn.text('field_location')}: {location_text(turn, street, community)}")
    if found.get("phone"):
        lines.append(f"• {turn.text('field_phone')}: {mask_phone(found['phone'])}")
    return lines


def start_form(turn: Turn) -> None:
    """The kind is settled: confirm what is already known, or start asking."""
    if collect_prefill(turn):
        turn.go(Step.CONFIRM_PREFILL)
        turn.ask()
        return
    next_question(turn)


def prefill_location(turn: Turn) -> list[str | None] | None:
    """A street (and community) named in the description or found by the NLU."""
    draft = turn.draft
    if draft["location_done"]:
        return None
    text = " ".join(draft["words"])
    street, community = turn.ctx.geography.find_in_text(text)
    if street is None:
        for item in draft["entities"]:
            if item.get("entity") == "location":
                street, community = turn.ctx.geography.find_in_text(str(item.get("value", "")))
                if street:
                    break
    return [street.code, community] if street else None


@step(Step.CONFIRM_PREFILL)
class ConfirmPrefill:
    """Everything the first message answered, confirmed with one yes."""

    def handle(self, turn: Turn, event: Event) -> None:
        answer = yes_no(event, turn)
        if answer is None:
            if isinstance(event, TextEvent):
                turn.say("please_yes_no")
            turn.ask()
            return
        if answer:
            apply_prefill(turn)
        else:
            turn.draft["prefill"] = {}
        next_question(turn)

    def ask(self, turn: Turn) -> None:
        lines = prefill_lines(turn)
        turn.say("confirm_prefill", turn.yes_no_buttons(), lines="\n".join(lines))


def current_slot(turn: Turn) -> Slot | None:
    return turn.form.slot(str(turn.draft.get("slot")))


@step(Step.SLOT)
class AskSlot:
    """One question of the kind's form (a choice, an amount, a date, a number, text)."""

    def handle(self, turn: Turn, event: Event) -> None:
        from bot.dialogue.router import raise_urgent  # the router imports the steps

        slot = current_slot(turn)
        draft = turn.draft
        if slot is None:
            next_question(turn)
            return
        value: Any = None
        problem: str | None = "invalid_answer"
        if isinstance(event, ButtonEvent):
            if event.payload == "skip" and not slot.required:
                draft["skipped"].append(slot.name)
                draft["slots"].pop(slot.name, None)
                next_question(turn)
                return
            if event.payload.startswith("choice:"):
                choice = event.payload.removeprefix("choice:")
                value = choice if any(c.value == choice for c in slot.choices) else None
        elif isinstance(event, TextEvent):
            answer = check_answer(slot, event.text, event.parse, turn.ctx.today)
            value, problem = answer.value, answer.problem
        if value is None:
            if isinstance(event, TextEvent | ButtonEvent):
                turn.say(problem or "invalid_answer")  # a re-ask that says what is wanted
            turn.ask()
            return
        draft["slots"][slot.name] = value
        if slot.name in draft["skipped"]:
            draft["skipped"].remove(slot.name)
        risk = next((c.risk for c in slot.choices if c.value == value and c.risk), None)
        if risk == "urgent" and draft["risk"] != "urgent":
            raise_urgent(turn, [f"{draft['category']}:{slot.name}:{value}"])
        elif risk == "elevated" and draft["risk"] == "normal":
            draft["risk"] = "elevated"
        next_question(turn)

    def ask(self, turn: Turn) -> None:
        slot = current_slot(turn)
        if slot is None:
            return
        lang = turn.lang
        rows = [[Button(c.label(lang), f"choice:{c.value}")] for c in slot.choices]
        if not slot.required:
            rows.append([Button(turn.text("skip"), "skip")])
        turn.reply(slot.prompt.get(lang), rows)
