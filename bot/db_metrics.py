"""Database latency, round trips and errors, from SQLAlchemy's engine events.

Attached by the app to its store's engine (``storage/`` knows nothing of metrics): every
statement's cursor execute is timed (``tiaojie_db_query_seconds{operation}``, whose
``_count`` is the number of statement round trips), every COMMIT and ROLLBACK counted
(``tiaojie_db_transactions_total``: round trips too, which the cursor events do not
see), and every failure counted by its SQLAlchemy error class.

The events fire inside SQLAlchemy's greenlet bridge around the awaited driver call, so
the time measured is what the caller waited for, including the event loop's turns
spent on other requests while the answer was on its way.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from actions.metrics import DB_ERRORS, DB_QUERY_SECONDS, DB_TRANSACTIONS

_STARTED = "tiaojie_query_started"
#: Statement kinds kept as labels; everything else (PRAGMA, CREATE …) is "other".
_OPERATIONS = frozenset(
    {"select", "insert", "update", "delete", "begin", "savepoint", "release", "with"}
)


def operation(statement: str) -> str:
    """The statement's first keyword, as a label of few values."""
    head = statement.lstrip()[:12].split(None, 1)
    word = head[0].lower() if head else ""
    return word if word in _OPERATIONS else "other"


def _before(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    conn.info.setdefault(_STARTED, []).append(time.perf_counter())


def _after(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    started = conn.info.get(_STARTED)
    if started:
        DB_QUERY_SECONDS.labels(operation(statement)).observe(time.perf_counter() - started.pop())


def _error(context: ExceptionContext) -> None:
    failed = context.sqlalchemy_exception or context.original_exception
    DB_ERRORS.labels(type(failed).__name__).inc()
    connection = context.connection
    if connection is not None and context.statement is not None:
        started = connection.info.get(_STARTED)
        if started:
            elapsed = time.perf_counter() - started.pop()
            DB_QUERY_SECONDS.labels(operation(context.statement)).observe(elapsed)


def _commit(conn: Connection) -> None:
    DB_TRANSACTIONS.labels("commit").inc()


def _rollback(conn: Connection) -> None:
    DB_TRANSACTIONS.labels("rollback").inc()


def instrument_engine(engine: AsyncEngine | Engine) -> None:
    """Attach the hooks to ``engine`` (once; calling again changes nothing)."""
    target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    if event.contains(target, "before_cursor_execute", _before):
        return
    event.listen(target, "before_cursor_execute", _before)
    event.listen(target, "after_cursor_execute", _after)
    event.listen(target, "handle_error", _error)
    event.listen(target, "commit", _commit)
    event.listen(target, "rollback", _rollback)
