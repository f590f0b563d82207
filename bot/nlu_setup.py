"""Open the configured NLU backend for the running assistant.

The built-in engine is loaded from ``models/``; when there is no model yet, or the
newest one was trained on other training data than the files in ``nlu/data`` now, it
is trained first (a few seconds), so ``make run`` on a fresh clone and a run after an
administrator edited the data both just work. With ``TIAOJIE_NLU_BACKEND=rasa`` the
Rasa server is asked first and the built-in engine is its fallback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.model_swap import SwappableNLU
from bot.settings import Settings
from nlu.engine import DEFAULT_CONFIG, DEFAULT_DATA, BuiltinEngine, load_engine, train
from nlu.interface import NLUBackend
from nlu.model_store import ModelError
from nlu.training_data import read_training_data

log = logging.getLogger(__name__)


def ensure_builtin(
    model_dir: Path, data_dir: Path = DEFAULT_DATA, config: Path = DEFAULT_CONFIG
) -> BuiltinEngine:
    """The newest model for the current data and config, trained now if needed."""
    current = read_training_data([data_dir]).fingerprint()
    try:
        engine = load_engine(model_dir, config)
        if engine.manifest.get("training_data_sha256") == current:
            return _warm(engine)
        log.info("training data changed since the newest model; retraining")
    except ModelError as error:
        log.info("no usable NLU model (%s); training one", error)
    folder = train([data_dir], config, model_dir)
    return _warm(load_engine(folder, config))


def _warm(engine: BuiltinEngine) -> BuiltinEngine:
    """Parse once now: jieba loads its dictionary on first use (~0.6 s), and that wait
    belongs to start-up, not to the first resident who writes."""
    engine.parse_sync("你好,我想咨询一下")
    return engine


@asynccontextmanager
async def open_nlu(settings: Settings) -> AsyncIterator[tuple[NLUBackend, float]]:
    """The backend to parse with and the fallback threshold the dialogue uses."""
    builtin = ensure_builtin(settings.model_dir)
    threshold = builtin.config.threshold
    if settings.nlu_backend != "rasa":
        # Learning loop: follow the model registry's active model (hot swap).
        swappable = SwappableNLU(
            builtin, settings.database_url, poll_seconds=settings.model_poll_seconds
        )
        await swappable.start()
        try:
            yield swappable, threshold
        finally:
            await swappable.close()
        return
    from nlu.rasa_backend import RasaBackend

    async with RasaBackend(
        settings.rasa_url, builtin, builtin.risk_rules.check, timeout=settings.rasa_timeout
    ) as rasa:
        yield rasa, threshold
