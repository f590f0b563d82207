"""Engine and session set-up for the embedded SQLite default and shared PostgreSQL.

SQLite needs care to be a good embedded store: WAL so readers never block the writer,
foreign keys on (off by default in SQLite), a busy timeout, and ``BEGIN IMMEDIATE`` so a
transaction that reads and then writes cannot deadlock against another one (SQLite would
fail the second writer at once instead of letting it wait).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message says which and why, without secrets."""


def safe_url(url: str) -> str:
    """The URL with its password hidden, fit for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)


def _prepare_sqlite_file(url: str) -> None:
    """Create the folder of a SQLite file so a fresh clone works without set-up."""
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create the async engine with the right per-backend settings."""
    if url.startswith("sqlite"):
        _prepare_sqlite_file(url)
        # SQLite has one writer at a time. One pooled connection per process makes this
        # process's transactions queue in order on the pool instead of each sleeping in
        # SQLite's busy handler (which gave a long latency tail); other processes still
        # wait on busy_timeout.
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", 60)
        # Every unit of work ends in an explicit commit or rollback (session.begin()),
        # so the pool's extra ROLLBACK on check-in is one wasted round trip per message.
        kwargs.setdefault("pool_reset_on_return", None)
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_async_engine(url, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so we can say BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (no lazy I/O surprises)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def check_database(engine: AsyncEngine) -> None:
    """Run a trivial query; raise :class:`DatabaseUnavailable` with a readable reason."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DatabaseUnavailable(f"{safe_url(str(engine.url))}: {reason}") from error


# ------------------------------------------------------------------ health probes

#: How long a health probe waits for another connection's write lock.
PROBE_TIMEOUT_S = 1.0


def _probe_sqlite_file(path: str, timeout: float) -> str | None:
    """A real committed write on its own connection; None when it worked, else why not.

    ``PRAGMA user_version`` set to its own value rewrites the header page and needs a
    commit, so a read-only or immutable file, a full disk or a lost directory fail here
    although a ``SELECT`` would still work. ``timeout`` bounds the wait for another
    process's write lock, so the probe never hangs behind a long transaction.
    """
    import sqlite3

    try:
        connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as error:
        return str(error)
    try:
        connection.execute("BEGIN IMMEDIATE")
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        connection.execute(f"PRAGMA user_version = {int(version)}")
        connection.execute("COMMIT")
        return None
    except sqlite3.OperationalError as error:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        return str(error)
    except sqlite3.Error as error:
        return str(error)
    finally:
        connection.close()


async def probe_write(engine: AsyncEngine, wait_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Can this database take a write right now? None when yes, else a short reason.

    SQLite: a separate short-lived connection (never the engine's single pooled one,
    which a long unit of work may hold) with a ``wait_s`` busy wait. PostgreSQL: a
    rolled-back DDL statement under ``lock_timeout``, which a read-only server or a
    read-only default transaction refuses.
    """
    import asyncio

    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:":
            return None
        return await asyncio.to_thread(_probe_sqlite_file, database, wait_s)
    try:
        async with asyncio.timeout(wait_s * 3):
            async with engine.connect() as connection:
                transaction = await connection.begin()
                try:
                    millis = int(wait_s * 1000)
                    await connection.execute(text(f"SET LOCAL lock_timeout = {millis}"))
                    await connection.execute(text(f"SET LOCAL statement_timeout = {millis}"))
                    await connection.execute(text("CREATE TEMPORARY TABLE health_probe (x int)"))
                finally:
                    await transaction.rollback()
        return None
    except TimeoutError:
        return "timed out"
    except Exception as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__


def is_lock_timeout(reason: str) -> bool:
    """The probe only waited too long for another writer: busy, not broken."""
    lowered = reason.lower()
    return "locked" in lowered or "lock timeout" in lowered or "timed out" in lowered
