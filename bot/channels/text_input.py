"""Events from channels that only carry text (REST bridge, console).

Those channels send a pressed button back as its payload, the way Rasa's REST channel
does, so a payload, a ``/command`` and ordinary text must be told apart here.
"""

from __future__ import annotations

import re

from bot.dialogue.model import ButtonEvent, CommandEvent, Event, TextEvent

#: The payload grammar the engine's buttons use (see bot.dialogue.engine).
PAYLOAD = re.compile(
    r"^(yes|no|skip|submit(:no)?|(cat|street|comm|choice|edit|lang):\S{0,60}|rate:[A-Z0-9-]{1,32}:[1-5])$"
)
COMMAND = re.compile(r"^/([A-Za-z_]{1,32})(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)


def text_to_event(message: str) -> Event:
    stripped = message.strip()
    if PAYLOAD.match(stripped):
        return ButtonEvent(stripped)
    command = COMMAND.match(stripped)
    if command:
        return CommandEvent(command.group(1).lower(), (command.group(2) or "").strip())
    return TextEvent(message)
