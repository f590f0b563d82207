"""Programmatic Alembic: ``tiaojie db upgrade`` and the tests use these.

Alembic's env runs its own event loop, so these functions are synchronous; async
callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; a no-op when already there."""
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(sync_connection: object) -> str | None:
    """Revision stamped in the database (for /healthz and status output)."""
    return MigrationContext.configure(sync_connection).get_current_revision()  # type: ignore[arg-type]
