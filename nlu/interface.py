"""The one contract every NLU backend keeps, so the bot never knows which engine runs.

A parse result is Rasa's ``/model/parse`` JSON (``text``, ``intent``, ``entities``,
``intent_ranking``) plus one key of ours, ``risk``, filled by the in-process rule layer
whatever the backend: a risk must never be missed because a remote server was unsure
or down.
"""

from __future__ import annotations

from typing import Any, NotRequired, Protocol, TypedDict, runtime_checkable

#: Rasa's name for "below the FallbackClassifier threshold".
FALLBACK_INTENT = "nlu_fallback"


class IntentScore(TypedDict):
    name: str
    confidence: float


class Risk(TypedDict):
    """What the rule layer found: ``flagged`` plus the kinds and the phrases that matched.

    ``flagged`` is danger now: the bot answers with emergency numbers and gets a person
    on it. ``kinds`` (non-empty exactly when flagged) says which danger, for the card a
    mediator reads: ``violence_now``, ``threat``, ``self_harm``, ``child_danger``,
    ``group_conflict`` (a crowd fight or mass confrontation forming now), and from the
    built-in engine's classifier doubt ``possible_emergency``. ``matches`` quotes the
    words that triggered it.

    Optional signals, present only when true (``risk.get("urgency", False)``), never
    flags on their own:

    * ``urgency``: the resident asks for speed ("快点来人", "急急急", "urgent") without
      any danger word; worth a faster answer, not the emergency path.
    * ``past``: danger words that sit in a past event which the message itself says is
      over ("去年他打过我一次, 现在已经离婚了"), with no sign of danger now. The words
      are in ``past_matches``; a case may be marked ``elevated`` on them, not urgent.
    * ``benign``: not flagged, and the rules found a harmless reading of words that look
      like danger: ``game`` (打麻将), ``idiom`` (打死也不信, 笑死, 死心), ``past``,
      ``urgency``, with none of the danger-adjacent words (怕, 报警, 算账 …) that veto
      it. A classifier's ``emergency`` guess on such a message is most likely a false
      alarm ("他们今晚又在打麻将" scored 0.99 emergency); callers may discount it.
    """

    flagged: bool
    kinds: list[str]
    matches: list[str]
    urgency: NotRequired[bool]
    past: NotRequired[bool]
    past_matches: NotRequired[list[str]]
    benign: NotRequired[list[str]]


class ParseResult(TypedDict, total=False):
    text: str
    intent: IntentScore
    entities: list[dict[str, Any]]
    intent_ranking: list[IntentScore]
    risk: Risk


@runtime_checkable
class NLUBackend(Protocol):
    """Anything that turns a resident's text into a :class:`ParseResult`."""

    async def parse(self, text: str) -> ParseResult:
        """Parse ``text``; never raises for odd input (empty, huge, binary junk)."""
        ...

    async def health(self) -> dict[str, object]:
        """A small JSON-able status for ``/healthz``."""
        ...
