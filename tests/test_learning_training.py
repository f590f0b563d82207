"""Retraining in a separate process: a registry row to poll, a gated candidate."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path

from actions import learning
from actions.retraining import activate, start_training, training_status
from storage.db import create_engine, session_factory
from storage.nlu_registry import ModelStatus, get_model

ROWS = [
    ("站长说我超时就扣了两百块钱,申诉也没用", "dispute_gig_work"),
    ("骑手被平台罚款五百,说我差评太多", "dispute_gig_work"),
    ("楼下烧烤店油烟大到没法开窗", "dispute_environment"),
    ("二房东转租给我的房子,现在原房东要收回", "dispute_tenancy"),
] * 8


async def test_background_training_registers_a_gated_candidate(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    try:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["text", "label"])
        writer.writerows((f"{words}{i}", label) for i, (words, label) in enumerate(ROWS))
        source = buffer.getvalue()
        async with sessions.begin() as session:
            report = await learning.import_labelled(session, source, by="admin")
            assert report.imported == len(ROWS)
            training_slice = len(await learning.training_examples(session))
            job = await start_training(
                session, database_url=sqlite_url, by="admin:li", models_dir=tmp_path / "models"
            )
        seen: set[str] = set()
        started = time.monotonic()
        while True:
            async with sessions() as session:
                status = await training_status(session, job.version)
            assert status is not None
            seen.add(status["status"])
            if status["status"] in ("candidate", "failed"):
                break
            assert time.monotonic() - started < 300, status
            await asyncio.sleep(0.3)
        assert status["status"] == "candidate", status["error"]
        assert "training" in seen
        assert status["progress"] == 1.0 and status["trained_by"] == "admin:li"
        assert status["metrics"]["reviewed_examples"] == training_slice
        assert Path(status["path"]).name == job.version
        assert await asyncio.to_thread((Path(status["path"]) / "manifest.json").is_file)
        async with sessions() as session:
            row = await get_model(session, job.version)
            assert row is not None
            names = [d["name"] for d in row.gate["datasets"]]
            assert names == ["nlu_test.yml", "holdout_slice"]
        # No model was active: nothing to fall from, so the gate passes and it activates.
        assert status["gate_passed"] is True
        async with sessions.begin() as session:
            await activate(session, job.version, by="admin:li")
        async with sessions() as session:
            row = await get_model(session, job.version)
            assert row is not None and row.status == ModelStatus.ACTIVE
        await asyncio.to_thread(job.process.wait, 30)
        assert job.process.returncode == 0
    finally:
        await engine.dispose()
