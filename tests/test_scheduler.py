"""Our own scheduler (issue 10, finding 11): escalation runs without Telegram, and
several processes on one database never escalate the same case twice."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import select, update

from actions.desk import DeskService
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import SCHEDULER, create_app
from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage.db import create_engine, session_factory
from storage.directory import get_centre
from storage.leases import take_lease
from storage.models import Case, CaseEvent, RiskLevel, utcnow
from storage.phone import PhoneVault
from tests.desk_support import new_case

URGENT_WORDS = "我们住在福永凤凰社区,他现在拿着刀在我家门口说要砍死我"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def rest_only_app(url: str, nlu: NLUBackend, tmp_path: Path) -> AsyncIterator[Any]:
    """The whole application with only the REST channel (no Telegram token), its own
    store, and the sweep every second."""
    port = _free_port()
    settings = load_settings(
        database_url=url,
        telegram_bot_token=None,
        data_dir=tmp_path / f"var{port}",
        http_port=port,
        sweep_seconds=1,
    )
    app = create_app(settings, nlu)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def escalations(store: Store, reference: str) -> list[CaseEvent]:
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        return [e for e in await case_repo.case_events(session, case) if e.kind == "escalation"]


def open_store(url: str) -> Store:
    engine = create_engine(url)
    return Store(engine=engine, sessions=session_factory(engine), vault=PhoneVault("test-secret"))


async def test_rest_only_deployment_escalates_an_urgent_case_on_time(
    db_url: str, nlu: NLUBackend, tmp_path: Path
) -> None:
    store = open_store(db_url)
    try:
        async with rest_only_app(db_url, nlu, tmp_path) as (app, base):
            async with aiohttp.ClientSession() as http, http.post(
                f"{base}/webhooks/rest/webhook",
                json={"sender": "resident-1", "message": URGENT_WORDS},
            ) as response:
                assert response.status == 200
                replies = await response.json()
            assert any("110" in r["text"] for r in replies)
            async with store.sessions.begin() as session:
                case = (
                    (await session.execute(select(Case).where(Case.channel == "rest")))
                    .scalars()
                    .one()
                )
                assert case.risk_level == RiskLevel.URGENT
                # Wherever the first message put it, at a station it has a level above.
                station = await get_centre(session, "fuyong-fenghuang")
                assert station is not None
                case.centre_id = station.id
                reference, centre = case.reference, station.id
                case.escalate_at = utcnow() - timedelta(seconds=1)
            started = time.monotonic()
            for _ in range(50):  # up to five seconds
                if await escalations(store, reference):
                    break
                await asyncio.sleep(0.1)
            [moved] = await escalations(store, reference)
            assert time.monotonic() - started < 5
            assert app[SCHEDULER].runs["sweep"] >= 1
            async with store.sessions() as session:
                after = await case_repo.get_case(session, reference)
            assert after.centre_id != centre and moved.data["from"] != moved.data["to"]
    finally:
        await store.engine.dispose()


async def test_two_processes_on_one_database_escalate_once(
    db_url: str, nlu: NLUBackend, tmp_path: Path
) -> None:
    store = open_store(db_url)
    try:
        references = [await new_case(store, chat=f"r{n}") for n in range(6)]
        async with store.sessions.begin() as session:
            await session.execute(update(Case).values(escalate_at=utcnow() + timedelta(seconds=2)))
        async with (
            rest_only_app(db_url, nlu, tmp_path) as (first, _),
            rest_only_app(db_url, nlu, tmp_path) as (second, _),
        ):
            for _ in range(100):  # until every case moved (at most ten seconds)
                moved = [len(await escalations(store, r)) for r in references]
                if all(moved):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)  # two more rounds of both schedulers
            runs = first[SCHEDULER].runs["sweep"] + second[SCHEDULER].runs["sweep"]
        assert runs >= 2
        for reference in references:
            assert len(await escalations(store, reference)) == 1, reference
    finally:
        await store.engine.dispose()


async def test_two_sweeps_at_once_without_leases_escalate_once(db_url: str) -> None:
    """The changes themselves are conditional: even two sweeps that both run (a lease
    that expired mid-run) move each case once."""
    stores = [open_store(db_url), open_store(db_url)]
    try:
        references = [await new_case(stores[0], chat=f"r{n}") for n in range(8)]
        async with stores[0].sessions.begin() as session:
            await session.execute(update(Case).values(escalate_at=utcnow()))
        desks = [DeskService(store) for store in stores]
        later = utcnow() + timedelta(seconds=1)
        results = await asyncio.gather(
            *(desk.sweep(later) for desk in desks), return_exceptions=True
        )
        done = [r for r in results if isinstance(r, dict)]
        assert done, results
        assert sum(r["escalated"] for r in done) == len(references)
        for reference in references:
            assert len(await escalations(stores[0], reference)) == 1, reference
    finally:
        for store in stores:
            await store.engine.dispose()


async def test_a_lease_has_one_holder(store: Store) -> None:
    ttl = timedelta(seconds=30)
    now = utcnow()
    assert await take_lease(store.engine, "job:sweep", "a", ttl, now)
    assert not await take_lease(store.engine, "job:sweep", "b", ttl, now)
    assert await take_lease(store.engine, "job:sweep", "a", ttl, now + timedelta(seconds=10))
    # The holder died: after its lease runs out, another process takes over.
    assert await take_lease(store.engine, "job:sweep", "b", ttl, now + timedelta(seconds=45))
    assert not await take_lease(store.engine, "job:sweep", "a", ttl, now + timedelta(seconds=46))
