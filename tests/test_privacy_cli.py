"""Staff commands for residents' data, run as real processes (SQLite file)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

from bot.runtime import Store
from storage import cases as case_repo
from storage.db import create_engine, session_factory
from storage.directory import load_directory, parse_directory
from storage.migrate import upgrade
from storage.phone import PhoneVault
from tests.conftest import CENTRES_FILE
from tests.test_cli import run_cli
from tests.test_privacy import PHONE, worked_case


def _prepare(tmp_path: Path) -> tuple[dict[str, str], str]:
    import os

    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)

    async def fill() -> str:
        engine = create_engine(url)
        store = Store(engine=engine, sessions=session_factory(engine), vault=PhoneVault("k1"))
        async with store.sessions.begin() as session:
            await load_directory(session, parse_directory(CENTRES_FILE))
        reference, _ = await worked_case(store, "901", close=True)
        await engine.dispose()
        return reference

    reference = asyncio.run(fill())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_"))}
    env.update(
        TIAOJIE_DATABASE_URL=url,
        TIAOJIE_DATA_DIR=str(tmp_path / "var"),
        TIAOJIE_LANGUAGE="en",
        TIAOJIE_SECRET_KEY="k2,k1",
        COLUMNS="200",
    )
    return env, reference


def test_export_audit_forget_retention_and_keys_from_the_command_line(tmp_path: Path) -> None:
    env, reference = _prepare(tmp_path)
    out = tmp_path / "out"
    done = run_cli(
        "resident", "export", "--channel", "telegram", "--id", "901", "--out", str(out), env=env
    )
    assert done.returncode == 0, done.stderr
    exported = json.loads((out / "tiaojie-telegram-901.json").read_text(encoding="utf-8"))
    assert exported["cases"][0]["reference"] == reference
    assert PHONE not in (out / "tiaojie-telegram-901.txt").read_text(encoding="utf-8")

    rotated = run_cli("keys", "rotate", env=env)
    # Two phones (case, resident), and the story's words and summary sealed beside them.
    assert rotated.returncode == 0 and "4 value(s) re-encrypted" in rotated.stdout

    forgot = run_cli("resident", "forget", "--channel", "telegram", "--id", "901", "--yes", env=env)
    assert forgot.returncode == 0, forgot.stderr
    assert "1 case(s) anonymised" in forgot.stdout

    audit = run_cli("case", "audit", reference, "--format", "csv", env=env)
    assert audit.returncode == 0, audit.stderr
    rows = list(csv.reader(io.StringIO(audit.stdout)))
    assert rows[0] == ["Time", "Who", "What", "Details"]
    kinds = [row[2] for row in rows[1:]]
    assert "claim" in kinds and "data_exported" in kinds and kinds[-1] == "data_erased"
    erased = rows[-1]
    assert erased[1].startswith("admin:cli:") and "reason=resident_request" in erased[3]
    assert "王五" not in audit.stdout

    dry = run_cli("retention", "run", "--dry-run", env=env)
    assert dry.returncode == 0 and "Dry run" in dry.stdout

    missing = run_cli("resident", "forget", "--channel", "telegram", "--id", "nobody", env=env)
    assert missing.returncode == 1 and "Nothing is held" in missing.stderr

    async def check() -> None:
        engine = create_engine(env["TIAOJIE_DATABASE_URL"])
        async with session_factory(engine)() as session:
            case = await case_repo.get_case(session, reference)
            assert case.resident_words == "" and case.phone_encrypted is None
        await engine.dispose()

    asyncio.run(check())
