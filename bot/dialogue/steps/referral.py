"""A legal matter mediation does not take: say where to go, offer a free consultation.

The answer comes from the referral catalogue (bot/referrals/*.yml), picked by the
words; the referral itself is an action (:class:`GiveReferral`) so the reports count
it. Booking the consultation is a short intake of kind ``legal_consultation``: the
question is the resident's own words, then location, phone, consent and review.
"""

from __future__ import annotations

from bot.dialogue.model import Event, GiveReferral, TextEvent
from bot.dialogue.registry import step
from bot.dialogue.state import Step, new_draft
from bot.dialogue.steps.form import next_question
from bot.dialogue.turn import Turn, intent_of, yes_no

CONSULTATION = "legal_consultation"


def give_referral(turn: Turn, text: str) -> None:
    """Answer where to go, record the referral, and offer the consultation."""
    topic = turn.ctx.referrals.pick(text)
    turn.actions.append(GiveReferral(topic.topic))
    turn.reply(topic.answer(turn.lang))
    draft = new_draft()
    draft["words"] = [text[: turn.ctx.max_words]]
    draft["referral"] = topic.topic
    turn.state["draft"] = draft
    turn.state["referral"] = topic.topic
    turn.go(Step.OFFER_CONSULTATION)
    turn.ask()


@step(Step.OFFER_CONSULTATION)
class OfferConsultation:
    """ "Book a free legal consultation?" — yes starts its short intake, no ends politely."""

    def handle(self, turn: Turn, event: Event) -> None:
        from bot.dialogue.steps.describe import describe  # describe hands over to here

        answer = yes_no(event, turn)
        if answer is True:
            draft = turn.draft
            draft["category"] = CONSULTATION
            draft["confidence"] = 1.0
            question = " ".join(draft["words"]).strip()
            slot = turn.form.slot("question")
            if slot is not None and question and len(question) <= slot.max_length:
                draft["slots"]["question"] = question  # asked already: not again
            next_question(turn)
            return
        if answer is False:
            turn.state["draft"] = None
            turn.state.pop("referral", None)
            turn.go(Step.DONE if turn.state.get("cases") else Step.DESCRIBE)
            turn.say("referral_declined")
            return
        if isinstance(event, TextEvent):
            name, confidence = intent_of(event.parse)
            if name.startswith("dispute_") and confidence >= turn.ctx.threshold:
                turn.state["draft"] = None  # a dispute after all: a normal intake
                describe(turn, event)
                return
        turn.ask()

    def ask(self, turn: Turn) -> None:
        turn.say("referral_offer", turn.yes_no_buttons())
