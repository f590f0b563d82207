"""Output ports: how the service layer reaches people without knowing the channel.

Services (filing, the desk, the emergency path, retention …) never import a channel.
They hand what must be said to a port, and each front end implements the port it can:

- :class:`ResidentPort` — a message to a resident on the channel they wrote from
  (Telegram private chat, WeChat customer-service message, the REST bridge's callback
  URL, the console). Buttons become inline keyboards, clickable menus or numbered
  options, whatever the platform has.
- :class:`CardTarget` — a case card for the people of a centre (a Telegram group, a
  WeCom group robot, the web workspace's live queue). The same card fans out to every
  target a centre has.
- :class:`StaffPort` — a direct message to one mediator or supervisor (Telegram
  private chat with the bot, the workspace inbox).

A delivery that fails raises :class:`DeliveryError`; ``permanent`` says whether trying
again could ever help (a blocked bot, an unknown chat) so callers record it on the case
instead of retrying for ever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from actions.metrics import MESSAGES_OUT
from bot.dialogue.model import Reply


class DeliveryError(Exception):
    """A message could not be delivered; ``permanent`` when retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@runtime_checkable
class ResidentPort(Protocol):
    """Sends replies to a resident on one channel."""

    channel: str

    async def send(self, chat_id: str, replies: Sequence[Reply], *, language: str) -> None:
        """Deliver ``replies`` in order; raise :class:`DeliveryError` on failure."""
        ...


@dataclass(frozen=True, slots=True)
class CaseCard:
    """What the people of a centre see of a case, already masked and translated.

    ``trigger`` is the resident's words that made it urgent (phones masked);
    ``holder`` the alias of whoever has the case now (None: nobody yet).
    """

    reference: str
    kind_title: str
    risk: str
    risk_badge: str
    place: str
    phone_masked: str
    summary: str
    status: str
    holder: str | None = None
    trigger: str | None = None
    danger: tuple[str, ...] = ()
    acknowledged_by: str | None = None
    claimable: bool = True
    link: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def urgent(self) -> bool:
        return self.risk == "urgent"


@runtime_checkable
class CardTarget(Protocol):
    """Somewhere a centre's people see case cards."""

    name: str

    async def post(self, centre_code: str, card: CaseCard) -> dict[str, Any] | None:
        """Post the card for a centre; returns what is needed to edit it later, or None
        when this target has nowhere to post for that centre."""
        ...

    async def update(self, posted: dict[str, Any], card: CaseCard) -> None:
        """Show the card's new state (claimed, acknowledged, moved …) where it was posted."""
        ...

    # Optional: ``async def reaches_any(self) -> bool`` — False only when the target
    # surely has nowhere to post for any centre (no group, no robot in the directory);
    # the desk then skips building a new case's card nobody would see.


@runtime_checkable
class StaffPort(Protocol):
    """Direct messages to one member of staff."""

    name: str

    async def notify(
        self,
        staff_key: tuple[str, str],
        text: str,
        *,
        reference: str | None = None,
        attachment: dict[str, Any] | None = None,
        buttons: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Tell the person behind ``(channel, external_id)``; False if this port cannot
        reach them (another channel's id), :class:`DeliveryError` if it tried and failed."""
        ...


class ResidentPorts:
    """The ports of the running process, by channel name."""

    def __init__(self, ports: Sequence[ResidentPort] = ()) -> None:
        self._ports: dict[str, ResidentPort] = {}
        for port in ports:
            self.register(port)

    def register(self, port: ResidentPort) -> None:
        self._ports[port.channel] = port

    def get(self, channel: str) -> ResidentPort | None:
        return self._ports.get(channel)

    @property
    def channels(self) -> list[str]:
        return sorted(self._ports)

    async def send(
        self, channel: str, chat_id: str, replies: Sequence[Reply], *, language: str
    ) -> bool:
        """True when a port for ``channel`` took the replies; False when there is none.

        Raises :class:`DeliveryError` from the port.
        """
        port = self._ports.get(channel)
        if port is None:
            return False
        await port.send(chat_id, replies, language=language)
        MESSAGES_OUT.labels(channel, "desk").inc(len(replies))
        return True
