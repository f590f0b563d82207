"""Migrations build the schema the models describe, on both databases."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from storage.db import create_engine
from storage.migrate import head_revision, upgrade
from storage.schema import Base
from tests.conftest import _asyncpg_url, _pg_execute


async def _diff_and_pragmas(url: str) -> tuple[list, dict[str, object]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
            pragmas: dict[str, object] = {}
            if engine.dialect.name == "sqlite":
                for name in ("journal_mode", "foreign_keys"):
                    pragmas[name] = (await connection.execute(text(f"PRAGMA {name}"))).scalar()
            version = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar()
            pragmas["version"] = version
    finally:
        await engine.dispose()
    return diff, pragmas


def test_sqlite_upgrade_empty_twice_matches_models(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'x.db'}"
    upgrade(url)
    upgrade(url)  # second run is a no-op
    diff, pragmas = asyncio.run(_diff_and_pragmas(url))
    assert diff == []
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "version": head_revision()}


@pytest.mark.postgres
def test_postgres_upgrade_empty_twice_matches_models(postgres_template: str) -> None:
    name = f"tiaojie_m_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    try:
        upgrade(_asyncpg_url(name))
        upgrade(_asyncpg_url(name))
        diff, pragmas = asyncio.run(_diff_and_pragmas(_asyncpg_url(name)))
        assert diff == []
        assert pragmas["version"] == head_revision()
    finally:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
