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


def handle(state: Mapping[str, Any] | None, event: Event, ctx: Context) -> Outcome:
    """Advance the conversation by one event. Never mutates ``state``."""
    # State is JSON (it is stored as JSON); a JSON round trip copies it several times
    # faster than copy.deepcopy, and keeps the engine from mutating its input.
    copied = cast(State, json.loads(json.dumps(state))) if state else initial_state()
    turn = Turn(state=copied, ctx=ctx)
    step = turn.state.get("step")
    offered = turn.state.get("offered") or {}
    if isinstance(event, TextEvent) and event.text.strip() in offered:
        event = ButtonEvent(offered[event.text.strip()])
    dispatch(turn, event)
    if turn.state.get("step") != step and not turn.offered_now:
        # Buttons of a question that is no longer asked must not be pressed by typing.
        turn.state.pop("offered", None)
    return Outcome(cast(dict[str, Any], turn.state), tuple(turn.replies), tuple(turn.actions))
