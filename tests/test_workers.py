"""Several workers on one PostgreSQL (issue 16): real `tiaojie run` processes, real HTTP.

Each test starts worker processes exactly as the supervisor does (``python -m bot run
--worker``), on their own ports so a test can choose which worker gets which delivery,
and one test runs the supervisor itself (``--workers 2``) on one shared port.

What is checked: a delivery sent to two workers at once is handled once and both get a
truthful answer; a resident's messages split across workers are all kept, in order,
none refused; ``kill -9`` of a worker mid-burst loses and duplicates nothing when the
bridge retries with its message id; the leader (Telegram poller and scheduler) is
replaced within 15 s; SIGTERM during a burst leaves no message half handled; the
supervisor refuses SQLite, restarts a dead worker and drains on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from actions import casework
from actions.intake import file_case
from storage.db import create_engine, session_factory
from storage.models import Case, CaseEvent, Conversation, ProcessedUpdate
from storage.people import add_mediator, get_or_create_resident
from tests.support.bot_api import BotApiStandIn
from tests.support.processes import free_port, health

ROOT = Path(__file__).resolve().parent.parent
URL = "http://127.0.0.1:{port}/webhooks/rest/webhook"
NOT_SAVED = ("没有保存", "not saved", "请再发", "send it again")

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]


def _env(pg_url: str, model_dir: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_"))}
    env.update(
        TIAOJIE_DATABASE_URL=pg_url,
        TIAOJIE_MODEL_DIR=str(model_dir),
        TIAOJIE_DATA_DIR=str(tmp_path / "var"),
        TIAOJIE_SECRET_KEY="workers-test",
        TIAOJIE_LOG_LEVEL="WARNING",
        NO_PROXY="127.0.0.1,localhost",
        **extra,
    )
    return env


class Workers:
    """Worker processes started as the supervisor starts them, each on its own port."""

    def __init__(self, env: dict[str, str], http: aiohttp.ClientSession) -> None:
        self.env = env
        self.http = http
        self.ports: list[int] = []
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, count: int) -> None:
        for _ in range(count):
            await self.add()

    async def add(self) -> int:
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--worker", "--grace", "20",
            cwd=ROOT,
            env={**self.env, "TIAOJIE_HTTP_PORT": str(port)},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.ports.append(port)
        self.processes.append(process)
        deadline = time.monotonic() + 120
        while await health(self.http, port) is None:
            assert process.returncode is None, "a worker exited at start"
            assert time.monotonic() < deadline, "a worker never answered"
            await asyncio.sleep(0.3)
        return len(self.ports) - 1

    async def post(self, worker: int, payload: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.http.post(URL.format(port=self.ports[worker]), json=payload) as response:
            assert response.status == 200, await response.text()
            return list(await response.json())

    async def leaders(self) -> list[int]:
        found = []
        for index, port in enumerate(self.ports):
            if self.processes[index].returncode is not None:
                continue
            body = await health(self.http, port)
            if body and body.get("leader", {}).get("leader"):
                found.append(index)
        return found

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for process in self.processes:
            await asyncio.wait_for(process.wait(), timeout=60)


@asynccontextmanager
async def workers(env: dict[str, str], count: int) -> AsyncIterator[Workers]:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        running = Workers(env, http)
        try:
            await running.start(count)
            yield running
        finally:
            await running.stop()


def payloads(body: list[dict[str, Any]]) -> list[str]:
    return [b["payload"] for item in body for b in item.get("buttons", [])]


async def walk_to_review(running: Workers, who: str) -> None:
    """A whole intake up to the review, each message to the other worker."""
    turn = 0

    async def send(message: str) -> list[dict[str, Any]]:
        nonlocal turn
        turn += 1
        return await running.post(turn % 2, {"sender": who, "message": message})

    body = await send("楼上邻居天天半夜装修,吵得睡不着")
    for _ in range(16):
        buttons = payloads(body)
        if "submit" in buttons:
            return
        if any(p.startswith("street:") for p in buttons):
            body = await send("street:xixiang")
        elif any(p.startswith("comm:") for p in buttons):
            body = await send("comm:")
        elif buttons[:2] == ["yes", "no"]:
            body = await send("yes")
        elif any(p.startswith("cat:") for p in buttons):
            body = await send("cat:dispute_neighbor")
        elif any(p.startswith("choice:") for p in buttons):
            body = await send(next(p for p in buttons if p.startswith("choice:")))
        elif "skip" in buttons:
            body = await send("skip")
        else:
            body = await send("楼上的王先生")
    raise AssertionError(f"no review reached: {body}")


async def count(pg_url: str, statement: Any) -> int:
    engine = create_engine(pg_url)
    try:
        async with session_factory(engine)() as session:
            return int((await session.execute(statement)).scalar_one())
    finally:
        await engine.dispose()


async def case_in_mediation(pg_url: str, who: str) -> str:
    """A REST resident's case, claimed by a mediator: the resident's words are relayed."""
    engine = create_engine(pg_url)
    from bot.runtime import Store
    from storage.phone import PhoneVault

    store = Store(engine, session_factory(engine), PhoneVault("workers-test"))
    try:
        async with store.sessions.begin() as session:
            resident = await get_or_create_resident(session, "rest", who)
            filed = await file_case(
                session,
                {"words": ["漏水"], "category": "dispute_neighbor", "street": "xixiang",
                 "community": None, "consent": True},
                resident=resident, channel="rest", chat_id=who, language="zh",
                vault=store.vault, reason="submit",
            )  # fmt: skip
            mediator = await add_mediator(
                session,
                channel="web",
                external_id=f"m-{who}",
                display_alias="阿芳",
                centre_code="xixiang",
            )
            await casework.claim(session, filed.reference, mediator)
        return filed.reference
    finally:
        await engine.dispose()


async def relayed_texts(pg_url: str, reference: str) -> list[str]:
    engine = create_engine(pg_url)
    try:
        async with session_factory(engine)() as session:
            rows = (
                await session.execute(
                    select(CaseEvent.data)
                    .join(Case, Case.id == CaseEvent.case_id)
                    .where(Case.reference == reference, CaseEvent.kind == "message_in")
                    .order_by(CaseEvent.id)
                )
            ).scalars()
            return [str(data.get("text")) for data in rows]
    finally:
        await engine.dispose()


# ------------------------------------------------------------------------------ tests


def test_several_workers_are_refused_on_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIAOJIE_")}
    env.update(
        TIAOJIE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/one.db", TIAOJIE_LANGUAGE="en"
    )
    done = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--workers", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "PostgreSQL" in done.stderr + done.stdout
    assert not (tmp_path / "one.db").exists() or "Traceback" not in done.stderr


@pytest.mark.parametrize("chat_lock", ["0", "1"], ids=["version-check", "advisory-lock"])
async def test_a_delivery_at_two_workers_at_once_is_handled_once(
    pg_url: str, nlu_model_dir: Path, tmp_path: Path, chat_lock: str
) -> None:
    env = _env(
        pg_url, nlu_model_dir, tmp_path, TIAOJIE_SWEEP_SECONDS="0", TIAOJIE_CHAT_LOCK=chat_lock
    )
    async with workers(env, 2) as running:
        # With the bridge's message id: one handling, the same answer to both.
        await walk_to_review(running, "dup-1")
        submit = {"sender": "dup-1", "message": "submit", "message_id": "tap-1"}
        first, second = await asyncio.gather(running.post(0, submit), running.post(1, submit))
        texts = " ".join(item["text"] for item in first)
        assert re.search(r"BA-\d{8}-\d{4}", texts), first
        assert [i["text"] for i in second] == [i["text"] for i in first]
        # Without an id (a double tap): one case, and neither answer says "not saved".
        await walk_to_review(running, "dup-2")
        tap = {"sender": "dup-2", "message": "submit"}
        answers = await asyncio.gather(running.post(0, tap), running.post(1, tap))
        every = " ".join(item["text"] for body in answers for item in body)
        assert not any(words in every for words in NOT_SAVED), every
        assert re.search(r"BA-\d{8}-\d{4}", every), answers
    assert await count(pg_url, select(func.count()).select_from(Case)) == 2
    assert (
        await count(
            pg_url, select(func.count()).select_from(ProcessedUpdate).where(
                ProcessedUpdate.source == "rest")
        )
        == 1
    )


@pytest.mark.parametrize("chat_lock", ["0", "1"], ids=["version-check", "advisory-lock"])
async def test_bursts_split_across_workers_are_all_kept_in_order(
    pg_url: str, nlu_model_dir: Path, tmp_path: Path, chat_lock: str
) -> None:
    residents = [f"burst-{n}" for n in range(8)]
    references = {who: await case_in_mediation(pg_url, who) for who in residents}
    env = _env(
        pg_url, nlu_model_dir, tmp_path, TIAOJIE_SWEEP_SECONDS="0", TIAOJIE_CHAT_LOCK=chat_lock
    )
    messages = 15
    async with workers(env, 2) as running:

        async def one_resident(who: str, offset: int) -> list[list[dict[str, Any]]]:
            answers = []
            for n in range(messages):  # in order, each to the other worker
                body = {"sender": who, "message": f"补充第{n:02d}条:昨晚又漏水了"}
                answers.append(await running.post((n + offset) % 2, body))
            return answers

        answered = await asyncio.gather(
            *(one_resident(who, i) for i, who in enumerate(residents))
        )
        # And a burst that does not wait for answers, split across both workers.
        at_once = await asyncio.gather(
            *(
                running.post(n % 2, {"sender": residents[0], "message": f"同时{n:02d}"})
                for n in range(20)
            )
        )
    flat = " ".join(i["text"] for bodies in answered for body in bodies for i in body)
    flat += " ".join(i["text"] for body in at_once for i in body)
    assert not any(words in flat for words in NOT_SAVED)
    for who in residents:
        texts = await relayed_texts(pg_url, references[who])
        ordered = [t for t in texts if t.startswith("补充")]
        assert ordered == [f"补充第{n:02d}条:昨晚又漏水了" for n in range(messages)], who
    first = await relayed_texts(pg_url, references[residents[0]])
    burst = [t for t in first if t.startswith("同时")]
    assert sorted(burst) == [f"同时{n:02d}" for n in range(20)]  # all kept, none twice


async def test_kill_minus_nine_mid_burst_loses_and_duplicates_nothing(
    pg_url: str, nlu_model_dir: Path, tmp_path: Path
) -> None:
    residents = [f"kill-{n}" for n in range(6)]
    references = {who: await case_in_mediation(pg_url, who) for who in residents}
    env = _env(pg_url, nlu_model_dir, tmp_path, TIAOJIE_SWEEP_SECONDS="0")
    messages = 30
    retried = 0
    async with workers(env, 2) as running:
        killed = asyncio.Event()
        in_flight = [0, 0]

        async def deliver(who: str, n: int) -> None:
            nonlocal retried
            payload = {"sender": who, "message": f"第{n:02d}句", "message_id": f"{who}-{n}"}
            target = n % 2
            for _ in range(20):  # what a bridge does: retry, same id, the other worker
                if target == 1 and killed.is_set():
                    target = 0
                in_flight[target] += 1
                try:
                    await running.post(target, payload)
                    return
                except (aiohttp.ClientError, TimeoutError, AssertionError):
                    retried += 1
                    await asyncio.sleep(0.2)
                finally:
                    in_flight[target] -= 1
                target = 1 - target
            raise AssertionError(f"{who} message {n} never answered")

        async def one_resident(who: str) -> None:
            for n in range(messages):
                await deliver(who, n)

        async def killer() -> None:
            await asyncio.sleep(1.5)
            for _ in range(100_000):  # kill it with messages in its hands
                if in_flight[1] >= 2:
                    break
                await asyncio.sleep(0.001)
            running.processes[1].send_signal(signal.SIGKILL)
            killed.set()

        await asyncio.gather(killer(), *(one_resident(who) for who in residents))
    for who in residents:
        texts = await relayed_texts(pg_url, references[who])
        assert texts == [f"第{n:02d}句" for n in range(messages)], who  # 0 lost, 0 twice
    print(f"retried deliveries after kill -9: {retried}")
    assert retried > 0  # the kill did catch messages in flight


async def test_the_leader_is_replaced_within_15_seconds(
    pg_url: str, nlu_model_dir: Path, tmp_path: Path
) -> None:
    async with BotApiStandIn() as api:
        env = _env(
            pg_url,
            nlu_model_dir,
            tmp_path,
            TIAOJIE_SWEEP_SECONDS="1",
            TELEGRAM_BOT_TOKEN=api.token,
            TELEGRAM_BASE_URL=api.base_url,
            TELEGRAM_BASE_FILE_URL=api.base_file_url,
        )
        async with workers(env, 2) as running:
            deadline = time.monotonic() + 20
            while len(leaders := await running.leaders()) != 1:
                assert time.monotonic() < deadline, f"leaders: {leaders}"
                await asyncio.sleep(0.3)
            old = leaders[0]
            api.push_update(api.text_update(chat_id=501, text="/start"))
            await api.wait_for("sendMessage", timeout=20)
            running.processes[old].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await running.processes[old].wait()
            survivor = 1 - old
            while await running.leaders() != [survivor]:
                assert time.monotonic() - killed_at < 15, "no new leader within 15 s"
                await asyncio.sleep(0.2)
            elected_after = time.monotonic() - killed_at
            # The new leader polls Telegram: a message sent now is answered.
            before = len(api.calls_to("sendMessage"))
            api.push_update(api.text_update(chat_id=502, text="/start"))
            while len(api.calls_to("sendMessage")) == before:
                assert time.monotonic() - killed_at < 15, "nobody polls Telegram"
                await asyncio.sleep(0.2)
            polled_after = time.monotonic() - killed_at
            # ... and runs the scheduler's jobs.
            body = await health(running.http, running.ports[survivor])
            assert body and body["scheduler"]["running"] is True
            runs = body["scheduler"]["runs"]["sweep"]
            await asyncio.sleep(2.5)
            body = await health(running.http, running.ports[survivor])
            assert body and body["scheduler"]["runs"]["sweep"] > runs
        print(f"new leader after {elected_after:.1f} s, polling after {polled_after:.1f} s")
        assert polled_after < 15


async def test_sigterm_during_a_burst_leaves_nothing_half_handled(
    pg_url: str, nlu_model_dir: Path, tmp_path: Path
) -> None:
    residents = [f"term-{n}" for n in range(6)]
    env = _env(pg_url, nlu_model_dir, tmp_path, TIAOJIE_SWEEP_SECONDS="0")
    outcomes: dict[str, list[str]] = {who: [] for who in residents}
    async with workers(env, 1) as running:

        async def one_resident(who: str) -> None:
            for _ in range(40):
                payload = {"sender": who, "message": "/status"}
                try:
                    body = await running.post(0, payload)
                except (aiohttp.ClientError, TimeoutError, AssertionError):
                    outcomes[who].append("refused")  # not accepted: the bridge resends
                    return
                texts = " ".join(i["text"] for i in body)
                outcomes[who].append("resend" if any(w in texts for w in NOT_SAVED) else "ok")

        async def terminate() -> None:
            await asyncio.sleep(1.0)
            running.processes[0].send_signal(signal.SIGTERM)

        await asyncio.gather(terminate(), *(one_resident(who) for who in residents))
        code = await asyncio.wait_for(running.processes[0].wait(), timeout=60)
    assert code == 0
    accepted = sum(o.count("ok") for o in outcomes.values())
    assert accepted > 0
    # Every answered message is saved: each conversation's version counts its messages.
    engine = create_engine(pg_url)
    try:
        async with session_factory(engine)() as session:
            versions = dict(
                (
                    await session.execute(
                        select(Conversation.chat_id, Conversation.version).where(
                            Conversation.channel == "rest"
                        )
                    )
                ).all()
            )
    finally:
        await engine.dispose()
    for who in residents:
        assert versions.get(who, 0) == outcomes[who].count("ok"), (who, outcomes[who])


async def test_the_supervisor_shares_one_port_restarts_and_drains(
    pg_url: str, nlu_model_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = _env(pg_url, nlu_model_dir, tmp_path, TIAOJIE_HTTP_PORT=str(port))
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--workers", "2", "--grace", "10",
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

            async def pids(rounds: int = 40) -> set[str]:
                seen = set()
                for _ in range(rounds):
                    body = await health(http, port)
                    if body:
                        seen.add(str(body["leader"]["holder"]).split(":")[1])
                return seen

            deadline = time.monotonic() + 150
            seen: set[str] = set()
            while len(seen) < 2:
                assert time.monotonic() < deadline, f"workers seen: {seen}"
                seen |= await pids(10)
                await asyncio.sleep(0.3)
            victim = sorted(seen)[0]
            os.kill(int(victim), signal.SIGKILL)
            deadline = time.monotonic() + 150
            while True:
                now = await pids(10)
                if len(now) == 2 and victim not in now:
                    break  # the supervisor started a new worker in its place
                assert time.monotonic() < deadline, f"no restart: {now}"
                await asyncio.sleep(0.5)
        supervisor.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(supervisor.wait(), timeout=60) == 0
        for pid in now:  # the workers are gone too
            with pytest.raises(ProcessLookupError):
                os.kill(int(pid), 0)
    finally:
        if supervisor.returncode is None:
            supervisor.kill()
            await supervisor.wait()
