"""What one resident message costs the server: CPU milliseconds and database round trips.

Runs ``benchmarks/dialogue_bench.py``'s complete intake conversations through the REST
channel against the real application in this process, with the load generator in a
*separate* process so this process's CPU time is the server's alone (event loop,
aiohttp, NLU, dialogue engine, SQLAlchemy, and the aiosqlite/asyncpg driver threads).
The database figures come from tiaojie's own metrics (``bot.db_metrics`` engine hooks):
statements by kind and COMMIT/ROLLBACK; this script adds a count of transactions begun
and of pool checkouts (PostgreSQL pings each checkout: a round trip the cursor hooks do
not see, as is its BEGIN).

    .venv/bin/python benchmarks/message_cost.py [--conversations 200] [--concurrency 8]
        [--database-url postgresql://postgres@127.0.0.1/bench_db]   # an empty database

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY
from sqlalchemy import event

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from bot.nlu_setup import ensure_builtin  # noqa: E402
from bot.runtime import Store  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.web import create_app  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.directory import load_directory, parse_directory  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

#: The load generator: dialogue_bench's conversations, run in their own process.
LOAD = """
import asyncio, json, sys
sys.path.insert(0, "benchmarks")
import dialogue_bench
url, conversations, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print(json.dumps(asyncio.run(dialogue_bench.run_intake(url, conversations, concurrency))))
"""

COUNTED = (
    "tiaojie_messages_in_total",
    "tiaojie_messages_out_total",
    "tiaojie_db_query_seconds_count",
    "tiaojie_db_query_seconds_sum",
    "tiaojie_db_transactions_total",
    "tiaojie_nlu_parse_seconds_count",
    "tiaojie_nlu_parse_seconds_sum",
    "tiaojie_dialogue_step_seconds_count",
    "tiaojie_cases_filed_total",
)


def snapshot() -> dict[str, float]:
    """Every sample of the counted metrics, keyed ``name{labels}``."""
    values: dict[str, float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name in COUNTED:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def moved(before: dict[str, float], after: dict[str, float], prefix: str) -> dict[str, float]:
    return {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key.startswith(prefix) and after[key] - before.get(key, 0.0)
    }


def load(url: str, conversations: int, concurrency: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", LOAD, url, str(conversations), str(concurrency)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def prepare(url: str) -> None:
    await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
    engine = create_engine(url)
    async with session_factory(engine).begin() as session:
        await load_directory(session, parse_directory(ROOT / "storage/data/baoan_centres.yml"))
    await engine.dispose()


async def main(
    conversations: int, concurrency: int, database_url: str | None, profile: str | None = None
) -> None:
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="tiaojie-cost-"))
    url = database_url or f"sqlite:///{workdir / 'bench.db'}"
    url = load_settings(database_url=url).database_url  # the async driver's URL
    await prepare(url)
    nlu = ensure_builtin(Path(os.environ.get("TIAOJIE_MODEL_DIR", "models")))
    settings = load_settings(database_url=url, data_dir=workdir / "var", sweep_seconds=0)
    store = Store.open(settings)
    sync_engine = store.engine.sync_engine
    extra = {"begin": 0, "checkout": 0}

    @event.listens_for(sync_engine, "begin")
    def _begun(connection: Any) -> None:
        extra["begin"] += 1

    @event.listens_for(sync_engine.pool, "checkout")
    def _checked_out(*_: Any) -> None:
        extra["checkout"] += 1

    app = create_app(settings, nlu, threshold=nlu.config.threshold, store=store)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    from dialogue_bench import free_port  # type: ignore[import-not-found]

    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    endpoint = f"http://127.0.0.1:{port}/webhooks/rest/webhook"
    try:
        # Warm-up, not counted: SQL compiled, caches filled, the NLU's first parses.
        await asyncio.to_thread(load, endpoint, concurrency, concurrency)
        await asyncio.sleep(0.5)  # the start-up retention run and anything left settle
        profiler = cProfile.Profile(time.process_time) if profile else None
        before, begun, cpu = snapshot(), dict(extra), time.process_time()
        wall = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = await asyncio.to_thread(load, endpoint, conversations, concurrency)
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        after = snapshot()
    finally:
        await runner.cleanup()
        await store.close()

    messages = sum(moved(before, after, "tiaojie_messages_in_total").values())
    statements = moved(before, after, "tiaojie_db_query_seconds_count")
    statement_seconds = sum(moved(before, after, "tiaojie_db_query_seconds_sum").values())
    transactions = moved(before, after, "tiaojie_db_transactions_total")
    begins = extra["begin"] - begun["begin"]
    checkouts = extra["checkout"] - begun["checkout"]
    parses = sum(moved(before, after, "tiaojie_nlu_parse_seconds_count").values())
    parse_seconds = sum(moved(before, after, "tiaojie_nlu_parse_seconds_sum").values())
    filed = sum(moved(before, after, "tiaojie_cases_filed_total").values())
    replies = sum(moved(before, after, "tiaojie_messages_out_total").values())
    sqlite = url.startswith("sqlite")
    # SQLite: BEGIN IMMEDIATE is a statement the hooks see (operation=begin); no ping.
    # PostgreSQL: BEGIN and the checkout ping are round trips the hooks do not see.
    round_trips = sum(statements.values()) + sum(transactions.values())
    if not sqlite:
        round_trips += begins + checkouts
    figures = {
        "database": "sqlite" if sqlite else "postgresql",
        "messages": int(messages),
        "cases_filed": int(filed),
        "messages_per_case": round(messages / filed, 2) if filed else None,
        "replies_per_message": round(replies / messages, 2),
        "messages_per_s": round(messages / wall, 1),
        "client_p50_ms": round(result["p50_ms"], 2),
        "client_p99_ms": round(result["p99_ms"], 2),
        "cpu_ms_per_message": round(cpu * 1000 / messages, 3),
        "cpu_share_of_one_core": round(cpu / wall, 2),
        "db_round_trips_per_message": round(round_trips / messages, 2),
        "db_statements_per_message": {
            key.split("operation=")[1].rstrip("}"): round(value / messages, 2)
            for key, value in sorted(statements.items())
        },
        "db_transactions_per_message": round(begins / messages, 2),
        "db_statement_ms_per_message": round(statement_seconds * 1000 / messages, 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "pool_checkouts_per_message": round(checkouts / messages, 2),
        "nlu_parses_per_message": round(parses / messages, 2),
        "nlu_ms_per_parse": round(parse_seconds * 1000 / parses, 3) if parses else None,
    }
    print(
        f"tiaojie message cost — {time.strftime('%Y-%m-%d')} — {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {figures['database']}, "
        f"{conversations} conversations × {concurrency} at a time, load generator in its "
        "own process"
    )
    for key, value in figures.items():
        print(f"  {key:30} {value}")
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite)")
    parser.add_argument("--profile", default=None, help="write cProfile stats of the event loop")
    arguments = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    asyncio.run(
        main(
            arguments.conversations,
            arguments.concurrency,
            arguments.database_url,
            arguments.profile,
        )
    )
