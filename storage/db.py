"""Engine and session set-up for the embedded SQLite default and shared PostgreSQL.

SQLite needs care to be a good embedded store: WAL so readers never block the writer,
foreign keys on (off by default in SQLite), a busy timeout, and ``BEGIN IMMEDIATE`` so a
transaction that reads and then writes cannot deadlock against another one (SQLite would
fail the second writer at once instead of letting it wait).
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Probe:
    """What a health probe found: ``read_error``/``write_error`` None when that worked;
    ``busy`` when the write only waited too long for another writer's lock; ``rows``
    of the counted table (None when not counted or unreadable)."""

    read_error: str | None
    write_error: str | None = None
    busy: bool = False
    rows: int | None = None


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _is_lock_wait(reason: str) -> bool:
    lowered = reason.lower()
    return "locked" in lowered or "lock timeout" in lowered or "timeout" in lowered


def _probe_sqlite_file(path: str, wait_s: float, count_table: str | None) -> Probe:
    """Read, count and a real committed write, on a connection of its own.

    ``PRAGMA user_version`` set to its own value rewrites the header page and needs a
    commit, so a read-only or immutable file or a full disk fail here although a
    ``SELECT`` still works. ``wait_s`` bounds the wait for another process's write
    lock, so the probe never hangs behind a long transaction.
    """
    import sqlite3

    if not Path(path).exists():
        return Probe(read_error=f"no database file at {path}")
    try:
        connection = sqlite3.connect(path, timeout=wait_s, isolation_level=None)
    except sqlite3.Error as error:
        return Probe(read_error=_first_line(error))
    try:
        try:
            rows = None
            if count_table is not None:
                (rows,) = connection.execute(f'SELECT count(*) FROM "{count_table}"').fetchone()
            else:
                connection.execute("SELECT 1").fetchone()
        except sqlite3.Error as error:
            return Probe(read_error=_first_line(error))
        try:
            connection.execute("BEGIN IMMEDIATE")
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            connection.execute(f"PRAGMA user_version = {int(version)}")
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            reason = _first_line(error)
            return Probe(None, reason, busy=_is_lock_wait(reason), rows=rows)
        return Probe(None, None, rows=rows)
    finally:
        connection.close()


async def probe_database(
    engine: AsyncEngine, *, count_table: str | None = None, wait_s: float = PROBE_TIMEOUT_S
) -> Probe:
    """Can this database be read and written right now, and how many rows in a table?

    SQLite: a separate short-lived connection (never the engine's single pooled one,
    which a long unit of work may hold) with a ``wait_s`` busy wait. PostgreSQL: the
    pool, bounded by ``wait_s``; the write is a rolled-back DDL statement under
    ``lock_timeout``, which a read-only server or transaction refuses.
    """
    import asyncio

    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:":
            return Probe(None)
        return await asyncio.to_thread(_probe_sqlite_file, database, wait_s, count_table)
    millis = int(wait_s * 1000)
    try:
        async with asyncio.timeout(wait_s * 3), engine.connect() as connection:
            rows = None
            if count_table is not None:
                query = text(f'SELECT count(*) FROM "{count_table}"')
                rows = int((await connection.execute(query)).scalar_one())
            else:
                await connection.execute(text("SELECT 1"))
            await connection.commit()
            transaction = await connection.begin()
            try:
                await connection.execute(text(f"SET LOCAL lock_timeout = {millis}"))
                await connection.execute(text(f"SET LOCAL statement_timeout = {millis}"))
                await connection.execute(text("CREATE TEMPORARY TABLE health_probe (x int)"))
            except Exception as error:
                reason = _first_line(error)
                return Probe(None, reason, busy=_is_lock_wait(reason), rows=rows)
            finally:
                await transaction.rollback()
        return Probe(None, None, rows=rows)
    except TimeoutError:
        return Probe(read_error="timed out")
    except Exception as error:
        return Probe(read_error=_first_line(error))
