"""Intake throughput with 1, 2 and 4 workers on PostgreSQL (issue 16), in one run.

For each worker count: a fresh PostgreSQL database (migrations, the Bao'an directory),
``tiaojie run --workers N`` started as an operator would (the supervisor, SO_REUSEPORT on
one port), then the same complete intake conversations as ``dialogue_bench.py`` through
the REST channel at each concurrency of the sweep, each client on its own connection so
the kernel spreads them over the workers. Printed per run: messages per second,
latency p50/p99, CPU-ms per message of the workers, of this load generator and of the
rest of the machine (PostgreSQL, from machine-wide CPU time), how many cores were busy,
database transactions and statements (one round trip each, BEGIN and COMMIT not
counted) per message (``/metrics``, summed over the workers), chat-lock waits, lost
races retried, and refused messages (a non-200 or a "not saved" answer). One more run
with 2 workers orders chats by the version check alone (``TIAOJIE_CHAT_LOCK=0``), so the
two ways can be compared. The last line is one JSON object:
``{"workers": {"1": msg/s, "2": …, "4": …}, "refused": n, …}``.

    .venv/bin/python benchmarks/scale_bench.py [--workers 1,2,4] [--concurrency 4,16,32]
        [--conversations 60] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Goal on the 2-core machine (PostgreSQL and this load generator share the cores):
2 workers ≥ 1.5 × one worker, 0 refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # as message_cost.py imports it

from dialogue_bench import (  # type: ignore[import-not-found]  # noqa: E402
    OPENINGS,
    free_port,
    next_message,
    percentile,
)

NOT_SAVED = ("没有保存", "not saved", "请再发", "send it again")


async def fresh_database(admin: str) -> tuple[str, str]:
    name = f"tiaojie_scale_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    base = admin.rsplit("/", 1)[0]
    return name, f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)


async def drop_database(admin: str, name: str) -> None:
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idling, machine-wide."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def start_tiaojie(env: dict[str, str], workers: int) -> subprocess.Popen[bytes]:
    """Migrate the fresh database and start ``tiaojie run`` as an operator would."""
    tiaojie = str(Path(sys.executable).parent / "tiaojie")
    subprocess.run([tiaojie, "db", "upgrade"], env=env, cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    return subprocess.Popen(
        [tiaojie, "run", "--workers", str(workers)] if workers > 1 else [tiaojie, "run"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def worker_pids(port: int, expected: int) -> set[str]:
    """The pids of the workers answering on ``port`` (new connections until all seen)."""
    seen: set[str] = set()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(400):
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                body = await response.json()
            seen.add(str(body["leader"]["holder"]).split(":")[1])
            if len(seen) >= expected:
                break
    return seen


async def counters(port: int) -> dict[str, float]:
    """Totals over every worker from ``/metrics`` (the supervisor gives the workers one
    prometheus-client multiprocess folder, so any worker's answer adds them all up)."""
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    wanted = {
        "tiaojie_db_query_seconds_count": "statements",
        "tiaojie_chat_lock_wait_seconds_count": "lock_waits",
        "tiaojie_chat_lock_wait_seconds_sum": "lock_wait_seconds",
        "tiaojie_dialogue_retries_total": "retries",
        "tiaojie_db_transactions_total": "transactions",
    }
    totals = dict.fromkeys(wanted.values(), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                totals[wanted[sample.name]] += sample.value
    return totals


async def conversation(
    http: aiohttp.ClientSession, url: str, sender: str, opening: str, latencies: list[float]
) -> tuple[int, int]:
    message: str | None = opening
    sent = refused = 0
    while message is not None and sent < 40:
        started = time.perf_counter()
        async with http.post(url, json={"sender": sender, "message": message}) as response:
            body = await response.json() if response.status == 200 else []
            ok = response.status == 200
        latencies.append(time.perf_counter() - started)
        sent += 1
        texts = " ".join(item.get("text", "") for item in body)
        if not ok or any(words in texts for words in NOT_SAVED):
            refused += 1
            break
        message = next_message(body)
    return sent, refused


async def load(url: str, conversations: int, concurrency: int, tag: str) -> dict[str, float]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(conversations):
        queue.put_nowait(number)
    messages = refused = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            nonlocal messages, refused
            while not queue.empty():
                number = queue.get_nowait()
                opening = OPENINGS[number % len(OPENINGS)]
                sent, lost = await conversation(
                    http, url, f"{tag}-{number}", opening, latencies
                )
                messages += sent
                refused += lost

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "messages": messages,
        "seconds": seconds,
        "messages_per_s": messages / seconds,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "refused": refused,
    }


async def one_run(
    args: argparse.Namespace, workers: int, chat_lock: bool
) -> dict[str, Any]:
    name, url = await fresh_database(args.pg)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_"))}
    data_dir = tempfile.mkdtemp(prefix="scale-")
    env.update(
        TIAOJIE_DATABASE_URL=url,
        TIAOJIE_HTTP_PORT=str(port),
        TIAOJIE_DATA_DIR=data_dir,
        TIAOJIE_SECRET_KEY="scale-bench",
        TIAOJIE_LOG_LEVEL="WARNING",
        TIAOJIE_SWEEP_SECONDS="0",
        TIAOJIE_CHAT_LOCK="1" if chat_lock else "0",
    )
    supervisor = start_tiaojie(env, workers)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("tiaojie run never answered")
                await asyncio.sleep(0.5)
        await worker_pids(port, workers)  # every worker up
        owner = psutil.Process(supervisor.pid)
        worker_processes = owner.children(recursive=True) or [owner]
        me = psutil.Process()
        # Warm-up (not measured): SQL compiled, caches filled, in every worker.
        await load(f"{base}/webhooks/rest/webhook", 2 * workers * 4, 4 * workers, "warm")
        results = []
        for concurrency in args.concurrency:
            before = await counters(port)
            cpu_before, me_before = cpu_seconds(worker_processes), cpu_seconds([me])
            busy_before = machine_busy_seconds()
            result = await load(
                f"{base}/webhooks/rest/webhook", args.conversations, concurrency, f"c{concurrency}"
            )
            cpu_after, me_after = cpu_seconds(worker_processes), cpu_seconds([me])
            busy_after = machine_busy_seconds()
            after = await counters(port)
            messages = max(1, int(result["messages"]))

            def delta(key: str) -> float:
                return after[key] - before[key]  # noqa: B023 (used at once, in this loop)

            result.update(
                concurrency=concurrency,
                worker_cpu_ms_per_message=(cpu_after - cpu_before) * 1000 / messages,
                load_cpu_ms_per_message=(me_after - me_before) * 1000 / messages,
                # the rest of the machine's busy time: PostgreSQL (and any other process)
                other_cpu_ms_per_message=(
                    (busy_after - busy_before) - (cpu_after - cpu_before) - (me_after - me_before)
                ) * 1000 / messages,
                cores_busy=(busy_after - busy_before) / result["seconds"],
                transactions_per_message=delta("transactions") / messages,
                statements_per_message=delta("statements") / messages,
                lock_waits=delta("lock_waits"),
                lock_wait_ms=delta("lock_wait_seconds") * 1000,
                retries=delta("retries"),
            )
            results.append(result)
            print(
                f"workers {workers} ({'lock' if chat_lock else 'version'}) "
                f"concurrency {concurrency:>3}: {result['messages_per_s']:7.1f} msg/s  "
                f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:7.1f} ms  "
                f"cpu ms/msg: workers {result['worker_cpu_ms_per_message']:.2f}, load "
                f"{result['load_cpu_ms_per_message']:.2f}, postgres+other "
                f"{result['other_cpu_ms_per_message']:.2f}; cores busy {result['cores_busy']:.2f}  "
                f"xact {result['transactions_per_message']:.2f}/msg  "
                f"stmts {result['statements_per_message']:.1f}/msg  "
                f"lock waits {result['lock_waits']:.0f} ({result['lock_wait_ms']:.0f} ms)  "
                f"retries {result['retries']:.0f}  refused {result['refused']}",
                flush=True,
            )
        return {"workers": workers, "chat_lock": chat_lock, "runs": results}
    finally:
        await asyncio.to_thread(stop_tiaojie, supervisor)
        await drop_database(args.pg, name)


def stop_tiaojie(supervisor: subprocess.Popen[bytes]) -> None:
    supervisor.send_signal(signal.SIGTERM)
    try:
        supervisor.wait(timeout=60)
    except subprocess.TimeoutExpired:
        supervisor.kill()


async def main(args: argparse.Namespace) -> None:
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}", flush=True)
    summary: dict[str, Any] = {"workers": {}, "refused": 0, "version_check_2": None}
    for workers in args.workers:
        run = await one_run(args, workers, chat_lock=True)
        best = max(r["messages_per_s"] for r in run["runs"])
        summary["workers"][str(workers)] = round(best, 1)
        summary["refused"] += sum(int(r["refused"]) for r in run["runs"])
    if args.compare_version and 2 in args.workers:
        run = await one_run(args, 2, chat_lock=False)
        summary["version_check_2"] = round(max(r["messages_per_s"] for r in run["runs"]), 1)
        summary["refused"] += sum(int(r["refused"]) for r in run["runs"])
    if "1" in summary["workers"] and "2" in summary["workers"]:
        summary["speedup_2"] = round(summary["workers"]["2"] / summary["workers"]["1"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2, 4])  # fmt: skip
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                        default=[4, 16, 32])  # fmt: skip
    parser.add_argument("--conversations", type=int, default=60)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "TIAOJIE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--no-version-run", dest="compare_version", action="store_false")
    asyncio.run(main(parser.parse_args()))
