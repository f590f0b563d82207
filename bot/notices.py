"""What the intake tells the mediator side after it has committed.

The intake service cannot post into centre chats or mediators' private chats itself
(that is the desk's job, and the desk may be Telegram or nothing at all). It hands over
small notices after its transaction has committed; a failure to deliver one never
costs the resident their reply, and the desk's periodic sweep announces any case whose
announcement was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class CaseNotice:
    """A case was filed (``filed``), became urgent, or the resident asked for a person."""

    kind: Literal["filed", "urgent", "human", "follow_up", "moved"]
    reference: str


@dataclass(frozen=True, slots=True)
class RelayNotice:
    """A resident's message for the mediator working their case."""

    reference: str
    mediator_external_id: str
    text: str | None = None
    attachment: dict[str, Any] | None = None
    #: The risk rules flagged it: shown marked, with an "I'm on it" button.
    flagged: bool = False


Notice = CaseNotice | RelayNotice


class Notifier(Protocol):
    async def deliver(self, notices: list[Notice]) -> None: ...


class LogNotifier:
    """Used when no desk is configured (REST only): the sweep or a later run announces."""

    async def deliver(self, notices: list[Notice]) -> None:
        return None
