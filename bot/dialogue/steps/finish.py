"""The end of an intake: review and submit, the cancel question, waiting, done."""

from __future__ import annotations

import copy

from bot.dialogue.model import (
    Button,
    ButtonEvent,
    CaseFiled,
    Event,
    FileCase,
    TextEvent,
    UpdateCase,
)
from bot.dialogue.registry import step
from bot.dialogue.state import Step
from bot.dialogue.steps.describe import describe
from bot.dialogue.steps.form import next_question
from bot.dialogue.turn import Turn, intent_of, yes_no
from bot.dialogue.views import review_lines

#: Review buttons "edit: <field>" → the step that asks that field again.
EDIT_TARGETS = {
    "category": Step.CHOOSE_CATEGORY,
    "words": Step.EDIT_WORDS,
    "location": Step.STREET,
    "phone": Step.PHONE,
    "consent": Step.CONSENT,
}


def filed(turn: Turn, event: CaseFiled) -> None:
    """The case has its number: tell the resident what happens next, per risk level."""
    draft = turn.draft
    form = turn.form
    centre = event.centre_en if turn.lang == "en" else event.centre_zh
    if draft.get("risk") == "urgent":
        key = "filed_urgent"  # never "one working day" when someone is in danger
    elif draft.get("category") == "legal_consultation":
        key = "filed_consultation"
    else:
        key = "filed"
    turn.say(
        key,
        reference=event.reference,
        centre=centre or turn.text("centre_default"),
    )
    turn.reply(form.self_help.get(turn.lang).strip())
    turn.state["draft"] = None
    turn.go(Step.DONE)


def submit(turn: Turn) -> None:
    draft = turn.draft
    if draft.get("reference"):
        reference = str(draft["reference"])
        turn.actions.append(UpdateCase(reference, copy.deepcopy(dict(draft))))
        filed(turn, CaseFiled(reference, "submit"))
        return
    turn.go(Step.FILING)
    turn.actions.append(FileCase(copy.deepcopy(dict(draft)), "submit"))


@step(Step.REVIEW)
class Review:
    """Everything at a glance; submit with or without consent, or edit one field.

    The consent question ends the summary and its answer is the submit button pressed,
    so no separate question costs the resident a message. ``edit:consent`` (buttons
    sent before this) still opens the old consent question, which comes back here.
    """

    def handle(self, turn: Turn, event: Event) -> None:
        draft = turn.draft
        if isinstance(event, ButtonEvent) and event.payload in ("submit", "submit:no"):
            draft["consent"] = event.payload == "submit"
            submit(turn)
            return
        answer = yes_no(event, turn)
        if answer is True:  # "yes" to "agree and submit?": both
            draft["consent"] = True
            submit(turn)
            return
        if answer is False:
            # A bare "no" may mean "don't share" or "don't submit (yet)": filing on a
            # guess is not safe either way, so ask which, with the buttons again.
            turn.say("review_which_no")
            turn.ask()
            return
        if isinstance(event, ButtonEvent) and event.payload.startswith("edit:"):
            target = event.payload.removeprefix("edit:")
            draft["editing"] = True
            if target in EDIT_TARGETS:
                turn.go(EDIT_TARGETS[target])
            elif target.startswith("slot:") and turn.form.slot(target[5:]):
                draft["slot"] = target[5:]
                turn.go(Step.SLOT)
            else:
                draft["editing"] = False
        turn.ask()

    def ask(self, turn: Turn) -> None:
        form = turn.form
        edit = turn.text("edit")

        def button(field: str, payload: str) -> Button:
            return Button(f"{edit}: {turn.text(field)}", payload)

        rows = [
            [button("field_category", "edit:category"), button("field_words", "edit:words")],
            *[
                [Button(f"{edit}: {slot.label.get(turn.lang)}", f"edit:slot:{slot.name}")]
                for slot in form.slots
            ],
            [button("field_location", "edit:location"), button("field_phone", "edit:phone")],
            # Consent is asked here, where the resident submits: both ways file the case.
            [Button(turn.text("submit_consent"), "submit")],
            [Button(turn.text("submit_no_consent"), "submit:no")],
        ]
        turn.say("review", rows, lines="\n".join(review_lines(turn)))


@step(Step.CONFIRM_CANCEL)
class ConfirmCancel:
    """Asks whether to drop the unsubmitted draft: yes forgets it, no resumes."""

    def handle(self, turn: Turn, event: Event) -> None:
        answer = yes_no(event, turn)
        state = turn.state
        if answer is True:
            reference = (state.get("draft") or {}).get("reference")
            state["draft"] = None
            turn.go(Step.DESCRIBE)
            state.pop("resume", None)
            turn.say("cancelled_filed" if reference else "cancelled", reference=reference or "")
            return
        if answer is False:
            turn.go(Step.of(state.pop("resume", Step.DESCRIBE.value)))
            turn.say("not_cancelled")
        turn.ask()

    def ask(self, turn: Turn) -> None:
        turn.say("confirm_cancel", turn.yes_no_buttons())


@step(Step.FILING)
class Filing:
    """Submitted; the runner is filing the case (normally within the same event)."""

    def handle(self, turn: Turn, event: Event) -> None:
        turn.say("filing_wait")

    def ask(self, turn: Turn) -> None:
        turn.say("filing_wait")


@step(Step.DONE)
class Done:
    """A case was filed: a new dispute starts a new intake, small talk is answered."""

    def handle(self, turn: Turn, event: Event) -> None:
        if isinstance(event, TextEvent):
            name, confidence = intent_of(event.parse)
            if name.startswith("dispute_") and confidence >= turn.ctx.threshold:
                turn.state["draft"] = None
                turn.state.pop("urgent_case", None)
                describe(turn, event)
                return
            if name in ("thank", "goodbye", "greet") and confidence >= turn.ctx.threshold:
                turn.say(name)
                return
        urgent_case = turn.state.get("urgent_case")
        if urgent_case and isinstance(event, TextEvent):
            turn.say("words_added", reference=urgent_case)  # the router sent CaseWords
            return
        cases = turn.state.get("cases") or []
        turn.say("done_hint", reference=cases[-1] if cases else "")

    def ask(self, turn: Turn) -> None:
        return None


__all__ = ["filed", "next_question", "submit"]
