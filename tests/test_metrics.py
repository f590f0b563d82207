"""``/metrics``: the real app, real messages through its channels, the real exposition
parsed with prometheus-client's own parser; the access rule; multiprocess mode across
real processes; Telegram's and WeChat's API errors against their stand-ins; JSON logs
of a real ``tiaojie run``.

Counters are process-wide and other tests move them too, so every assertion compares
two scrapes around what the test did.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from actions.metrics import count_on_commit
from bot import metrics_http
from bot.channels.wechat_api import WeChatApi, WeChatApiError
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import DESK_SERVICE, create_app
from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage import people
from storage.models import CaseStatus, utcnow
from tests.support.wechat_api import APP_ID, APP_SECRET, WeChatApiStandIn

ROOT = Path(__file__).resolve().parent.parent
REST = "/webhooks/rest/webhook"
REFERENCE = re.compile(r"BA-\d{8}-\d{4}")
METRICS_TOKEN = "metrics-token-0123456789"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# ----------------------------------------------------------------------- helpers


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (sample name, sorted labels)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample_names(text: str) -> set[str]:
    """Every series name a family of this exposition can have, sampled yet or not."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent): all of ``labels`` must match exactly."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


async def scrape(http: TestClient, token: str | None = None) -> tuple[Samples, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.get("/metrics", headers=headers)
    text = await response.text()
    assert response.status == 200, text
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(text), text


async def send(http: TestClient, sender: str, message: str) -> list[dict[str, Any]]:
    response = await http.post(REST, json={"sender": sender, "message": message})
    assert response.status == 200, await response.text()
    return list(await response.json())


def next_message(body: list[dict[str, Any]]) -> str | None:
    """What a resident following the buttons sends next; None once the case is filed."""
    texts = " ".join(item["text"] for item in body)
    if "案件编号" in texts or "case number" in texts:
        return None
    buttons = [b["payload"] for item in body for b in item.get("buttons", [])]
    if "submit" in buttons:
        return "submit"
    if buttons[:2] == ["yes", "no"]:
        return "yes"
    for prefix in ("cat:", "choice:", "street:", "comm:"):
        for payload in buttons:
            if payload.startswith(prefix) and payload != "street:none":
                return payload
    if "skip" in buttons and "手机" in texts:
        return "13800138000"
    return "skip" if "skip" in buttons else "宏达电子厂"


@dataclass
class Intake:
    """A full intake through the REST channel: the reference and what was exchanged."""

    reference: str
    sent: int
    received: int
    texts: int


async def full_intake(http: TestClient, sender: str, opening: str) -> Intake:
    message: str | None = opening
    sent = received = texts = 0
    body: list[dict[str, Any]] = []
    while message is not None:
        assert sent < 40, body
        body = await send(http, sender, message)
        sent += 1
        received += len(body)
        texts += 0 if next_is_button(message) else 1
        message = next_message(body)
    found = REFERENCE.search(" ".join(item["text"] for item in body))
    assert found, body
    return Intake(found.group(0), sent, received, texts)


def next_is_button(message: str) -> bool:
    from bot.channels.text_input import PAYLOAD

    return bool(PAYLOAD.match(message.strip()))


def counted(name: str, **labels: str) -> float:
    """This process's value of one series (0 before it was first moved)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Bridge:
    """A callback bridge endpoint on 127.0.0.1 that records what tiaojie posts."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)

    async def wait(self, count: int, within: float = 15) -> None:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} arrived"
            await asyncio.sleep(0.02)


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    port = _free_port()
    state = Bridge(f"http://127.0.0.1:{port}/bridge")

    async def collect(request: web.Request) -> web.Response:
        state.received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/bridge", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state
    await runner.cleanup()


@pytest.fixture
async def serve(nlu: NLUBackend, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start the real app (real server on a port) on a database URL with overrides."""
    opened: list[tuple[TestClient, Store]] = []

    async def make(url: str, **overrides: Any) -> TestClient:
        overrides.setdefault("sweep_seconds", 0)
        settings = load_settings(database_url=url, data_dir=tmp_path / "var", **overrides)
        store = Store.open(settings)
        client = TestClient(TestServer(create_app(settings, nlu, store=store)))
        await client.start_server()
        opened.append((client, store))
        return client

    yield make
    for client, store in opened:
        await client.close()
        await store.close()


# ------------------------------------------------------------ messages and casework


async def test_messages_per_channel_parse_step_and_database(
    serve: Callable[..., Any], db_url: str, bridge: Bridge
) -> None:
    http = await serve(db_url, callback_url=bridge.url)
    before, _ = await scrape(http)
    # Three messages through the REST channel: two typed texts and one button.
    received = 0
    received += len(await send(http, "m-rest-1", "楼上邻居天天半夜吵,说了好几次都不听"))
    received += len(await send(http, "m-rest-1", "yes"))
    received += len(await send(http, "m-rest-1", "他们家在装修,每天晚上十一点以后"))
    # Two through Rasa's callback channel (answered by POSTs to the bridge).
    for words in ("房东不退押金三千块", "你好"):
        response = await http.post(
            "/webhooks/callback/webhook", json={"sender": "m-cb-1", "message": words}
        )
        assert response.status == 200
    # Both handled (the step histogram moved), then every reply reached the bridge.
    deadline = time.monotonic() + 15
    while True:
        after, _ = await scrape(http)
        handled = value(after, "tiaojie_dialogue_step_seconds_count", channel="callback") - value(
            before, "tiaojie_dialogue_step_seconds_count", channel="callback"
        )
        out = value(
            after, "tiaojie_messages_out_total", channel="callback", source="dialogue"
        ) - value(before, "tiaojie_messages_out_total", channel="callback", source="dialogue")
        if handled == 2 and len(bridge.received) == out:
            break
        assert time.monotonic() < deadline, (handled, out, len(bridge.received))
        await asyncio.sleep(0.05)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("tiaojie_messages_in_total", channel="rest") == 3
    assert moved("tiaojie_messages_in_total", channel="callback") == 2
    assert moved("tiaojie_messages_out_total", channel="rest", source="dialogue") == received
    assert len(bridge.received) >= 2
    assert moved("tiaojie_messages_in_total", channel="telegram") == 0
    assert moved("tiaojie_dialogue_step_seconds_count", channel="rest") == 3
    assert moved("tiaojie_dialogue_step_seconds_count", channel="callback") == 2
    assert moved("tiaojie_dialogue_step_seconds_sum", channel="rest") > 0
    # The two REST texts and the two callback texts were parsed ("yes" is a button).
    assert moved("tiaojie_nlu_parse_seconds_count") == 4
    buckets = moved("tiaojie_nlu_parse_seconds_bucket", le="+Inf")
    assert buckets == 4
    # The database: statements timed by kind, transactions counted.
    for operation in ("select", "update"):
        assert moved("tiaojie_db_query_seconds_count", operation=operation) > 0, operation
    assert moved("tiaojie_db_query_seconds_sum", operation="select") > 0
    assert moved("tiaojie_db_transactions_total", outcome="commit") > 0


async def test_filed_claimed_escalated_and_queue_depth(
    serve: Callable[..., Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_http, "QUEUE_REFRESH_S", 0.0)
    http = await serve(db_url)
    store: Store = http.app[metrics_http.SCRAPE].store
    before, _ = await scrape(http)
    intake = await full_intake(http, "m-intake-1", "房东不退押金3000元,我已经搬走一个月了,在沙井")
    async with store.sessions() as session:
        case = await case_repo.get_case(session, intake.reference)
        centre = case.centre.code
        listing = await case_repo.list_cases(
            session, centre_ids=[case.centre_id], statuses=[CaseStatus.NEW], page_size=200
        )
        open_new = listing.total
    filed, _ = await scrape(http)
    risk = case.risk_level.value
    assert (
        value(filed, "tiaojie_cases_filed_total", channel="rest", risk=risk)
        - value(before, "tiaojie_cases_filed_total", channel="rest", risk=risk)
        == 1
    )
    assert (
        value(filed, "tiaojie_messages_in_total", channel="rest")
        - value(before, "tiaojie_messages_in_total", channel="rest")
        == intake.sent
    )
    assert value(filed, "tiaojie_queue_depth", centre=centre, status="new") == open_new >= 1
    # Every active centre is listed, zeros included.
    assert value(filed, "tiaojie_queue_depth", centre="baoan", status="in_mediation") == 0
    assert ("tiaojie_queue_depth", (("centre", "baoan"), ("status", "new"))) in filed

    # A mediator of that centre claims it: counted, the queue moves, the resident is
    # told through the REST channel's port (a desk message out).
    async with store.sessions.begin() as session:
        mediator = await people.add_mediator(
            session,
            channel="telegram",
            external_id="990001",
            display_alias="调解员小测",
            centre_code=centre,
        )
    await http.app[DESK_SERVICE].claim(intake.reference, mediator)
    claimed, _ = await scrape(http)
    assert (
        value(claimed, "tiaojie_cases_claimed_total", risk=risk)
        - value(filed, "tiaojie_cases_claimed_total", risk=risk)
        == 1
    )
    assert value(claimed, "tiaojie_queue_depth", centre=centre, status="new") == open_new - 1
    assert value(claimed, "tiaojie_queue_depth", centre=centre, status="claimed") >= 1
    assert (
        value(claimed, "tiaojie_messages_out_total", channel="rest", source="desk")
        - value(filed, "tiaojie_messages_out_total", channel="rest", source="desk")
        == 1
    )

    # A second case nobody claims moves up a level at the sweep.
    await full_intake(http, "m-intake-2", "老板拖欠工资八千块,厂在福永凤凰社区")
    await http.app[DESK_SERVICE].sweep(utcnow() + timedelta(days=10))
    swept, _ = await scrape(http)
    assert (
        value(swept, "tiaojie_cases_escalated_total", reason="unclaimed")
        - value(claimed, "tiaojie_cases_escalated_total", reason="unclaimed")
        >= 1
    )


async def test_store_down_counts_failed_messages_and_errors(
    serve: Callable[..., Any], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away: the resident is asked to send again, and it shows."""
    from tests.test_telegram import bring_back, take_away

    monkeypatch.setattr(metrics_http, "QUEUE_REFRESH_S", 0.0)
    http = await serve(sqlite_url)
    await send(http, "m-down-1", "楼上邻居天天半夜吵")
    before, _ = await scrape(http)
    db_path = Path(sqlite_url.split("///", 1)[1])
    await http.app[metrics_http.SCRAPE].store.engine.dispose()
    take_away(db_path)
    try:
        response = await http.post(REST, json={"sender": "m-down-1", "message": "yes"})
        assert response.status in (200, 503)
        after, _ = await scrape(http)  # /metrics still answers without its store
    finally:
        bring_back(db_path)
    assert (
        value(after, "tiaojie_messages_failed_total", channel="rest", reason="db_unavailable")
        - value(before, "tiaojie_messages_failed_total", channel="rest", reason="db_unavailable")
        == 1
    )
    assert total(after, "tiaojie_db_errors_total") > total(before, "tiaojie_db_errors_total")


async def test_waiting_for_a_chat_lock_another_worker_holds_is_timed(
    serve: Callable[..., Any], db_url: str
) -> None:
    """Another worker holds this chat's advisory lock for 0.5 s: the wait shows."""
    if db_url.startswith("sqlite"):
        pytest.skip("the chat lock is PostgreSQL's advisory lock")
    from bot.intake_service import chat_lock_key
    from storage.db import create_engine

    http = await serve(db_url, chat_lock=True)
    await send(http, "m-lock-1", "楼上邻居天天半夜吵")
    before, _ = await scrape(http)
    other = create_engine(db_url)  # the other worker's connection
    try:
        async with other.begin() as connection:
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": chat_lock_key("rest", "m-lock-1")},
            )
            waiting = asyncio.create_task(send(http, "m-lock-1", "yes"))
            await asyncio.sleep(0.5)
            assert not waiting.done()
        assert await waiting  # answered once the other transaction ended
    finally:
        await other.dispose()
    after, _ = await scrape(http)
    waits = value(after, "tiaojie_chat_lock_wait_seconds_count") - value(
        before, "tiaojie_chat_lock_wait_seconds_count"
    )
    waited = value(after, "tiaojie_chat_lock_wait_seconds_sum") - value(
        before, "tiaojie_chat_lock_wait_seconds_sum"
    )
    assert waits == 1 and waited >= 0.3, (waits, waited)


async def test_model_version_is_shown(serve: Callable[..., Any], sqlite_url: str, nlu) -> None:
    http = await serve(sqlite_url)
    samples, _ = await scrape(http)
    version = (await nlu.health())["model"]
    assert version
    assert value(samples, "tiaojie_nlu_model_info", backend="builtin", version=version) == 1
    # Only the model in use reads 1 (one this process used before would read 0).
    current = [dict(ls) for (n, ls), v in samples.items() if n == "tiaojie_nlu_model_info" and v]
    assert current == [{"backend": "builtin", "version": version}]


async def test_count_on_commit_counts_a_committed_change_once(store: Store) -> None:
    """A transaction retried after a lost race must not count its case twice."""
    counted: list[str] = []
    with pytest.raises(RuntimeError):
        async with store.sessions.begin() as session:
            count_on_commit(session, lambda: counted.append("lost"))
            await session.execute(text("select 1"))
            raise RuntimeError("lost the race")
    async with store.sessions.begin() as session:
        count_on_commit(session, lambda: counted.append("won"))
        try:  # a failed savepoint inside does not drop it
            async with session.begin_nested():
                raise ValueError
        except ValueError:
            pass
    assert counted == ["won"]


# ------------------------------------------------------------------------ access


async def test_metrics_access_follows_the_rest_rule(
    serve: Callable[..., Any], sqlite_url: str
) -> None:
    loopback = await serve(sqlite_url)
    assert (await loopback.get("/metrics")).status == 200
    # Beyond this machine without a token: off, with the reason.
    public = await serve(sqlite_url, http_host="0.0.0.0")
    response = await public.get("/metrics")
    body = await response.json()
    assert response.status == 403 and "TIAOJIE_METRICS_TOKEN" in body["error"], body
    # With a token: only with it (the REST token does not open it).
    guarded = await serve(
        sqlite_url,
        http_host="0.0.0.0",
        metrics_token=METRICS_TOKEN,
        rest_token="rest-token-0123456789abc",
    )
    for header in ({}, {"Authorization": "Bearer rest-token-0123456789abc"}):
        response = await guarded.get("/metrics", headers=header)
        assert response.status == 401, header
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    samples, _ = await scrape(guarded, METRICS_TOKEN)
    assert total(samples, "tiaojie_nlu_model_info") >= 1


def test_a_short_metrics_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import SettingsError

    monkeypatch.setenv("TIAOJIE_METRICS_TOKEN", "short")
    with pytest.raises(SettingsError, match="TIAOJIE_METRICS_TOKEN") as refused:
        load_settings()
    assert "short" not in str(refused.value)  # a token is never echoed


# -------------------------------------------------------------- several processes


_WORKER = """
import sys
from actions.metrics import MESSAGES_IN, QUEUE_DEPTH, set_model_version
MESSAGES_IN.labels("rest").inc(int(sys.argv[1]))
QUEUE_DEPTH.labels("xixiang", "new").set(int(sys.argv[1]))
set_model_version("builtin", "nlu-test")
"""

_SCRAPER = """
from bot.metrics_http import render
print(render().decode())
"""


def test_multiprocess_mode_adds_up_every_worker(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, a scrape of any process shows all workers."""
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    for count in ("3", "4"):
        subprocess.run([sys.executable, "-c", _WORKER, count], cwd=ROOT, env=env, check=True)
    shown = subprocess.run(
        [sys.executable, "-c", _SCRAPER], cwd=ROOT, env=env, check=True, capture_output=True
    ).stdout.decode()
    samples = parse(shown)
    assert value(samples, "tiaojie_messages_in_total", channel="rest") == 7
    # Gauges combine as declared: the most recent queue depth, the model of any worker.
    assert value(samples, "tiaojie_queue_depth", centre="xixiang", status="new") == 4
    assert value(samples, "tiaojie_nlu_model_info", backend="builtin", version="nlu-test") == 1


@pytest.mark.postgres
@pytest.mark.timeout(400)
async def test_two_workers_on_one_port_report_as_one(
    postgres_template: str, nlu_model_dir: Path, tmp_path: Path
) -> None:
    """`tiaojie run --workers 2` with PROMETHEUS_MULTIPROC_DIR: both workers take
    messages, and whichever answers a scrape shows the total of both."""
    from prometheus_client import multiprocess

    from tests.conftest import _asyncpg_url, _pg_execute

    name = f"tiaojie_metrics_{os.getpid()}_{int(time.time())}"
    await _pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    folder = tmp_path / "prom"
    folder.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_"))}
    env.update(
        TIAOJIE_DATABASE_URL=_asyncpg_url(name),
        TIAOJIE_MODEL_DIR=str(nlu_model_dir),
        TIAOJIE_DATA_DIR=str(tmp_path / "var"),
        TIAOJIE_SECRET_KEY="metrics-workers",
        TIAOJIE_HTTP_PORT=str(port),
        TIAOJIE_LOG_LEVEL="WARNING",
        TIAOJIE_SWEEP_SECONDS="0",
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        NO_PROXY="127.0.0.1,localhost",
    )
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--workers", "2", "--grace", "5",
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    sent = 24
    try:
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            deadline = time.monotonic() + 180
            while len(list(folder.glob("gauge_livemax_*.db"))) < 2:  # both workers up
                assert supervisor.returncode is None, "the supervisor stopped"
                assert time.monotonic() < deadline, list(folder.iterdir())
                await asyncio.sleep(0.3)
            for number in range(sent):
                payload = {"sender": f"mw-{number}", "message": "楼上邻居天天半夜吵"}
                async with http.post(base + REST, json=payload) as response:
                    assert response.status == 200, await response.text()
            shown = []
            for _ in range(8):
                async with http.get(base + "/metrics") as response:
                    assert response.status == 200
                    samples = parse(await response.text())
                shown.append(value(samples, "tiaojie_messages_in_total", channel="rest"))
    finally:
        supervisor.send_signal(signal.SIGTERM)
        await asyncio.wait_for(supervisor.wait(), 60)
        await _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert shown == [sent] * len(shown), shown
    # Both workers handled some of them: each one's own file holds a part.
    per_worker = []
    for path in sorted(folder.glob("counter_*.db")):
        merged = multiprocess.MultiProcessCollector.merge([str(path)], accumulate=True)
        per_worker.append(
            sum(
                sample.value
                for family in merged
                for sample in family.samples
                if sample.name == "tiaojie_messages_in_total"
            )
        )
    assert sum(per_worker) == sent and sum(1 for n in per_worker if n) == 2, per_worker


# ---------------------------------------------------------- messaging platform APIs


async def test_telegram_429_and_errors_are_counted(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Path
) -> None:
    from tests.test_telegram import running_bot

    def seen() -> tuple[float, float, float]:
        return (
            counted("tiaojie_channel_api_calls_total", channel="telegram"),
            counted("tiaojie_channel_api_errors_total", channel="telegram", kind="rate_limited"),
            counted("tiaojie_channel_api_errors_total", channel="telegram", kind="refused"),
        )

    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        calls, limited, refused = seen()
        bot.api.fail_next("sendMessage", retry_after=1)
        await bot.say(7001, "你好")
        # The refused send, then PTB's rate limiter waits the second out and sends again.
        await bot.replies(7001, 2)
        await bot.settle(7001, pause=1.5)
        bot.api.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
        await bot.say(7001, "/help")
        await asyncio.sleep(1.0)
        calls_after, limited_after, refused_after = seen()
    assert limited_after - limited == 1
    assert refused_after - refused == 1
    assert calls_after - calls >= 3  # getUpdates, the refused and the retried send …


async def test_wechat_rate_limits_and_failures_are_counted(store: Store) -> None:
    def errors(kind: str) -> float:
        return counted("tiaojie_channel_api_errors_total", channel="wechat", kind=kind)

    async with WeChatApiStandIn() as stand_in:
        api = WeChatApi(
            None, store, base_url=stand_in.base_url, app_id=APP_ID, app_secret=APP_SECRET
        )
        await api.start()
        try:
            limited, server = errors("rate_limited"), errors("server")
            stand_in.fail_next("/cgi-bin/message/custom/send", errcode=45009)
            with pytest.raises(WeChatApiError):
                await api.send_text("o-metrics", "你好")
            stand_in.fail_next("/cgi-bin/message/custom/send", status=502)
            with pytest.raises(WeChatApiError):
                await api.send_text("o-metrics", "你好")
            await api.send_text("o-metrics", "你好")  # and a call that works
        finally:
            await api.close()
    assert errors("rate_limited") - limited == 1
    assert errors("server") - server == 1


# ---------------------------------------------------------------------- JSON logs


@pytest.mark.timeout(240)
async def test_json_logs_of_a_real_run_carry_no_message_text(
    sqlite_url: str, nlu_model_dir: Path, tmp_path: Path
) -> None:
    port = _free_port()
    secret_words = "邻居家的狗每天叫到凌晨三点ZQX"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        TIAOJIE_DATABASE_URL=sqlite_url,
        TIAOJIE_MODEL_DIR=str(nlu_model_dir),
        TIAOJIE_DATA_DIR=str(tmp_path / "var"),
        TIAOJIE_SECRET_KEY="json-log-test",
        TIAOJIE_HTTP_PORT=str(port),
        TIAOJIE_LOG_FORMAT="json",
        TIAOJIE_LOG_LEVEL="INFO",
    )
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                assert process.returncode is None, stderr.read_text()
                try:
                    async with http.get(base + "/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "tiaojie run never answered"
                await asyncio.sleep(0.3)
            for message in (secret_words, "yes", "/nonsense " + secret_words):
                payload = {"sender": "json-log-1", "message": message}
                async with http.post(base + REST, json=payload) as response:
                    assert response.status == 200
            async with http.get(base + "/metrics") as response:
                assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
    lines = [line for line in stderr.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert lines, "no log lines at all"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message", "pid"} <= set(record), record
        assert secret_words not in json.dumps(record, ensure_ascii=False), record
    assert any(r["level"] == "INFO" and r["logger"] == "bot.intake_service" for r in records)
