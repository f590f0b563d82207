"""What a running tiaojie process holds: settings, the database engine, the phone vault.

Built once by the CLI or the web app and passed down; nothing here is a global, so tests
can run several independent instances side by side.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.settings import Settings
from storage.db import create_engine, session_factory
from storage.phone import PhoneVault
from storage.sealed import VAULT_KEY


def secret_key(settings: Settings) -> str:
    """``TIAOJIE_SECRET_KEY``, or a key generated once into ``var/secret.key`` (0600).

    Phone numbers are encrypted with it; losing the file makes stored numbers
    unreadable, so production deployments should set the variable and back it up.
    """
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = Path(settings.data_dir) / "secret.key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key


@dataclass(slots=True)
class Store:
    """The shared case store as one process sees it."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    vault: PhoneVault

    def __post_init__(self) -> None:
        # Every session of this store seals personal numbers in free texts with the
        # vault (storage.sealed); a session without it could only mask them.
        self.sessions.configure(info={VAULT_KEY: self.vault})

    @classmethod
    def open(cls, settings: Settings) -> Store:
        engine = create_engine(settings.database_url)
        return cls(
            engine=engine, sessions=session_factory(engine), vault=PhoneVault(secret_key(settings))
        )

    async def close(self) -> None:
        await self.engine.dispose()
