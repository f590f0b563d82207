"""Retraining behind the evaluation gate, and activating models in the registry.

Training never runs in a bot process: :func:`start_training` registers a row (status
``training``) and starts ``python -m bot nlu train --include-reviewed --job VERSION`` as
a child process, which calls :func:`run_training_job`: export the labelled training
slice, train on it plus ``nlu/data``, compare the result with the active model through
:mod:`nlu.gate`, and leave the row ``candidate`` (with metrics and the comparison) or
``failed`` (with the error). A page polls :func:`training_status`.

:func:`activate` refuses a candidate whose gate failed unless an administrator gives a
written reason (kept on the row and in its history); :func:`rollback` re-activates the
model that was active before. Every process switches within seconds
(:mod:`bot.model_swap`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from actions.learning import LearningError, holdout_examples, training_examples, write_rasa_file
from actions.learning import rasa_yaml as to_rasa_yaml
from nlu.engine import BuiltinEngine, load_engine, train
from nlu.gate import DataSet, compare, failed_rules
from nlu.training_data import Example, read_training_data
from storage.db import create_engine, session_factory
from storage.nlu_registry import (
    ModelStatus,
    NluModel,
    active_model,
    get_model,
    previous_active,
    register,
    set_active,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "nlu" / "data"
DEFAULT_CONFIG = ROOT / "config.yml"
DEFAULT_HELD_OUT = (ROOT / "tests" / "data" / "nlu_test.yml",)
#: Training stages as the engine reports them, with the share of the work done after each.
STAGES = {
    "data": 0.1,
    "words": 0.3,
    "chars": 0.5,
    "calibration": 0.7,
    "classifier": 0.8,
    "saved": 0.85,
    "gate": 0.95,
}
MIN_REASON_CHARS = 10


def new_version() -> str:
    """A model version: sortable by time, unique, and the model folder's name."""
    return f"nlu-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class TrainingJob:
    version: str
    process: subprocess.Popen[bytes]


async def start_training(
    session: AsyncSession,
    *,
    database_url: str,
    by: str,
    models_dir: Path,
    cwd: Path = ROOT,
) -> TrainingJob:
    """Register a ``training`` row and start the training process; returns at once.

    The caller commits ``session`` (the child process waits for the row to appear).
    """
    version = new_version()
    await register(session, version, trained_by=by, status=ModelStatus.TRAINING)
    await session.flush()
    env = {**os.environ, "TIAOJIE_DATABASE_URL": database_url, "TIAOJIE_MODEL_DIR": str(models_dir)}
    # Lower priority than the bot's own processes, so parsing never waits for training.
    nice = [found, "-n", "10"] if (found := shutil.which("nice")) else []
    process = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; the job is detached
        [
            *nice,
            sys.executable,
            "-m",
            "bot",
            "nlu",
            "train",
            "--include-reviewed",
            "--job",
            version,
            "--by",
            by,
            "--models",
            str(models_dir),
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Reap the child when it ends (no zombie), without anyone awaiting it.
    threading.Thread(target=process.wait, name=f"reap-{version}", daemon=True).start()
    return TrainingJob(version, process)


async def training_status(session: AsyncSession, version: str) -> dict[str, Any] | None:
    """What a page polls: status, progress 0..1, stage, error, gate verdict."""
    row = await get_model(session, version)
    return describe(row) if row else None


def describe(row: NluModel) -> dict[str, Any]:
    return {
        "version": row.version,
        "status": str(row.status),
        "progress": row.progress,
        "stage": row.stage,
        "error": row.error,
        "path": row.path,
        "trained_by": row.trained_by,
        "trained_at": row.trained_at.isoformat() if row.trained_at else None,
        "activated_by": row.activated_by,
        "activated_at": row.activated_at.isoformat() if row.activated_at else None,
        "override_reason": row.override_reason,
        "gate_passed": row.gate.get("passed") if row.gate else None,
        "fell": row.gate.get("fell", []) if row.gate else [],
        "gate_reasons": failed_rules(row.gate) if row.gate else [],
        "metrics": {k: v for k, v in row.metrics.items() if not isinstance(v, dict)},
        "history": row.history,
    }


def _examples(pairs: Sequence[tuple[str, str]]) -> list[Example]:
    return [Example(text, intent) for text, intent in pairs]


def gate_datasets(
    held_out_files: Sequence[Path], holdout: Sequence[tuple[str, str]]
) -> list[DataSet]:
    datasets = [
        DataSet(path.name, read_training_data([path]).examples)
        for path in held_out_files
        if path.exists()
    ]
    datasets.append(DataSet("holdout_slice", _examples(holdout)))
    return datasets


def evaluate_gate(
    active: BuiltinEngine | None, candidate: BuiltinEngine, datasets: Sequence[DataSet]
) -> dict[str, Any]:
    """The gate's comparison; with no active model there is nothing to fall from."""
    if active is None:
        result = compare(candidate.parse_sync, candidate.parse_sync, datasets)
        result["note"] = "no active model to compare with"
        return result
    return compare(active.parse_sync, candidate.parse_sync, datasets)


async def run_training_job(
    database_url: str,
    version: str | None,
    *,
    by: str,
    models_dir: Path,
    data_paths: Sequence[Path] = (DEFAULT_DATA,),
    config: Path = DEFAULT_CONFIG,
    held_out_files: Sequence[Path] = DEFAULT_HELD_OUT,
    include_reviewed: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train, gate and register one candidate (runs in the training process).

    Returns :func:`describe` of the row. Errors leave the row ``failed`` with the reason
    and are raised again.
    """
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    stage = {"name": "data"}
    try:
        if version:
            await _wait_for_row(sessions, version)
        async with sessions.begin() as session:
            row = await get_model(session, version) if version else None
            if row is None:
                row = await register(session, version or new_version(), trained_by=by)
            version = row.version
            reviewed = await training_examples(session) if include_reviewed else []
            holdout = await holdout_examples(session) if include_reviewed else []
            current = await active_model(session)
            active_path = current.path if current else None
        try:
            with tempfile.TemporaryDirectory(prefix="tiaojie-reviewed-") as extra:
                paths = list(data_paths)
                if reviewed:
                    write_rasa_file(Path(extra), to_rasa_yaml(reviewed))
                    paths.append(Path(extra))

                def step(name: str) -> None:
                    stage["name"] = name
                    if progress:
                        progress(name)

                reporter = asyncio.create_task(_report_progress(sessions, version, stage))
                started = time.perf_counter()
                try:
                    folder = await asyncio.to_thread(train, paths, config, models_dir, step)
                finally:
                    reporter.cancel()
                seconds = time.perf_counter() - started
                data = await asyncio.to_thread(read_training_data, paths)
            target = models_dir / version
            if folder != target:
                shutil.move(str(folder), target)
            step("gate")
            await _set_stage(sessions, version, "gate")
            candidate = await asyncio.to_thread(load_engine, target, config)
            active = await asyncio.to_thread(_load_or_none, active_path, config)
            datasets = await asyncio.to_thread(gate_datasets, list(held_out_files), holdout)
            gate = await asyncio.to_thread(evaluate_gate, active, candidate, datasets)
        except Exception as error:
            async with sessions.begin() as session:
                failed = await get_model(session, version)
                if failed is not None:
                    failed.status = ModelStatus.FAILED
                    failed.error = f"{type(error).__name__}: {error}"[:2000]
            raise
        async with sessions.begin() as session:
            done = await get_model(session, version)
            assert done is not None
            done.path = str(target)
            done.data_fingerprint = data.fingerprint()
            done.metrics = {
                **candidate.manifest.get("metrics", {}),
                "train_seconds_total": round(seconds, 3),
                "reviewed_examples": len(reviewed),
                "holdout_examples": len(holdout),
            }
            done.gate = gate
            done.status = ModelStatus.CANDIDATE
            done.progress = 1.0
            done.stage = "done"
            return describe(done)
    finally:
        await engine.dispose()


async def _wait_for_row(sessions: Any, version: str, within: float = 30.0) -> None:
    """The parent commits the ``training`` row right after starting this process; wait
    for it rather than racing it with a row of our own."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with sessions() as session:
            if await get_model(session, version) is not None:
                return
        await asyncio.sleep(0.2)


def _load_or_none(path: str | None, config: Path) -> BuiltinEngine | None:
    if not path or not Path(path).exists():
        return None
    return load_engine(Path(path), config)


async def _set_stage(sessions: Any, version: str, name: str) -> None:
    async with sessions.begin() as session:
        row = await get_model(session, version)
        if row is not None:
            row.stage = name
            row.progress = STAGES.get(name, row.progress)


async def _report_progress(sessions: Any, version: str, stage: dict[str, str]) -> None:
    """Write the training stage to the registry twice a second while training runs."""
    shown = None
    while True:
        if stage["name"] != shown:
            shown = stage["name"]
            await _set_stage(sessions, version, shown)
        await asyncio.sleep(0.5)


async def activate(
    session: AsyncSession, version: str, *, by: str, override_reason: str | None = None
) -> NluModel:
    """Make ``version`` the active model if its gate passed, or with a written reason."""
    row = await get_model(session, version)
    if row is None:
        raise LearningError("review.model_not_found", version=version)
    if row.status in (ModelStatus.TRAINING, ModelStatus.FAILED) or not row.path:
        raise LearningError("review.model_not_ready", version=version, status=str(row.status))
    if row.status == ModelStatus.ACTIVE:
        return row
    reason = (override_reason or "").strip() or None
    passed = bool(row.gate.get("passed")) if row.gate else False
    if not passed and (reason is None or len(reason) < MIN_REASON_CHARS):
        raise LearningError(
            "review.gate_failed",
            version=version,
            reasons="; ".join(failed_rules(row.gate)) or "no gate result",
            min_chars=MIN_REASON_CHARS,
        )
    await set_active(
        session,
        row,
        by=by,
        reason=reason,
        action="override" if not passed else "activate",
    )
    return row


async def rollback(session: AsyncSession, *, by: str) -> NluModel:
    """Re-activate the model that was active before the current one."""
    current = await active_model(session)
    if current is None:
        raise LearningError("review.no_active_model")
    previous = await previous_active(session, current)
    if previous is None:
        raise LearningError("review.nothing_to_roll_back")
    await set_active(session, previous, by=by, action="rollback")
    return previous


async def ensure_registered(
    session: AsyncSession, engine: BuiltinEngine, *, by: str = "startup"
) -> NluModel:
    """The active registry row; the model this process loaded becomes it when none is."""
    current = await active_model(session)
    if current is not None:
        return current
    name = str(engine.manifest.get("name") or new_version())
    row = await get_model(session, name)
    if row is None:
        row = await register(
            session,
            name,
            trained_by=by,
            status=ModelStatus.CANDIDATE,
            path=str(engine.path or ""),
            data_fingerprint=engine.manifest.get("training_data_sha256"),
            metrics=dict(engine.manifest.get("metrics") or {}),
        )
        row.gate = {"passed": True, "note": "first model of this installation"}
    await set_active(session, row, by=by, action="bootstrap")
    return row
