"""Shared fixtures: fresh, migrated databases on a real SQLite file and on PostgreSQL.

Each test gets its own database copied from a template that was migrated and loaded with
the Bao'an centre directory once per run, so tests are isolated and still fast.
PostgreSQL tests skip with a reason when no server answers, except under ``CI=true``,
where a missing server is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from bot.runtime import Store
from storage.db import create_engine, session_factory
from storage.directory import load_directory, parse_directory
from storage.migrate import upgrade
from storage.phone import PhoneVault

ROOT = Path(__file__).resolve().parent.parent
CENTRES_FILE = ROOT / "storage" / "data" / "baoan_centres.yml"
PG_ADMIN_URL = os.environ.get("TIAOJIE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _pg_dsn(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def _asyncpg_url(database: str) -> str:
    return _pg_dsn(database).replace("postgresql://", "postgresql+asyncpg://", 1)


async def _pg_execute(*statements: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _load_centres(url: str) -> None:
    engine = create_engine(url)
    try:
        async with session_factory(engine).begin() as session:
            await load_directory(session, parse_directory(CENTRES_FILE))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    asyncio.run(_load_centres(url))
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """Name of a migrated template database on the machine's PostgreSQL."""
    try:
        asyncio.run(_pg_execute("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {error}"
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL. {message}")
        pytest.skip(message)
    name = f"tiaojie_tpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    upgrade(_asyncpg_url(name))
    asyncio.run(_load_centres(_asyncpg_url(name)))
    yield name
    asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, migrated database holding the Bao'an directory."""
    if request.param == "sqlite":
        target = tmp_path / "tiaojie.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    template = request.getfixturevalue("postgres_template")
    name = f"tiaojie_t_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _asyncpg_url(name)
    asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(postgres_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database only, for tests of several processes on one store."""
    name = f"tiaojie_p_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"'))
    yield _asyncpg_url(name)
    asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh migrated SQLite database only (for tests about one backend)."""
    target = tmp_path / "tiaojie.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    engine = create_engine(db_url)
    yield Store(engine=engine, sessions=session_factory(engine), vault=PhoneVault("test-secret"))
    await engine.dispose()


@pytest.fixture(scope="session")
def nlu_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built-in NLU model trained once per run from the repository's training data."""
    from nlu.engine import train

    folder = tmp_path_factory.mktemp("models")
    train([ROOT / "nlu" / "data"], ROOT / "config.yml", folder)
    return folder


@pytest.fixture(scope="session")
def nlu(nlu_model_dir: Path):
    """The real built-in engine, as the running assistant uses it."""
    from nlu.engine import load_engine

    return load_engine(nlu_model_dir, ROOT / "config.yml")
