"""The intake conversation as a pure function: ``handle(state, event, ctx) → Outcome``.

No I/O happens here. The runner loads the state, parses text with the NLU, calls
:func:`handle`, carries out the returned actions (file a case, look up status …), feeds
their results back in as events, and saves the new state. Because of that split every
conversation, including emergencies at any step, can be tested as a list of events.

The package, by concern:

- :mod:`~bot.dialogue.state` — the saved state, typed (``Step``, ``Draft``, ``State``);
- :mod:`~bot.dialogue.turn` — the :class:`Context` and one turn's collected output;
- :mod:`~bot.dialogue.router` — what is answered the same at every step (commands,
  anytime intents, emergencies, attachments, ratings, the runner's results);
- :mod:`~bot.dialogue.steps` — one object per step (its input and its question),
  registered in :mod:`~bot.dialogue.registry` like a ``ConversationHandler``'s states.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import bot.dialogue.steps  # noqa: F401  (registers every step)
from bot.dialogue.model import ButtonEvent, Event, Outcome, TextEvent
from bot.dialogue.router import (
    ALLOWED_DOCUMENT_TYPES,
    MAX_ATTACHMENT_BYTES,
    detect_language,
    dispatch,
)
from bot.dialogue.state import State, Step, initial_state, new_draft
from bot.dialogue.turn import NO_WORDS, YES_WORDS, Context, Turn
from bot.dialogue.values import normalise_answer
from bot.dialogue.views import review_lines

__all__ = [
    "ALLOWED_DOCUMENT_TYPES",
    "MAX_ATTACHMENT_BYTES",
    "NO_WORDS",
    "YES_WORDS",
    "Context",
    "Step",
    "detect_language",
    "handle",
    "initial_state",
    "new_draft",
    "review_lines",
]


#: Steps whose typed answer is a number in its own right (an amount, a phone number):
#: there "1" is not "the first button".
_NUMBER_ANSWER_TYPES = frozenset({"amount", "integer", "date", "text"})


def pressed(turn: Turn, text: str) -> str | None:
    """The payload of the offered button a typed answer names, if any.

    A title typed with other spacing, punctuation or width ("是。", "提交") counts, and
    so does its number ("1", "１") on channels that show buttons as numbered options
    (WeChat, console) — except where a number is itself the answer.
    """
    offered = turn.state.get("offered") or {}
    if not offered:
        return None
    if text.strip() in offered:
        return offered[text.strip()]
    wanted = normalise_answer(text)
    if not wanted:
        return None
    for title, payload in offered.items():
        if normalise_answer(title) == wanted:
            return payload
    if wanted.isdigit() and turn.step != Step.PHONE:
        if turn.step == Step.SLOT:
            slot = turn.form.slot(str(turn.draft.get("slot")))
            if slot is None or slot.type in _NUMBER_ANSWER_TYPES:
                return None
        number = int(wanted)
        payloads = list(offered.values())
        if 1 <= number <= len(payloads):
            return payloads[number - 1]
    return None


def handle(state: Mapping[str, Any] | None, event: Event, ctx: Context) -> Outcome:
    """Advance the conversation by one event. Never mutates ``state``."""
    # State is JSON (it is stored as JSON); a JSON round trip copies it several times
    # faster than copy.deepcopy, and keeps the engine from mutating its input.
    copied = cast(State, json.loads(json.dumps(state))) if state else initial_state()
    turn = Turn(state=copied, ctx=ctx)
    step = turn.state.get("step")
    if isinstance(event, TextEvent):
        payload = pressed(turn, event.text)
        if payload is not None:
            event = ButtonEvent(payload)
    dispatch(turn, event)
    if turn.state.get("step") != step and not turn.offered_now:
        # Buttons of a question that is no longer asked must not be pressed by typing.
        turn.state.pop("offered", None)
    return Outcome(cast(dict[str, Any], turn.state), tuple(turn.replies), tuple(turn.actions))
