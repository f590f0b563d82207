"""One turn of the conversation: the context it reads and what it collects.

A :class:`Turn` holds a private copy of the state and gathers the replies and actions
of one :func:`~bot.dialogue.engine.handle` call; the step objects write to it and ask
their question through it. Small helpers every step uses (yes/no answers, the words of
the description, category titles) live here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bot.dialogue.forms import Form, Forms
from bot.dialogue.geography import Geography
from bot.dialogue.model import Action, Button, ButtonEvent, Event, Reply, TextEvent
from bot.dialogue.state import Draft, State, Step, new_draft
from bot.i18n import LANGUAGES, raw, t
from bot.referrals import Referrals, default_referrals
from nlu.interface import ParseResult

#: Every channel feature a reply may rely on; a channel without one never hears of it.
ALL_FEATURES = frozenset({"buttons", "contact", "location"})


@dataclass(frozen=True, slots=True)
class Context:
    """Everything the engine reads besides state and event: all plain data.

    ``features``: what the resident's channel can do — ``buttons`` (inline choices;
    without them the channel shows numbered options), ``contact`` (a share-my-number
    button), ``location`` (a share-my-location button). The runner sets it per channel.
    """

    forms: Forms
    geography: Geography
    threshold: float = 0.3
    anytime_threshold: float = 0.6
    max_words: int = 20_000
    features: frozenset[str] = ALL_FEATURES
    #: The resident's today (in ``settings.timezone``), so a date still to come is
    #: refused for something that already happened; None: only words like 下个月 are.
    today: date | None = None
    referrals: Referrals = field(default_factory=default_referrals)


def _answer_words(key: str) -> frozenset[str]:
    """Plain yes/no answers from both catalogs (a resident may answer in either)."""
    words: set[str] = set()
    for language in LANGUAGES:
        words.update(str(w).lower() for w in raw(f"dialogue.{key}", language) or [])
    return frozenset(words)


YES_WORDS = _answer_words("yes_words")
NO_WORDS = _answer_words("no_words")


@dataclass(slots=True)
class Turn:
    """What one call collects before it becomes an :class:`~bot.dialogue.model.Outcome`."""

    state: State
    ctx: Context
    replies: list[Reply] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    offered_now: bool = False

    @property
    def lang(self) -> str:
        return str(self.state.get("lang", "zh"))

    @property
    def step(self) -> Step:
        return Step.of(self.state.get("step"))

    def go(self, step: Step) -> None:
        self.state["step"] = step.value

    @property
    def draft(self) -> Draft:
        draft = self.state.get("draft")
        if draft is None:
            draft = self.state["draft"] = new_draft()
        return draft

    @property
    def form(self) -> Form:
        return self.ctx.forms.get(self.draft.get("category") or "dispute_other")

    def has(self, feature: str) -> bool:
        return feature in self.ctx.features

    def say(self, key: str, buttons: list[list[Button]] | None = None, **values: Any) -> None:
        self.reply(t(f"dialogue.{key}", self.lang, **values), buttons)

    def text(self, key: str, **values: Any) -> str:
        return t(f"dialogue.{key}", self.lang, **values)

    def reply(
        self,
        text: str,
        buttons: list[list[Button]] | None = None,
        request: str | None = None,
    ) -> None:
        rows = tuple(tuple(row) for row in (buttons or []) if row)
        self.replies.append(Reply(text=text, buttons=rows, request=request))  # type: ignore[arg-type]
        if rows:
            self.state["offered"] = {b.title: b.payload for row in rows for b in row}
            self.offered_now = True

    def ask(self) -> None:
        """Ask the question of the current step (again)."""
        from bot.dialogue.registry import STEPS  # the registry is filled by the steps

        STEPS[self.step].ask(self)

    def category_title(self, category: str) -> str:
        form = self.ctx.forms.by_category.get(category)
        return form.title.get(self.lang) if form else category

    def yes_no_buttons(self) -> list[list[Button]]:
        return [[Button(self.text("yes"), "yes"), Button(self.text("no"), "no")]]

    def add_words(self, text: str) -> None:
        """Append to the description, up to ``max_words`` characters in all."""
        words = self.draft["words"]
        used = sum(len(w) for w in words)
        room = self.ctx.max_words - used
        if room <= 0:
            self.say("too_long")
            return
        if len(text) > room:
            self.say("too_long")
        words.append(text[:room])


def intent_of(parse: ParseResult) -> tuple[str, float]:
    intent = parse.get("intent")
    if not intent:
        return "nlu_fallback", 0.0
    return str(intent.get("name") or "nlu_fallback"), float(intent.get("confidence") or 0.0)


def yes_no(event: Event, turn: Turn) -> bool | None:
    """A yes/no answer as a button, a plain word in either language, or an intent."""
    if isinstance(event, ButtonEvent) and event.payload in ("yes", "no"):
        return event.payload == "yes"
    if isinstance(event, TextEvent):
        text = event.text.strip().lower().rstrip("!！。.~")
        if text in YES_WORDS:
            return True
        if text in NO_WORDS:
            return False
        name, confidence = intent_of(event.parse)
        if name in ("affirm", "deny") and confidence >= turn.ctx.threshold:
            return name == "affirm"
    return None
