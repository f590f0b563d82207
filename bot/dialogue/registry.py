"""Which object answers at which step: the conversation's state graph in one table.

Like python-telegram-bot's ``ConversationHandler(states={...})``, each step is one
object that both handles the resident's input at that step and asks its question.
The step modules register themselves here with :func:`step`; importing
:mod:`bot.dialogue.steps` fills the table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from bot.dialogue.state import Step

if TYPE_CHECKING:
    from bot.dialogue.model import Event
    from bot.dialogue.turn import Turn


class StepHandler(Protocol):
    """One step of the conversation: its input handler and its question."""

    def handle(self, turn: Turn, event: Event) -> None:
        """Take the resident's answer (text, button, location, contact …)."""

    def ask(self, turn: Turn) -> None:
        """Ask (again) the question of this step."""


STEPS: dict[Step, StepHandler] = {}

H = TypeVar("H", bound=type)


def step(*names: Step) -> Callable[[H], H]:
    """Class decorator: an instance of the class answers at each of ``names``."""

    def register(cls: H) -> H:
        instance = cls()
        for name in names:
            if name in STEPS:
                raise RuntimeError(f"step {name} registered twice")
            STEPS[name] = instance
        return cls

    return register
