"""The desk's findings at the command line, run as real processes (issue 10's findings
0, 3, 14, 16, 20 and 21): an empty directory at ``run``, kind titles in ``case show``,
deactivation releasing cases (residents told through the stand-in Bot API), the loader's
warning about centres nobody hears, times in ``TIAOJIE_TIMEZONE``, whole references in
an 80-column ``case list``."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from actions import casework
from actions.intake import file_case
from bot.dialogue.forms import default_forms
from bot.runtime import Store
from storage import cases as case_repo
from storage.db import create_engine, session_factory
from storage.directory import all_centres, parse_directory
from storage.models import CaseStatus, MediatorRole
from storage.people import add_mediator, get_or_create_resident
from storage.phone import PhoneVault
from tests.conftest import CENTRES_FILE, ROOT
from tests.support.bot_api import BotApiStandIn
from tests.test_cli import TIAOJIE, cli_env, run_cli  # noqa: F401  (fixture)

RESIDENT = 7301


def aio_url(env: dict[str, str]) -> str:
    return env["TIAOJIE_DATABASE_URL"].replace("sqlite:", "sqlite+aiosqlite:")


def open_store(env: dict[str, str]) -> Store:
    engine = create_engine(aio_url(env))
    return Store(engine=engine, sessions=session_factory(engine), vault=PhoneVault("cli-secret"))


async def filed(env: dict[str, str], count: int = 1, risk: str = "normal") -> list[str]:
    store = open_store(env)
    references = []
    try:
        for n in range(count):
            async with store.sessions.begin() as session:
                resident = await get_or_create_resident(session, "telegram", str(RESIDENT + n))
                result = await file_case(
                    session,
                    {
                        "words": ["老板拖欠三个月工资"],
                        "category": "dispute_labor",
                        "slots": {"issue": "wages"},
                        "street": "fuyong",
                        "community": "凤凰",
                        "phone": "13812345678",
                        "consent": True,
                        "risk": risk,
                    },
                    resident=resident,
                    channel="telegram",
                    chat_id=str(RESIDENT + n),
                    language="zh",
                    vault=store.vault,
                    reason="submit",
                )
                references.append(result.reference)
    finally:
        await store.engine.dispose()
    return references


@pytest.fixture
def loaded(cli_env: dict[str, str]) -> dict[str, str]:  # noqa: F811
    assert run_cli("db", "upgrade", env=cli_env).returncode == 0
    assert run_cli("centers", "load", str(CENTRES_FILE), env=cli_env).returncode == 0
    return cli_env


# ------------------------------------------------------------------ finding 3


def test_case_show_names_kinds_never_keys(loaded: dict[str, str]) -> None:
    [reference] = asyncio.run(filed(loaded))
    for language in ("en", "zh"):
        loaded["TIAOJIE_LANGUAGE"] = language
        shown = run_cli("case", "show", reference, env=loaded)
        assert shown.returncode == 0, shown.stderr
        title = default_forms().by_category["dispute_labor"].title.get(language)
        assert title in shown.stdout
        assert "categories." not in shown.stdout and "desk.kinds" not in shown.stdout
        assert "13812345678" not in shown.stdout


# ---------------------------------------------------------------- findings 20, 21


def test_case_list_keeps_references_whole_at_80_columns(loaded: dict[str, str]) -> None:
    references = asyncio.run(filed(loaded, 3))
    loaded["COLUMNS"] = "80"
    for language in ("en", "zh"):
        loaded["TIAOJIE_LANGUAGE"] = language
        listed = run_cli("case", "list", env=loaded)
        assert listed.returncode == 0, listed.stderr
        for reference in references:
            assert reference in listed.stdout, listed.stdout
        assert max(len(line) for line in listed.stdout.splitlines()) <= 80


def test_case_list_and_show_in_the_configured_time_zone(loaded: dict[str, str]) -> None:
    [reference] = asyncio.run(filed(loaded))
    loaded["TIAOJIE_TIMEZONE"] = "America/New_York"

    async def created() -> object:
        store = open_store(loaded)
        try:
            async with store.sessions() as session:
                return (await case_repo.get_case(session, reference)).created_at
        finally:
            await store.engine.dispose()

    at = asyncio.run(created())
    new_york = at.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M")  # type: ignore[attr-defined]
    shanghai = at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")  # type: ignore[attr-defined]
    listed = run_cli("case", "list", env=loaded)
    assert new_york in listed.stdout and shanghai not in listed.stdout
    shown = run_cli("case", "show", reference, env=loaded)
    assert new_york in shown.stdout and shanghai not in shown.stdout


# ------------------------------------------------------------------ finding 14


async def test_mediator_deactivate_releases_cases_and_tells_residents(
    loaded: dict[str, str],
) -> None:
    normal, urgent = (await filed(loaded, 1))[0], (await filed(loaded, 1, "urgent"))[0]
    store = open_store(loaded)
    try:
        async with store.sessions.begin() as session:
            leaving = await add_mediator(
                session,
                channel="telegram",
                external_id="4301",
                display_alias="调解员甲",
                centre_code="fuyong-fenghuang",
            )
            await add_mediator(
                session,
                channel="telegram",
                external_id="4302",
                display_alias="主任",
                centre_code="fuyong",
                role=MediatorRole.SUPERVISOR,
            )
        for reference in (normal, urgent):
            async with store.sessions.begin() as session:
                await casework.claim(session, reference, leaving)
        async with BotApiStandIn() as api:
            for chat in (RESIDENT, 4301, 4302):
                api.add_chat(chat, "private")
            loaded["TELEGRAM_BOT_TOKEN"] = api.token
            loaded["TELEGRAM_BASE_URL"] = api.base_url
            process = await asyncio.create_subprocess_exec(
                *TIAOJIE,
                "mediator",
                "deactivate",
                "4301",
                env=loaded,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
            assert process.returncode == 0, stderr.decode()
            assert normal in stdout.decode() and urgent in stdout.decode()
            told = [c.params["text"] for c in api.calls_to("sendMessage", RESIDENT)]
            assert sum("回到待受理队列" in text for text in told) == 2, told
            assert any(urgent in c.params["text"] for c in api.calls_to("sendMessage", 4302))
        async with store.sessions() as session:
            for reference in (normal, urgent):
                case = await case_repo.get_case(session, reference)
                assert case.status == CaseStatus.NEW and case.mediator_id is None
    finally:
        await store.engine.dispose()


# ------------------------------------------------------------------ finding 16


def test_centres_load_warns_about_centres_nobody_hears(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    assert run_cli("db", "upgrade", env=cli_env).returncode == 0
    text = CENTRES_FILE.read_text(encoding="utf-8")
    # As shipped, no centre has a group: every one is unheard.
    shipped = run_cli("centers", "load", str(CENTRES_FILE), env=cli_env)
    assert shipped.returncode == 0
    total = len(parse_directory(CENTRES_FILE).centres)
    assert f"{total} centre(s) have no Telegram group" in shipped.stderr
    # With the district's group set, nobody is unheard; the rest go up the tree.
    heard = tmp_path / "heard.yml"
    heard.write_text(
        text.replace("telegram_chat_id: null", "telegram_chat_id: -1001000", 1), encoding="utf-8"
    )
    assert "code: baoan" in text.split("telegram_chat_id: null", 1)[0][-400:]
    loaded = run_cli("centers", "load", str(heard), env=cli_env)
    assert loaded.returncode == 0
    assert "nor has any centre above" not in loaded.stderr
    assert f"{total - 1} centre(s) have no Telegram group of their own" in loaded.stderr


# ------------------------------------------------------------------ finding 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_run_loads_the_configured_directory_when_empty(
    cli_env: dict[str, str],  # noqa: F811
) -> None:
    assert run_cli("db", "upgrade", env=cli_env).returncode == 0
    port = _free_port()
    cli_env["TIAOJIE_HTTP_PORT"] = str(port)
    cli_env["TIAOJIE_CENTRES_FILE"] = str(CENTRES_FILE)
    process = await asyncio.create_subprocess_exec(
        *TIAOJIE,
        "run",
        env=cli_env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        healthy = False
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline and not healthy:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        healthy = response.status == 200
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.2)
        assert healthy
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert "centre directory was empty" in stderr.decode()
    store = open_store(cli_env)
    try:
        async with store.sessions() as session:
            assert len(await all_centres(session)) == len(parse_directory(CENTRES_FILE).centres)
    finally:
        await store.engine.dispose()


@pytest.mark.parametrize("content", [None, "departments: []\ncentres: []\n"])
def test_run_refuses_an_empty_directory_without_a_file(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    content: str | None,
) -> None:
    assert run_cli("db", "upgrade", env=cli_env).returncode == 0
    path = tmp_path / "centres.yml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    cli_env["TIAOJIE_CENTRES_FILE"] = str(path)
    cli_env["TIAOJIE_HTTP_PORT"] = str(_free_port())
    result = run_cli("run", env=cli_env, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "centres.yml" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
