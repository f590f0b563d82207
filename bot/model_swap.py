"""Hot swap of the built-in NLU model: every process follows the registry's active row.

:class:`SwappableNLU` is an :class:`~nlu.interface.NLUBackend` holding one engine
reference. A background task reads the active version from ``nlu_models`` every
``TIAOJIE_MODEL_POLL_SECONDS`` (≤ 5 s); when it changed, the new model is loaded and
warmed in a worker thread (``asyncio.to_thread``), then the reference is replaced in
one assignment. A parse running during the swap finishes on the engine it started
with, and the next one uses the new model: no parse fails or waits. A model that cannot
be loaded is logged and skipped (the old one keeps serving) until the registry changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from actions.metrics import set_model_version
from actions.retraining import ensure_registered
from nlu.engine import DEFAULT_CONFIG, BuiltinEngine, load_engine
from nlu.interface import ParseResult
from nlu.model_store import ModelError
from storage.db import create_engine, session_factory
from storage.nlu_registry import active_version

log = logging.getLogger(__name__)


def _load_warm(path: Path, config: Path) -> BuiltinEngine:
    engine = load_engine(path, config)
    engine.parse_sync("你好,我想咨询一下")
    return engine


class SwappableNLU:
    """The built-in engine behind a reference the registry can swap."""

    def __init__(
        self,
        engine: BuiltinEngine,
        database_url: str,
        *,
        poll_seconds: float = 2.0,
        config_path: Path = DEFAULT_CONFIG,
    ) -> None:
        self._engine = engine
        self.version: str | None = str(engine.manifest.get("name") or "") or None
        self.swapped_at: float | None = None
        self.last_error: str | None = None
        self._failed: str | None = None
        self._poll_seconds = poll_seconds
        self._config_path = config_path
        # One connection is plenty for one small query every few seconds.
        self._db = create_engine(database_url, pool_size=1, max_overflow=0)
        self._sessions = session_factory(self._db)
        self._task: asyncio.Task[None] | None = None

    @property
    def engine(self) -> BuiltinEngine:
        return self._engine

    async def parse(self, text: str) -> ParseResult:
        return self._engine.parse_sync(text)

    async def health(self) -> dict[str, object]:
        body: dict[str, Any] = dict(await self._engine.health())
        body["version"] = self.version
        body["swappable"] = True
        if self.last_error:
            body["swap_error"] = self.last_error
        return body

    async def start(self) -> None:
        """Register the loaded model when the registry has none, follow the active one
        once now, then keep polling in the background."""
        try:
            async with self._sessions.begin() as session:
                await ensure_registered(session, self._engine)
        except SQLAlchemyError as error:  # another process registered it first
            log.info("model registry bootstrap skipped: %s", type(error).__name__)
        await self.poll_once()
        self._task = asyncio.create_task(self._poll_forever(), name="nlu-model-poll")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._db.dispose()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            await self.poll_once()

    async def poll_once(self) -> bool:
        """Switch to the registry's active model if it changed; True when swapped."""
        try:
            async with self._sessions() as session:
                active = await active_version(session)
        except (SQLAlchemyError, OSError) as error:
            self.last_error = f"registry unreachable: {type(error).__name__}"
            log.warning("model registry poll failed: %s", type(error).__name__)
            return False
        if active is None or active[0] == self.version or active[0] == self._failed:
            return False
        version, path = active
        try:
            engine = await asyncio.to_thread(_load_warm, Path(path), self._config_path)
        except (ModelError, OSError, ValueError) as error:
            self._failed = version
            self.last_error = f"{version}: {error}"
            log.error("cannot load NLU model %s: %s", version, error)
            return False
        self._engine = engine  # one reference assignment: the swap
        self.version = version
        self.swapped_at = time.time()
        self.last_error = None
        set_model_version("builtin", version)  # /metrics shows the swap at once (issue 16)
        log.info("NLU model now %s", version)
        return True
