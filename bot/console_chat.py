"""``tiaojie chat``: talk to the assistant in a terminal, on the same engine and store.

For trying the assistant out and for demonstrations without a messaging app. Buttons are
shown numbered; typing the number presses the button. Input may be piped, so scripted
sessions (and tests) can drive a whole conversation.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import TextIO

from bot.channels.text_input import text_to_event
from bot.dialogue.model import Button, ButtonEvent, Event, Reply
from bot.i18n import t
from bot.intake_service import IntakeService, Sender
from storage import outbox

CHANNEL = "console"


def render(replies: list[Reply], language: str) -> tuple[str, dict[str, str]]:
    """Text to print and the numbered buttons it offers."""
    lines: list[str] = []
    numbered: dict[str, str] = {}
    for reply in replies:
        lines.append(f"🤖 {reply.text}")
        for row in reply.buttons:
            for button in row:
                number = str(len(numbered) + 1)
                numbered[number] = button.payload
                lines.append(f"   [{number}] {button.title}")
        if reply.request == "contact":
            lines.append("   " + t("console.type_phone", language))
    return "\n".join(lines), numbered


async def waiting_messages(service: IntakeService, sender: Sender) -> list[Reply]:
    """Messages the desk left for this console chat (the console's output port is the
    same outbox the REST bridge reads, under the channel name ``console``)."""
    async with service.store.sessions.begin() as session:
        pending = await outbox.take_pending(session, CHANNEL, sender.chat_id)
    return [
        Reply(
            text=str(item.get("text") or ""),
            buttons=tuple(
                (Button(str(b["title"]), str(b["payload"])),) for b in item.get("buttons") or []
            ),
        )
        for item in pending
    ]


async def chat(
    service: IntakeService,
    *,
    user: str | None = None,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    language: str = "zh",
) -> None:
    user = user or getpass.getuser()
    sender = Sender(CHANNEL, f"console-{user}", user)
    stdout.write(t("console.intro", language) + "\n")
    stdout.flush()
    numbered: dict[str, str] = {}
    while True:
        line = await asyncio.to_thread(stdin.readline)
        if not line:
            break
        line = line.rstrip("\n")
        if line.strip() in ("/quit", "/exit"):
            break
        event: Event = (
            ButtonEvent(numbered[line.strip()]) if line.strip() in numbered else text_to_event(line)
        )
        replies = await service.handle(sender, event)
        # What a mediator (or the desk) sent since: the console's outbox, shown first.
        replies = await waiting_messages(service, sender) + replies
        text, numbered = render(replies, language)
        stdout.write(text + "\n")
        stdout.flush()
