"""Plain data the engine reads and writes: events in, replies and actions out, and state.

Everything is a frozen dataclass or JSON-able dict so the engine stays pure: a test can
feed events and compare what comes out without a database, a network or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nlu.interface import ParseResult

# ---------------------------------------------------------------- events (from channels)


@dataclass(frozen=True, slots=True)
class TextEvent:
    """Something the resident typed, with its NLU parse (Rasa JSON plus ``risk``)."""

    text: str
    parse: ParseResult = field(default_factory=lambda: ParseResult())


@dataclass(frozen=True, slots=True)
class ButtonEvent:
    payload: str


@dataclass(frozen=True, slots=True)
class CommandEvent:
    name: str
    args: str = ""


@dataclass(frozen=True, slots=True)
class LocationEvent:
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class ContactEvent:
    phone: str
    own: bool = True


@dataclass(frozen=True, slots=True)
class AttachmentEvent:
    """A photo or document; only its channel file id and metadata travel, never bytes."""

    kind: str
    file_id: str
    size: int | None = None
    mime_type: str | None = None
    file_name: str | None = None


@dataclass(frozen=True, slots=True)
class UnsupportedEvent:
    """Stickers, voice, edits, polls …: anything we cannot read as text."""

    kind: str


# ------------------------------------------------------- results (fed back by the runner)


@dataclass(frozen=True, slots=True)
class CaseFiled:
    reference: str
    reason: str
    centre_zh: str | None = None
    centre_en: str | None = None


@dataclass(frozen=True, slots=True)
class StatusResult:
    """The resident's cases, newest first: dicts with reference, category, status, last."""

    cases: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ActionDone:
    """An action without a value worth showing finished (evidence attached, flag raised)."""

    action: str
    reference: str | None = None


Event = (
    TextEvent
    | ButtonEvent
    | CommandEvent
    | LocationEvent
    | ContactEvent
    | AttachmentEvent
    | UnsupportedEvent
    | CaseFiled
    | StatusResult
    | ActionDone
)

# ------------------------------------------------------------------ replies and actions


@dataclass(frozen=True, slots=True)
class Button:
    title: str
    payload: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A message to the resident. ``request`` asks the channel for a contact or location
    keyboard; ``buttons`` are choices (rows of buttons)."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    request: Literal["contact", "location"] | None = None
    #: A file to send with the text (a mediator's photo or document): the channel's
    #: file id or our stored evidence id, kind, mime type and name.
    attachment: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class FileCase:
    """Create the case from the draft now. ``reason``: submit, emergency or human.

    ``draft["category"]`` is a dispute kind, ``emergency`` (danger with no dispute the
    classifier is sure of) or ``legal_consultation`` (a booked free consultation after a
    referral). An emergency's draft carries ``trigger`` = ``{"text", "kinds"}``: the
    message that raised it."""

    draft: dict[str, Any]
    reason: str


@dataclass(frozen=True, slots=True)
class UpdateCase:
    """The draft of an already filed case (filed early on emergency) is now complete."""

    reference: str
    draft: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FlagUrgent:
    """An existing case (the draft's, else the chat's newest, whatever its status) is
    urgent now. ``words``: the message that raised it (empty when a form answer did);
    ``street``/``community``: a place named in that message, if any."""

    reference: str
    kinds: tuple[str, ...] = ()
    words: str = ""
    street: str | None = None
    community: str | None = None


@dataclass(frozen=True, slots=True)
class CaseWords:
    """A later message of an urgent conversation: add the resident's words to the case."""

    reference: str
    text: str


@dataclass(frozen=True, slots=True)
class GiveReferral:
    """The resident was told mediation is not the way and where to go (``topic``: the
    referral catalogue's topic code, e.g. ``crime``); recorded for the reports."""

    topic: str


@dataclass(frozen=True, slots=True)
class RequestHuman:
    reference: str


@dataclass(frozen=True, slots=True)
class LookupStatus:
    pass


@dataclass(frozen=True, slots=True)
class AttachEvidence:
    reference: str
    attachment: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RateCase:
    reference: str
    rating: int


@dataclass(frozen=True, slots=True)
class CommentCase:
    reference: str
    text: str


Action = (
    FileCase
    | UpdateCase
    | FlagUrgent
    | CaseWords
    | GiveReferral
    | RequestHuman
    | LookupStatus
    | AttachEvidence
    | RateCase
    | CommentCase
)


@dataclass(frozen=True, slots=True)
class Outcome:
    state: dict[str, Any]
    replies: tuple[Reply, ...] = ()
    actions: tuple[Action, ...] = ()
