"""The one contract every NLU backend keeps, so the bot never knows which engine runs.

A parse result is Rasa's ``/model/parse`` JSON (``text``, ``intent``, ``entities``,
``intent_ranking``) plus one key of ours, ``risk``, filled by the in-process rule layer
whatever the backend: a risk must never be missed because a remote server was unsure
or down.
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict, runtime_checkable

#: Rasa's name for "below the FallbackClassifier threshold".
FALLBACK_INTENT = "nlu_fallback"


class IntentScore(TypedDict):
    name: str
    confidence: float


class Risk(TypedDict):
    """What the rule layer found: ``flagged`` plus the kinds and the phrases that matched."""

    flagged: bool
    kinds: list[str]
    matches: list[str]


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
