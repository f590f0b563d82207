"""What tiaojie counts and times, for ``/metrics`` (Prometheus text format).

Why one module of definitions: the service layer (filing, claiming, escalating) and
the front ends (channels, the NLU call, the database hooks) count into the same
metrics, and Prometheus wants each metric defined once per process. ``nlu/`` and
``storage/`` never import this: the NLU parse is timed where the bot calls it, and the
database through SQLAlchemy engine events attached by the app (:mod:`bot.db_metrics`).

Several worker processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (before this module is
first imported, to an empty directory the workers share), prometheus-client writes
every value to a memory-mapped file per process and ``/metrics`` adds them up across
the workers, so a scrape answered by any worker shows the whole installation. Gauges
say how they combine (``multiprocess_mode``); a supervisor calls :func:`worker_exited`
for a worker that died so its gauges stop counting. Without the variable everything
stays in this process's memory.

Counters that describe a change in the store (a case filed, claimed) move only when the
transaction that made the change commits (:func:`count_on_commit`): a transaction
retried after a lost race must not count its case twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

#: The environment variable prometheus-client reads for multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# ``*_created`` series double the output for nothing a dashboard here uses.
disable_created_metrics()

#: Seconds, from a fast in-process parse (~0.5 ms) to a slow Rasa call (timeout 2 s).
_FAST_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

# --------------------------------------------------------------- residents' messages

MESSAGES_IN = Counter(
    "tiaojie_messages_in",
    "Events from residents handed to the intake service (texts, buttons, files …)",
    ["channel"],
)
MESSAGES_OUT = Counter(
    "tiaojie_messages_out",
    "Messages to residents: the assistant's replies (source=dialogue) and what "
    "mediators and case updates send through the channel's port (source=desk)",
    ["channel", "source"],
)
MESSAGES_FAILED = Counter(
    "tiaojie_messages_failed",
    "Residents' events answered 'not saved, please send again' (reason: db_unavailable, "
    "db_refused)",
    ["channel", "reason"],
)
DIALOGUE_STEP_SECONDS = Histogram(
    "tiaojie_dialogue_step_seconds",
    "One resident event end to end in the intake service: waiting for the chat's turn, "
    "NLU parse, dialogue engine, actions, saving",
    ["channel"],
    buckets=_FAST_BUCKETS,
)
DIALOGUE_RETRIES = Counter(
    "tiaojie_dialogue_retries",
    "Events handled again on fresh state after losing a race (another worker saved the "
    "chat first, or inserted the same row)",
)
CHAT_LOCK_WAIT_SECONDS = Histogram(
    "tiaojie_chat_lock_wait_seconds",
    "Waits for a chat's database lock that another worker held (_count: how many waits)",
    buckets=_FAST_BUCKETS,
)
NLU_PARSE_SECONDS = Histogram(
    "tiaojie_nlu_parse_seconds",
    "One NLU parse of a resident's text, as the bot calls it",
    buckets=_FAST_BUCKETS,
)
NLU_MODEL = Gauge(
    "tiaojie_nlu_model_info",
    "1 for the NLU backend and model version a worker parses with, else 0",
    ["backend", "version"],
    multiprocess_mode="livemax",
)

# ------------------------------------------------------------------------ database

DB_QUERY_SECONDS = Histogram(
    "tiaojie_db_query_seconds",
    "One SQL statement's round trip to the database (cursor execute)",
    ["operation"],
    buckets=_FAST_BUCKETS,
)
DB_ERRORS = Counter(
    "tiaojie_db_errors",
    "Statements the database refused or failed (lost races included)",
    ["error"],
)
DB_TRANSACTIONS = Counter(
    "tiaojie_db_transactions",
    "Transactions ended (a COMMIT or ROLLBACK is a round trip too)",
    ["outcome"],
)

# ------------------------------------------------------------------------ casework

CASES_FILED = Counter(
    "tiaojie_cases_filed",
    "Cases filed (by the resident's channel and the case's risk level)",
    ["channel", "risk"],
)
CASES_CLAIMED = Counter("tiaojie_cases_claimed", "Cases claimed by a mediator", ["risk"])
CASES_ESCALATED = Counter(
    "tiaojie_cases_escalated",
    "Cases taken up a level: unclaimed past the centre's limit (reason=unclaimed), an "
    "emergency nobody acknowledged (reason=unacknowledged)",
    ["reason"],
)
QUEUE_DEPTH = Gauge(
    "tiaojie_queue_depth",
    "Open cases per centre and status (new: waiting to be claimed), read from the store "
    "when /metrics is scraped",
    ["centre", "status"],
    multiprocess_mode="livemostrecent",
)

# --------------------------------------------------------------- messaging platforms

CHANNEL_API_CALLS = Counter(
    "tiaojie_channel_api_calls",
    "Calls to a messaging platform's API (telegram, wechat, wecom)",
    ["channel"],
)
CHANNEL_API_ERRORS = Counter(
    "tiaojie_channel_api_errors",
    "Failed platform API calls; kind=rate_limited is HTTP 429 or the platform's "
    "frequency-limit error code, network: unreachable or timed out, server: 5xx, "
    "refused: any other error answer",
    ["channel", "kind"],
)


# -------------------------------------------------------------- counting on commit

_PENDING = "tiaojie_metrics_on_commit"


def count_on_commit(session: AsyncSession | Session, increment: Callable[[], None]) -> None:
    """Run ``increment`` when ``session``'s transaction commits; never if it rolls back."""
    session.info.setdefault(_PENDING, []).append(increment)


# SQLAlchemy fires both events for savepoints too (a nested block released or rolled
# back); only the outermost transaction decides whether the change is in the store.
# (An increment registered inside a savepoint that is rolled back still counts when the
# outer transaction commits: nothing counted here happens inside a savepoint.)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    for increment in session.info.pop(_PENDING, ()):
        increment()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_PENDING, None)


# ------------------------------------------------------------------------ helpers

_model: tuple[str, str] | None = None


def set_model_version(backend: str, version: str | None) -> None:
    """Show which model this process parses with; the one before goes to 0."""
    global _model
    current = (backend, version or "unknown")
    if current == _model:
        return
    if _model is not None:
        NLU_MODEL.labels(*_model).set(0)
    NLU_MODEL.labels(*current).set(1)
    _model = current


def multiprocess_dir() -> Path | None:
    """The shared directory of multiprocess mode, or None in single-process mode."""
    value = os.environ.get(MULTIPROC_ENV, "").strip()
    return Path(value) if value else None


def prepare_multiprocess_dir() -> None:
    """Empty the shared directory before the workers start (a supervisor calls this):
    files left by an earlier run would be added to this run's counters."""
    folder = multiprocess_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("*.db"):
        leftover.unlink(missing_ok=True)


def worker_exited(pid: int) -> None:
    """A supervisor's call when a worker died: its live gauges stop counting (its
    counters and histograms stay in the totals, as Prometheus expects of counters)."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
