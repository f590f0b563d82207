"""The REST channel's outbox: what a mediator says waits for the resident's next message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from actions.ports import ResidentPort
from bot.channels.rest import RestPort
from bot.dialogue.model import Button, Reply
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import RESIDENT_PORTS, create_app
from nlu.interface import NLUBackend
from storage import outbox
from storage.db import create_engine, session_factory

URL = "/webhooks/rest/webhook"


async def test_enqueue_and_take_in_order_once(store: Store) -> None:
    async with store.sessions.begin() as session:
        await outbox.enqueue(session, "rest", "u1", [{"text": "一"}, {"text": "二"}])
        await outbox.enqueue(session, "rest", "u2", [{"text": "other"}])
        await outbox.enqueue(session, "rest", "u1", [{"text": "三", "buttons": []}])
    async with store.sessions.begin() as session:
        taken = await outbox.take_pending(session, "rest", "u1")
    assert [p["text"] for p in taken] == ["一", "二", "三"]
    async with store.sessions.begin() as session:
        assert await outbox.take_pending(session, "rest", "u1") == []
        assert await outbox.pending_count(session, "rest", "u2") == 1


async def test_a_rolled_back_take_hands_nothing_over(store: Store) -> None:
    async with store.sessions.begin() as session:
        await outbox.enqueue(session, "rest", "u3", [{"text": "hello"}])
    with pytest.raises(RuntimeError):
        async with store.sessions.begin() as session:
            assert len(await outbox.take_pending(session, "rest", "u3")) == 1
            raise RuntimeError("the answer never left")
    async with store.sessions.begin() as session:
        assert await outbox.pending_count(session, "rest", "u3") == 1


async def test_two_processes_taking_at_once_hand_each_message_over_once(db_url: str) -> None:
    engines = [create_engine(db_url), create_engine(db_url)]
    try:
        async with session_factory(engines[0]).begin() as session:
            await outbox.enqueue(session, "rest", "u4", [{"text": str(i)} for i in range(30)])

        async def take(engine: Any) -> list[str]:
            got: list[str] = []
            for _ in range(10):
                async with session_factory(engine).begin() as session:
                    got += [p["text"] for p in await outbox.take_pending(session, "rest", "u4", 4)]
                await asyncio.sleep(0)
            return got

        first, second = await asyncio.gather(take(engines[0]), take(engines[1]))
        assert sorted(first + second, key=int) == [str(i) for i in range(30)]
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.fixture
async def client(
    db_url: str, nlu: NLUBackend, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, Store]]:
    settings = load_settings(database_url=db_url, data_dir=tmp_path / "var")
    store = Store.open(settings)
    app = create_app(settings, nlu, store=store)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, store
    await store.close()


async def test_port_messages_come_first_in_the_next_answer(client) -> None:
    http, _ = client
    ports = http.app[RESIDENT_PORTS]
    port = ports.get("rest")
    assert isinstance(port, RestPort) and isinstance(port, ResidentPort)
    first = await http.post(URL, json={"sender": "r1", "message": "你好"})
    assert first.status == 200
    # A mediator answers while the resident is away.
    reply = Reply(
        "【BA-20261130-0001】调解员 阿芳:明天上午十点上门",
        buttons=((Button("好的", "yes"), Button("改时间", "no")),),
        attachment={"kind": "photo", "file_id": "ev-1"},
    )
    assert await ports.send("rest", "r1", [reply], language="zh")
    await port.send("r1", [Reply("状态:调解中")], language="zh")
    await port.send("someone-else", [Reply("not for r1")], language="zh")
    response = await http.post(URL, json={"sender": "r1", "message": "/status"})
    body = await response.json()
    assert body[0] == {
        "recipient_id": "r1",
        "text": "【BA-20261130-0001】调解员 阿芳:明天上午十点上门",
        "buttons": [{"title": "好的", "payload": "yes"}, {"title": "改时间", "payload": "no"}],
        "attachment": {"kind": "photo", "file_id": "ev-1"},
    }
    assert body[1]["text"] == "状态:调解中"
    assert len(body) > 2 and all("not for r1" not in item["text"] for item in body)
    # Handed over once: the next answer has only the replies to the new message.
    again = await (await http.post(URL, json={"sender": "r1", "message": "/status"})).json()
    assert len(again) == len(body) - 2


async def test_mediator_reply_through_the_desk_reaches_a_rest_resident_once(client) -> None:
    from actions import casework
    from actions.intake import file_case
    from bot.web import DESK_SERVICE
    from storage.people import add_mediator, get_or_create_resident

    http, store = client
    who = "desk-rest-1"
    async with store.sessions.begin() as session:
        resident = await get_or_create_resident(session, "rest", who)
        filed = await file_case(
            session,
            {
                "words": ["邻居漏水"],
                "category": "dispute_neighbor",
                "street": "xixiang",
                "community": None,
                "consent": True,
            },
            resident=resident,
            channel="rest",
            chat_id=who,
            language="zh",
            vault=store.vault,
            reason="submit",
        )
        mediator = await add_mediator(
            session,
            channel="telegram",
            external_id="78",
            display_alias="阿芳",
            centre_code="xixiang",
        )
        await casework.claim(session, filed.reference, mediator)
    assert await http.app[DESK_SERVICE].reply(filed.reference, mediator, "明天上午十点上门")
    body = await (await http.post(URL, json={"sender": who, "message": "好的"})).json()
    texts = [item["text"] for item in body]
    assert sum("明天上午十点上门" in text for text in texts) == 1, texts
