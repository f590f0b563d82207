"""Hot swap across processes: two `tiaojie run` on one PostgreSQL under a steady stream.

The issue's bar: 200 messages a second through the REST channel while a model is
activated, 0 failures, both processes on the new version within 10 s. The rate is set by
``TIAOJIE_SWAP_TEST_RATE`` (default 200, the bar; measured 2026-11-30: 889 messages sent
at 200/s, 199 answered a second, both processes switched after 1.1 and 1.3 s, 0
failures). The line printed with ``-s`` gives the rate answered and each switch time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from actions.retraining import activate
from storage.db import create_engine, session_factory
from storage.nlu_registry import ModelStatus, register
from tests.support.processes import free_port, health

ROOT = Path(__file__).resolve().parent.parent
#: Messages per second over both processes: the issue's bar. The stream is open-loop (sent
#: on time whatever the answers), so a slower machine shows as queued answers, and as
#: failures only past the 30 s timeout. TIAOJIE_SWAP_TEST_RATE lowers it on a machine
#: shared with other jobs.
RATE = int(os.environ.get("TIAOJIE_SWAP_TEST_RATE", "200"))
MESSAGES = ["房东不退押金三千块", "老板拖欠工资八千", "楼上邻居半夜太吵", "外卖站长扣我钱"]

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(400)]


async def test_two_processes_switch_under_load(
    pg_url: str, nlu_model_dir: Path, tmp_path: Path
) -> None:
    source = await asyncio.to_thread(lambda: next(nlu_model_dir.glob("nlu-*")))
    candidate = tmp_path / "nlu-swapped"
    await asyncio.to_thread(shutil.copytree, source, candidate)
    ports = [free_port(), free_port()]
    processes = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_"))}
    env.update(
        TIAOJIE_DATABASE_URL=pg_url,
        TIAOJIE_MODEL_DIR=str(nlu_model_dir),
        TIAOJIE_DATA_DIR=str(tmp_path / "var"),
        TIAOJIE_SECRET_KEY="swap-test",
        TIAOJIE_SWEEP_SECONDS="0",
        TIAOJIE_MODEL_POLL_SECONDS="1",
        TIAOJIE_LOG_LEVEL="WARNING",
    )
    engine = create_engine(pg_url)
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            aiohttp.ClientSession(timeout=timeout) as load,
        ):
            for port in ports:  # one after the other: the first registers the model
                processes.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "bot",
                        "run",
                        cwd=ROOT,
                        env={**env, "TIAOJIE_HTTP_PORT": str(port)},
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                )
                deadline = time.monotonic() + 120
                while await health(http, port) is None:
                    assert time.monotonic() < deadline, "tiaojie run never answered"
                    await asyncio.sleep(0.3)
            print(f"both up after {time.monotonic() - deadline + 120:.1f} s")
            before = [(await health(http, p) or {})["nlu"]["version"] for p in ports]
            assert before[0] == before[1] and before[0] != "nlu-swapped"

            failures: list[str] = []
            done: list[float] = []
            sent = 0
            stop = asyncio.Event()

            async def one(n: int) -> None:
                payload = {"sender": f"load-{n % 60}", "message": MESSAGES[n % len(MESSAGES)]}
                url = f"http://127.0.0.1:{ports[n % 2]}/webhooks/rest/webhook"
                try:
                    async with load.post(url, json=payload) as response:
                        body = await response.json()
                        if response.status != 200 or not body:
                            failures.append(f"{response.status}: {body}")
                        done.append(time.perf_counter())
                except (aiohttp.ClientError, TimeoutError) as error:
                    failures.append(repr(error))

            async def stream() -> None:
                nonlocal sent
                started = time.perf_counter()
                pending: set[asyncio.Task[None]] = set()
                while not stop.is_set():
                    due = int((time.perf_counter() - started) * RATE)
                    while sent < due:
                        task = asyncio.create_task(one(sent))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                        sent += 1
                    await asyncio.sleep(0.005)
                await asyncio.gather(*pending)

            load_started = time.perf_counter()
            loader = asyncio.create_task(stream())
            await asyncio.sleep(2)
            async with session_factory(engine).begin() as session:
                row = await register(
                    session,
                    "nlu-swapped",
                    trained_by="t",
                    status=ModelStatus.CANDIDATE,
                    path=str(candidate),
                )
                row.gate = {"passed": True}
                await activate(session, "nlu-swapped", by="admin")
            activated = time.perf_counter()
            switched: dict[int, float] = {}
            while len(switched) < 2 and time.perf_counter() - activated < 15:
                for port in ports:
                    body = await health(http, port)
                    if port not in switched and body and body["nlu"]["version"] == "nlu-swapped":
                        switched[port] = time.perf_counter() - activated
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)
            stop.set()
            stopped = time.perf_counter()
            await loader
        answered = sum(1 for t in done if t <= stopped)
        print(
            f"sent {sent} at {RATE}/s over {stopped - load_started:.1f} s; "
            f"{answered / (stopped - load_started):.0f} answered/s; "
            f"switched after {switched}; failures {len(failures)}"
        )
        assert failures == []
        assert sorted(switched) == sorted(ports)
        assert max(switched.values()) < 10
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), timeout=30)
        await engine.dispose()
