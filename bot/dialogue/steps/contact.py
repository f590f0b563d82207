"""Where it happened and how to reach the resident: street, community, phone, consent."""

from __future__ import annotations

import copy

from bot.dialogue.geography import Street
from bot.dialogue.model import (
    Button,
    ButtonEvent,
    ContactEvent,
    Event,
    LocationEvent,
    Reply,
    TextEvent,
    UpdateCase,
)
from bot.dialogue.registry import step
from bot.dialogue.state import Step
from bot.dialogue.steps.form import next_question
from bot.dialogue.turn import Turn, yes_no
from bot.dialogue.values import entity_value
from storage.phone import normalise_phone


def place(turn: Turn, street: Street | None, community: str | None) -> None:
    """Record the street (and community, if known); ask for the community if not."""
    draft = turn.draft
    draft["street"] = street.code if street else None
    draft["community"] = community
    reference = draft.get("reference")
    if reference and draft.get("risk") == "urgent":
        # Filed already as urgent: move it there now (the runner posts a new card);
        # the community can wait, the street is what reaches the nearest staff.
        draft["location_done"] = True
        turn.actions.append(UpdateCase(reference, copy.deepcopy(dict(draft))))
        next_question(turn)
        return
    if street is None or community:
        draft["location_done"] = True
        next_question(turn)
    else:
        turn.go(Step.COMMUNITY)
        turn.ask()


@step(Step.STREET)
class AskStreet:
    """The street as a button, a shared location, or named in a sentence."""

    def handle(self, turn: Turn, event: Event) -> None:
        geo = turn.ctx.geography
        if isinstance(event, ButtonEvent) and event.payload.startswith("street:"):
            code = event.payload.removeprefix("street:")
            if code == "none":  # outside Bao'an, or not sure: the district centre takes it
                place(turn, None, None)
                return
            street = geo.street(code)
            if street:
                place(turn, street, None)
                return
        elif isinstance(event, LocationEvent):
            found = geo.nearest(event.latitude, event.longitude)
            if found is None:
                turn.say("location_outside")
            else:
                turn.say("location_mapped", street=found.name(turn.lang))
                place(turn, found, None)
                return
        elif isinstance(event, TextEvent):
            named, community = geo.find_in_text(event.text)
            if named:
                place(turn, named, community)
                return
            turn.say("invalid_answer")
        turn.ask()

    def ask(self, turn: Turn) -> None:
        lang = turn.lang
        streets = list(turn.ctx.geography.streets)
        rows = [
            [Button(s.name(lang), f"street:{s.code}") for s in streets[i : i + 3]]
            for i in range(0, len(streets), 3)
        ]
        rows.append([Button(turn.text("street_none"), "street:none")])
        urgent = turn.draft.get("risk") == "urgent"
        turn.say("ask_where_now" if urgent else "ask_street", rows)
        if turn.has("location"):
            turn.replies.append(Reply(turn.text("share_location_hint"), request="location"))


@step(Step.COMMUNITY)
class AskCommunity:
    """The community of the street (free text is kept as written, up to 30 characters)."""

    def handle(self, turn: Turn, event: Event) -> None:
        draft = turn.draft
        street = turn.ctx.geography.street(draft["street"])
        community: str | None = None
        if isinstance(event, ButtonEvent) and event.payload.startswith("comm:"):
            community = event.payload.removeprefix("comm:") or None
            if street and community and community not in street.communities:
                turn.ask()
                return
        elif isinstance(event, TextEvent):
            text = event.text.strip()
            known = [c for c in (street.communities if street else ()) if c in text]
            community = known[0] if known else (text[:30] if text else None)
        else:
            turn.ask()
            return
        draft["community"] = community
        draft["location_done"] = True
        next_question(turn)

    def ask(self, turn: Turn) -> None:
        street = turn.ctx.geography.street(turn.draft.get("street"))
        names = list(street.communities) if street else []
        rows = [[Button(c, f"comm:{c}") for c in names[i : i + 3]] for i in range(0, len(names), 3)]
        rows.append([Button(turn.text("community_unknown"), "comm:")])
        turn.say("ask_community", rows)


@step(Step.PHONE)
class AskPhone:
    """A mobile number typed or shared; may be skipped (the mediator writes here)."""

    def handle(self, turn: Turn, event: Event) -> None:
        draft = turn.draft
        phone: str | None = None
        if isinstance(event, ButtonEvent) and event.payload == "skip":
            draft["phone"], draft["phone_done"] = None, True
            next_question(turn)
            return
        if isinstance(event, ContactEvent):
            phone = normalise_phone(event.phone)
        elif isinstance(event, TextEvent):
            found = entity_value(event.parse, "phone")
            phone = normalise_phone(str(found)) if found else normalise_phone(event.text)
        if phone is None:
            turn.say("invalid_phone")
            turn.ask()
            return
        draft["phone"], draft["phone_done"] = phone, True
        next_question(turn)

    def ask(self, turn: Turn) -> None:
        key = "ask_phone" if turn.has("contact") else "ask_phone_typed"
        turn.reply(turn.text(key), [[Button(turn.text("skip"), "skip")]])
        if turn.has("contact"):
            turn.replies.append(Reply(turn.text("share_contact_hint"), request="contact"))


@step(Step.CONSENT)
class AskConsent:
    """May the mediator and the partner department see this (the phone included)?

    New conversations are asked this at the review (its two submit buttons); this step
    stays for conversations saved while waiting at it, and for ``edit:consent``.
    """

    def handle(self, turn: Turn, event: Event) -> None:
        answer = yes_no(event, turn)
        if answer is None:
            turn.ask()
            return
        turn.draft["consent"] = answer
        next_question(turn)

    def ask(self, turn: Turn) -> None:
        turn.say("ask_consent", turn.yes_no_buttons())
