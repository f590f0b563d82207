"""Metrics of the intake path: messages in and out per channel, step and parse times.

Two thin wrappers, so the intake service and the NLU backends stay free of timing code:

- :func:`measured` decorates :meth:`bot.intake_service.IntakeService.handle`: one
  resident event in, its replies out (``source="dialogue"``), the whole handling timed;
- :class:`MeteredNLU` wraps the NLU backend the app hands to the intake service, timing
  each parse where the bot calls it (``nlu/`` itself knows nothing of metrics).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from actions.metrics import (
    DIALOGUE_STEP_SECONDS,
    MESSAGES_IN,
    MESSAGES_OUT,
    NLU_PARSE_SECONDS,
)
from nlu.interface import NLUBackend, ParseResult

Handle = TypeVar("Handle", bound=Callable[..., Awaitable[Sequence[Any]]])


def measured(handle: Handle) -> Handle:
    """Count the event in, its replies out, and time the whole handling, per channel.

    The wrapped method's second argument is the :class:`~bot.intake_service.Sender`.
    """

    @functools.wraps(handle)
    async def wrapper(self: object, sender: Any, *args: Any, **kwargs: Any) -> Sequence[Any]:
        channel = str(getattr(sender, "channel", "unknown"))
        MESSAGES_IN.labels(channel).inc()
        started = time.perf_counter()
        try:
            replies = await handle(self, sender, *args, **kwargs)
        finally:
            DIALOGUE_STEP_SECONDS.labels(channel).observe(time.perf_counter() - started)
        if replies:
            MESSAGES_OUT.labels(channel, "dialogue").inc(len(replies))
        return replies

    return cast(Handle, wrapper)


class MeteredNLU:
    """An :class:`~nlu.interface.NLUBackend` that times every parse of the one it wraps.

    Everything else (``health``, ``version``, ``engine`` …) is the wrapped backend's.
    """

    def __init__(self, backend: NLUBackend) -> None:
        self.backend = backend

    async def parse(self, text: str) -> ParseResult:
        started = time.perf_counter()
        try:
            return await self.backend.parse(text)
        finally:
            NLU_PARSE_SECONDS.observe(time.perf_counter() - started)

    async def health(self) -> dict[str, object]:
        return await self.backend.health()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this wrapper lacks: the learning loop reads ``version``.
        return getattr(self.backend, name)
