"""``/healthz``: a real write probe, never stuck behind a lock, directory and channels."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from bot.runtime import Store
from bot.settings import load_settings
from bot.web import SCHEDULER, STORE, create_app
from nlu.interface import NLUBackend
from storage.db import create_engine, probe_database
from storage.migrate import upgrade

TOKEN = "t0ken-for-tests-0123456789"


@pytest.fixture
async def serve(nlu: NLUBackend, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[tuple[TestClient, Store]] = []

    async def make(url: str, **overrides: Any) -> TestClient:
        settings = load_settings(database_url=url, data_dir=tmp_path / "var", **overrides)
        store = Store.open(settings)
        client = TestClient(TestServer(create_app(settings, nlu, store=store)))
        await client.start_server()
        opened.append((client, store))
        return client

    yield make
    for client, store in opened:
        await client.close()
        await store.close()


async def test_healthy_store_reports_database_directory_and_channels(
    serve: Callable[..., Any], db_url: str
) -> None:
    http = await serve(db_url)
    response = await http.get("/healthz")
    body = await response.json()
    assert response.status == 200, body
    assert body["database"]["status"] == "ok" and body["database"]["writable"] is True
    assert body["directory"]["status"] == "ok" and body["directory"]["centres"] > 10
    assert body["channels"]["rest"] == {"enabled": True, "token": False}
    assert body["channels"]["callback"]["enabled"] is False  # no TIAOJIE_CALLBACK_URL
    assert "nlu" in body


def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


async def test_unwritable_sqlite_file_is_503(serve: Callable[..., Any], sqlite_url: str) -> None:
    path = Path(sqlite_url.split("///", 1)[1])
    http = await serve(sqlite_url, sweep_seconds=0)
    assert (await http.get("/healthz")).status == 200
    # The app's daily retention job runs once at start and writes; let it finish first,
    # or its connection (reopened after the dispose below) keeps a writable WAL open.
    scheduler = http.app[SCHEDULER]
    for _ in range(100):
        if scheduler.runs.get("retention"):
            break
        await asyncio.sleep(0.05)
    assert scheduler.runs.get("retention"), scheduler.health()
    # An fd opened before the change could still write (and SQLite reuses such fds
    # within a process), so close the pool: the probe then sees what a new connection
    # — a restarted process — would see.
    await http.app[STORE].engine.dispose()
    # Root ignores file modes, so make the file immutable (ext4 and most file systems).
    if not _chattr("+i", path):
        pytest.skip("cannot make the database file immutable here (chattr +i)")
    try:
        response = await http.get("/healthz")
        body = await response.json()
        assert response.status == 503, body
        assert body["status"] == "degraded"
        assert body["database"]["status"] == "read_only" and body["database"]["writable"] is False
        assert "readonly" in body["database"]["error"]
    finally:
        _chattr("-i", path)
    assert (await http.get("/healthz")).status == 200


async def test_another_process_holding_the_write_lock_does_not_block_healthz(
    serve: Callable[..., Any], sqlite_url: str
) -> None:
    """The old check waited on the pool's only connection for the whole lock."""
    path = sqlite_url.split("///", 1)[1]
    http = await serve(sqlite_url)
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        response = await http.get("/healthz")
        elapsed = time.monotonic() - started
        body = await response.json()
        assert elapsed < 2.5, elapsed
        assert response.status == 200 and body["database"]["status"] == "busy", body
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_healthz_does_not_wait_for_the_pools_single_connection(
    serve: Callable[..., Any], sqlite_url: str
) -> None:
    http = await serve(sqlite_url)
    store = http.app[STORE]
    release = asyncio.Event()

    async def long_unit_of_work() -> None:
        async with store.sessions.begin() as session:
            await session.execute(text("SELECT 1"))
            await release.wait()

    holder = asyncio.create_task(long_unit_of_work())
    await asyncio.sleep(0.2)
    try:
        started = time.monotonic()
        response = await http.get("/healthz")
        assert time.monotonic() - started < 2.5
        body = await response.json()
        # Our own transaction holds SQLite's write lock: busy, but answered at once.
        assert response.status == 200 and body["database"]["status"] in ("ok", "busy"), body
    finally:
        release.set()
        await holder


async def test_empty_centre_directory_is_503_with_reason(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    await asyncio.to_thread(upgrade, url)  # migrated, but `centers load` never ran
    http = await serve(url)
    response = await http.get("/healthz")
    body = await response.json()
    assert response.status == 503
    assert body["directory"]["status"] == "empty" and body["directory"]["centres"] == 0
    assert "centers load" in body["directory"]["reason"]


async def test_missing_database_file_is_503(serve: Callable[..., Any], tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'x.db'}"
    http = await serve(url)
    response = await http.get("/healthz")
    assert response.status == 503
    assert (await response.json())["database"]["status"] == "unavailable"


@pytest.mark.postgres
async def test_read_only_postgres_is_reported(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    engine = create_engine(
        db_url, connect_args={"server_settings": {"default_transaction_read_only": "on"}}
    )
    try:
        probe = await probe_database(engine, count_table="centres")
    finally:
        await engine.dispose()
    assert probe.read_error is None and probe.rows and probe.rows > 10
    assert probe.write_error and "read-only" in probe.write_error and not probe.busy


async def test_public_address_without_token_turns_http_channels_off(
    serve: Callable[..., Any], sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"):
        http = await serve(sqlite_url, http_host="0.0.0.0", callback_url="http://127.0.0.1:9/x")
    assert any("OFF" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    body = await (await http.get("/healthz")).json()
    assert body["channels"]["rest"] == {"enabled": False, "token": False}
    assert body["channels"]["callback"]["enabled"] is False
    assert "TIAOJIE_REST_TOKEN" in body["channels"]["reason"]
    message = {"sender": "u4", "message": "/status"}
    for url in ("/webhooks/rest/webhook", "/webhooks/callback/webhook"):
        response = await http.post(url, json=message)
        answer = await response.json()
        assert response.status == 403 and "TIAOJIE_REST_TOKEN" in answer["error"]


async def test_token_protects_rest_and_callback(serve: Callable[..., Any], sqlite_url: str) -> None:
    http = await serve(
        sqlite_url, http_host="0.0.0.0", rest_token=TOKEN, callback_url="http://127.0.0.1:9/x"
    )
    body = await (await http.get("/healthz")).json()
    assert body["channels"]["rest"] == {"enabled": True, "token": True}
    assert body["channels"]["callback"]["enabled"] is True
    message = {"sender": "u4", "message": "/status"}
    for url in ("/webhooks/rest/webhook", "/webhooks/callback/webhook"):
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN}x"},
        ):
            response = await http.post(url, json=message, headers=headers)
            assert response.status == 401, (url, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    ok = await http.post(
        "/webhooks/rest/webhook", json=message, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert ok.status == 200 and (await ok.json())[0]["recipient_id"] == "u4"


def test_short_or_empty_tokens(tmp_path: Path) -> None:
    from bot.settings import SettingsError

    assert load_settings(rest_token="  ").rest_token is None
    with pytest.raises(SettingsError, match="TIAOJIE_REST_TOKEN"):
        load_settings(TIAOJIE_REST_TOKEN="short")
    assert load_settings(http_host="::1").http_channels_open
    assert load_settings(http_host="localhost").http_channels_open
    assert not load_settings(http_host="192.168.1.5").http_channels_open
