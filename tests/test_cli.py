"""The ``tiaojie`` command line, run as a real process the way an administrator would."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from storage import cases
from storage.db import create_engine, session_factory
from storage.directory import first_department_for, get_centre
from tests.conftest import CENTRES_FILE, ROOT

TIAOJIE = [sys.executable, "-m", "bot"]


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TIAOJIE, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def cli_env(tmp_path: Path, nlu_model_dir: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_", "RASA_"))
    }
    env["TIAOJIE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    env["TIAOJIE_DATA_DIR"] = str(tmp_path / "var")
    env["TIAOJIE_LANGUAGE"] = "en"
    env["TIAOJIE_MODEL_DIR"] = str(nlu_model_dir)
    env["COLUMNS"] = "200"
    return env


def test_help_on_every_command() -> None:
    """Every command and sub-command answers --help (in-process: twenty interpreter
    start-ups would test Python's start-up time, not our commands)."""
    from typer.main import get_command
    from typer.testing import CliRunner

    from bot.cli import app

    runner = CliRunner()
    root = get_command(app)
    assert root.name is not None
    commands = [
        [],
        ["db"],
        ["db", "upgrade"],
        ["centers"],
        ["centers", "load"],
        ["mediator"],
        ["mediator", "add"],
        ["mediator", "list"],
        ["mediator", "deactivate"],
        ["case"],
        ["case", "list"],
        ["case", "show"],
        ["run"],
        ["chat"],
        ["report"],
        ["nlu"],
        ["nlu", "train"],
        ["nlu", "test"],
        ["nlu", "parse"],
        ["nlu", "shell"],
        ["retention"],
        ["retention", "run"],
        ["resident"],
        ["resident", "export"],
        ["resident", "forget"],
        ["keys"],
        ["keys", "rotate"],
        ["case", "audit"],
        ["wechat"],
        ["wechat", "menu"],
        ["review"],
        *[["review", sub] for sub in ("list", "label", "skip", "not-real", "bulk-label")],
        ["review", "import"],
        ["review", "export"],
        ["nlu", "activate"],
        ["nlu", "rollback"],
        ["nlu", "models"],
        ["user"],
        ["user", "add"],
        ["user", "list"],
        ["user", "disable"],
        ["user", "reset-password"],
    ]
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output
    # And every registered group is covered (a new command without --help fails here).
    groups = {
        name
        for name, sub in root.commands.items()  # type: ignore[attr-defined]
        if hasattr(sub, "commands") and not sub.hidden
    }
    assert groups <= {c[0] for c in commands if c}, groups


@pytest.mark.timeout(300)
def test_admin_session(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert run_cli("db", "upgrade", env=cli_env).returncode == 0
    again = run_cli("db", "upgrade", env=cli_env)
    assert again.returncode == 0 and "latest revision" in again.stdout
    loaded = run_cli("centers", "load", str(CENTRES_FILE), env=cli_env)
    assert loaded.returncode == 0 and "55 created" in loaded.stdout
    reloaded = run_cli("centers", "load", str(CENTRES_FILE), env=cli_env)
    assert "0 created, 55 updated" in reloaded.stdout

    added = run_cli(
        "mediator",
        "add",
        "--id",
        "4242",
        "--alias",
        "Mediator Li",
        "--centre",
        "fuyong",
        env=cli_env,
    )
    assert added.returncode == 0, added.stderr
    listing = run_cli("mediator", "list", env=cli_env)
    assert "Mediator Li" in listing.stdout and "fuyong" in listing.stdout
    assert run_cli("mediator", "deactivate", "4242", env=cli_env).returncode == 0
    assert "no" in run_cli("mediator", "list", env=cli_env).stdout.splitlines()[-2]
    unknown = run_cli("mediator", "deactivate", "999", env=cli_env)
    assert unknown.returncode == 1 and "No such mediator" in unknown.stderr
    bad_centre = run_cli(
        "mediator", "add", "--id", "1", "--alias", "x", "--centre", "mars", env=cli_env
    )
    assert bad_centre.returncode == 1 and "mars" in bad_centre.stderr

    url = cli_env["TIAOJIE_DATABASE_URL"].replace("sqlite:", "sqlite+aiosqlite:")

    async def file_one() -> str:
        engine = create_engine(url)
        try:
            async with session_factory(engine).begin() as session:
                centre = await get_centre(session, "fuyong")
                case = await cases.file_case(
                    session,
                    category="dispute_gig_work",
                    resident_words="美团扣了我3000块",
                    channel="rest",
                    centre_id=centre.id,
                    department=await first_department_for(session, "dispute_gig_work"),
                    phone_masked="138****5678",
                )
                return case.reference
        finally:
            await engine.dispose()

    reference = asyncio.run(file_one())
    listed = run_cli("case", "list", "--centre", "fuyong", env=cli_env)
    assert reference in listed.stdout and "dispute_gig_work" in listed.stdout
    assert "No cases" in run_cli("case", "list", "--status", "resolved", env=cli_env).stdout
    shown = run_cli("case", "show", reference, env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert "美团扣了我3000块" in shown.stdout and "138****5678" in shown.stdout
    assert (
        "view" in run_cli("case", "show", reference, env=cli_env).stdout
    )  # audit of the first look
    missing = run_cli("case", "show", "BA-20000101-0001", env=cli_env)
    assert missing.returncode == 1 and "No case with reference" in missing.stderr

    table = run_cli("report", env=cli_env)
    assert table.returncode == 0 and "fuyong" in table.stdout and "Closure rate" in table.stdout
    csv_out = run_cli("report", "--format", "csv", env=cli_env)
    rows = list(csv.reader(io.StringIO(csv_out.stdout)))
    assert rows[0][:3] == ["centre", "category", "filed"]
    assert rows[1][:6] == ["fuyong", "dispute_gig_work", "1", "0", "0", "0.0"]
    wrong = run_cli("report", "--format", "xls", env=cli_env)
    assert wrong.returncode == 2 and "xls" in wrong.stderr


def test_unreachable_database_is_one_clear_line(cli_env: dict[str, str]) -> None:
    cli_env["TIAOJIE_DATABASE_URL"] = "postgresql://postgres:hunter2@127.0.0.1:1/nowhere"
    result = run_cli("db", "upgrade", env=cli_env)
    assert result.returncode == 1
    assert "Cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TIAOJIE_HTTP_PORT", "eighty", "TIAOJIE_HTTP_PORT"),
        ("TIAOJIE_HTTP_PORT", "70000", "TIAOJIE_HTTP_PORT"),
        ("TIAOJIE_NLU_BACKEND", "gpt", "TIAOJIE_NLU_BACKEND"),
        ("TIAOJIE_DATABASE_URL", "mysql://root:pw@db/x", "TIAOJIE_DATABASE_URL"),
        ("TELEGRAM_BOT_TOKEN", "not-a-token", "TELEGRAM_BOT_TOKEN"),
        ("TELEGRAM_WEBHOOK_URL", "https://example.org/hook", "TELEGRAM_WEBHOOK_SECRET"),
    ],
)
def test_broken_config_is_one_clear_line(cli_env, variable: str, value: str, expected: str) -> None:
    cli_env[variable] = value
    result = run_cli("db", "upgrade", env=cli_env)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr and ":pw@" not in result.stderr


def test_malformed_centre_file_exits_naming_line(cli_env, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "centres:\n  - code: baoan\n    level: nowhere\n    name_zh: a\n    name_en: b\n"
    )
    result = run_cli("centers", "load", str(bad), env=cli_env)
    assert result.returncode == 2 and "bad.yml:2" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_run_serves_healthz(cli_env: dict[str, str]) -> None:
    assert run_cli("db", "upgrade", env=cli_env).returncode == 0
    # Without centres /healthz is 503 (cases would be filed to nobody).
    centres = str(ROOT / "storage" / "data" / "baoan_centres.yml")
    assert run_cli("centers", "load", centres, env=cli_env).returncode == 0
    port = _free_port()
    cli_env["TIAOJIE_HTTP_PORT"] = str(port)
    process = await asyncio.create_subprocess_exec(
        *TIAOJIE,
        "run",
        env=cli_env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        body = None
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline and body is None:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        assert response.status == 200
                        body = await response.json()
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.2)
        assert body is not None, "tiaojie run never answered /healthz"
        assert body["status"] == "ok" and body["database"]["status"] == "ok"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=20)


async def test_run_with_unreachable_bot_api_is_one_clear_line(cli_env: dict[str, str]) -> None:
    assert run_cli("db", "upgrade", env=cli_env).returncode == 0
    cli_env["TIAOJIE_HTTP_PORT"] = str(_free_port())
    cli_env["TELEGRAM_BOT_TOKEN"] = "123456:TEST-TOKEN"
    cli_env["TELEGRAM_BASE_URL"] = f"http://127.0.0.1:{_free_port()}/bot"  # nobody there
    process = await asyncio.create_subprocess_exec(
        *TIAOJIE,
        "run",
        env=cli_env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 2
    text = stderr.decode()
    assert "Cannot start Telegram" in text and "Traceback" not in text
