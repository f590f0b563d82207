"""Intake throughput through the REST channel, beside a bare aiohttp echo (the ceiling).

Runs complete intake conversations (description → category → questions → location →
phone → review, consent given by its submit button → filed) against the real application
on a fresh SQLite file, with the real built-in NLU, all in this one process, after one
unmeasured warm-up conversation per concurrent client; then sends the same number of messages to a
handler that only echoes. Prints messages per second, conversations
per second and per-message latency p50/p99 for both, and the ratio.

    .venv/bin/python benchmarks/dialogue_bench.py [--conversations 200] [--concurrency 8]

Targets on the 2-core build machine: ≥ 300 messages/s, p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

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

OPENINGS = [
    "老板拖欠我们三个月工资一共八千块,厂在福永凤凰社区,十几个工友都没拿到",
    "楼上邻居天天半夜吵,说了好几次都不听,我住西乡固戍",
    "房东不退押金3000元,我已经搬走一个月了,在沙井",
    "我在美团送外卖,站长无故扣了我2000块",
    "My landlord in Xixiang keeps my 2000 yuan deposit and won't answer my calls",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def next_message(body: list[dict[str, Any]]) -> str | None:
    """What a resident following the buttons would send next; None once filed."""
    texts = " ".join(item["text"] for item in body)
    if "BA-" in texts and ("案件编号" in texts or "case number" in texts):
        return None
    buttons = [b["payload"] for item in body for b in item.get("buttons", [])]
    if "submit" in buttons:
        return "submit"
    if buttons[:2] == ["yes", "no"]:
        return "yes"
    for prefix in ("cat:", "choice:", "street:", "comm:"):
        for payload in buttons:
            if payload.startswith(prefix) and payload not in ("street:none",):
                return payload
    if "skip" in buttons and any(r in texts for r in ("手机", "mobile")):
        return "13800138000"
    if "skip" in buttons:
        return "skip"
    return "宏达电子厂" if any("\u4e00" <= c <= "\u9fff" for c in texts) else "Mr Wang"


async def conversation(
    http: aiohttp.ClientSession, url: str, sender: str, opening: str, latencies: list[float]
) -> int:
    message: str | None = opening
    sent = 0
    while message is not None and sent < 40:
        started = time.perf_counter()
        async with http.post(url, json={"sender": sender, "message": message}) as response:
            body = await response.json()
        latencies.append(time.perf_counter() - started)
        sent += 1
        message = next_message(body)
    if message is not None:
        raise RuntimeError(f"conversation {sender} did not finish: {body}")
    return sent


async def run_intake(url: str, conversations: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(conversations):
        queue.put_nowait(number)
    messages = 0

    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            nonlocal messages
            while not queue.empty():
                number = queue.get_nowait()
                opening = OPENINGS[number % len(OPENINGS)]
                sent = await conversation(http, url, f"bench-{number}", opening, latencies)
                messages += sent

        # Warm-up, not measured: the first conversations compile SQL statements and fill
        # caches once per process; steady-state latency is what residents see.
        await asyncio.gather(
            *(
                conversation(http, url, f"warm-{n}", OPENINGS[n % len(OPENINGS)], [])
                for n in range(concurrency)
            )
        )
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "messages": messages,
        "seconds": seconds,
        "messages_per_s": messages / seconds,
        "conversations_per_s": conversations / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def echo(request: web.Request) -> web.Response:
    payload = await request.json()
    return web.json_response([{"recipient_id": payload["sender"], "text": payload["message"]}])


async def run_echo(messages: int, concurrency: int) -> dict[str, float]:
    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/webhooks/rest/webhook"
    latencies: list[float] = []
    per_worker = messages // concurrency
    try:
        async with aiohttp.ClientSession() as http:

            async def worker(number: int) -> None:
                for _ in range(per_worker):
                    started = time.perf_counter()
                    async with http.post(url, json={"sender": f"e{number}", "message": "hi"}) as r:
                        await r.json()
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(worker(n) for n in range(concurrency)))
            seconds = time.perf_counter() - started
    finally:
        await runner.cleanup()
    return {
        "messages": len(latencies),
        "seconds": seconds,
        "messages_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def main(conversations: int, concurrency: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="tiaojie-bench-"))
    url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
    engine = create_engine(url)
    async with session_factory(engine).begin() as session:
        await load_directory(session, parse_directory(ROOT / "storage/data/baoan_centres.yml"))
    await engine.dispose()
    nlu = ensure_builtin(Path(os.environ.get("TIAOJIE_MODEL_DIR", "models")))
    settings = load_settings(database_url=url, data_dir=workdir / "var")
    store = Store.open(settings)
    app = create_app(settings, nlu, threshold=nlu.config.threshold, store=store)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        intake = await run_intake(
            f"http://127.0.0.1:{port}/webhooks/rest/webhook", conversations, concurrency
        )
    finally:
        await runner.cleanup()
        await store.close()
    ceiling = await run_echo(int(intake["messages"]), concurrency)

    print(
        f"tiaojie dialogue benchmark — {time.strftime('%Y-%m-%d')} — "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{'':24}{'intake (SQLite)':>18}{'echo ceiling':>16}")
    print(f"{'messages':24}{intake['messages']:>18.0f}{ceiling['messages']:>16.0f}")
    print(f"{'messages/s':24}{intake['messages_per_s']:>18.1f}{ceiling['messages_per_s']:>16.1f}")
    print(f"{'conversations/s':24}{intake['conversations_per_s']:>18.1f}{'-':>16}")
    print(f"{'latency p50 (ms)':24}{intake['p50_ms']:>18.2f}{ceiling['p50_ms']:>16.2f}")
    print(f"{'latency p99 (ms)':24}{intake['p99_ms']:>18.2f}{ceiling['p99_ms']:>16.2f}")
    ratio = intake["messages_per_s"] / ceiling["messages_per_s"]
    print(f"intake / ceiling throughput: {ratio:.2f}")
    verdict = intake["messages_per_s"] >= 300 and intake["p99_ms"] <= 50
    print(f"targets (≥ 300 messages/s, p99 ≤ 50 ms): {'met' if verdict else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.conversations, arguments.concurrency))
