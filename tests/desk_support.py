"""Stand-ins for other channels' output ports, and helpers to file cases directly.

The ports implement :mod:`actions.ports`' protocols by recording what the desk service
hands them, the way a WeChat or web channel would receive it; nothing of our own code is
replaced. Used by the desk, scheduler and emergency-path tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from actions.desk import DeskService
from actions.intake import file_case
from actions.ports import CaseCard, ResidentPorts
from bot.dialogue.model import Reply
from bot.runtime import Store
from storage.models import Mediator, MediatorRole
from storage.people import add_mediator, get_or_create_resident

CHANNEL = "test"


@dataclass
class RecordingResidents:
    """A resident channel that keeps every reply it was asked to send."""

    channel: str = CHANNEL
    sent: list[tuple[str, Reply]] = field(default_factory=list)

    async def send(self, chat_id: str, replies: Sequence[Reply], *, language: str) -> None:
        self.sent.extend((chat_id, reply) for reply in replies)

    def texts(self, chat_id: str) -> list[str]:
        return [reply.text for chat, reply in self.sent if chat == chat_id]


@dataclass
class RecordingCards:
    """A card target that can show cards only for the centres in ``hearing``."""

    hearing: set[str]
    name: str = "recording"
    posts: list[tuple[str, CaseCard]] = field(default_factory=list)
    updates: list[tuple[int, CaseCard]] = field(default_factory=list)

    async def post(self, centre_code: str, card: CaseCard) -> dict[str, Any] | None:
        if centre_code not in self.hearing:
            return None
        self.posts.append((centre_code, card))
        return {"post": len(self.posts)}

    async def update(self, posted: dict[str, Any], card: CaseCard) -> None:
        self.updates.append((int(posted["post"]), card))

    def centres(self, reference: str) -> list[str]:
        return [code for code, card in self.posts if card.reference == reference]

    def latest(self, post: int) -> CaseCard:
        """The card as post number ``post`` shows it now."""
        shown = self.posts[post - 1][1]
        for number, card in self.updates:
            if number == post:
                shown = card
        return shown


@dataclass
class RecordingStaff:
    """A staff inbox: (external id, text, buttons, attachment) per notification."""

    name: str = CHANNEL
    sent: list[tuple[str, str, list[tuple[str, str]], dict[str, Any] | None]] = field(
        default_factory=list
    )

    async def notify(
        self,
        staff_key: tuple[str, str],
        text: str,
        *,
        reference: str | None = None,
        attachment: dict[str, Any] | None = None,
        buttons: Sequence[tuple[str, str]] = (),
    ) -> bool:
        channel, external_id = staff_key
        if channel != self.name:
            return False
        self.sent.append((external_id, text, list(buttons), attachment))
        return True

    def texts(self, external_id: str) -> list[str]:
        return [text for who, text, _, _ in self.sent if who == external_id]


@dataclass
class Desk:
    service: DeskService
    residents: RecordingResidents
    cards: RecordingCards
    staff: RecordingStaff


def desk_on(store: Store, hearing: set[str], timezone: str = "Asia/Shanghai") -> Desk:
    residents = RecordingResidents()
    cards = RecordingCards(hearing)
    staff = RecordingStaff()
    service = DeskService(
        store,
        ports=ResidentPorts([residents]),
        cards=[cards],
        staff=[staff],
        timezone=timezone,
    )
    return Desk(service, residents, cards, staff)


async def new_case(
    store: Store,
    *,
    chat: str = "r1",
    street: str | None = "fuyong",
    community: str | None = "凤凰",
    risk: str = "normal",
    category: str = "dispute_labor",
    words: str = "老板拖欠三个月工资",
    reason: str = "submit",
    trigger: dict[str, Any] | None = None,
) -> str:
    async with store.sessions.begin() as session:
        resident = await get_or_create_resident(session, CHANNEL, chat)
        draft: dict[str, Any] = {
            "words": [words],
            "category": category,
            "slots": {},
            "street": street,
            "community": community,
            "phone": "13812345678",
            "consent": True,
            "risk": risk,
        }
        if trigger:
            draft["trigger"] = trigger
        filed = await file_case(
            session,
            draft,
            resident=resident,
            channel=CHANNEL,
            chat_id=chat,
            language="zh",
            vault=store.vault,
            reason=reason,
        )
        return filed.reference


async def staff_member(
    store: Store,
    ident: str,
    centre: str,
    role: MediatorRole = MediatorRole.MEDIATOR,
    channel: str = CHANNEL,
) -> Mediator:
    async with store.sessions.begin() as session:
        return await add_mediator(
            session,
            channel=channel,
            external_id=ident,
            display_alias=f"调解员{ident}",
            centre_code=centre,
            role=role,
        )
