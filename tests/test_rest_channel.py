"""The Rasa-compatible REST channel, through aiohttp's test client on a real app."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.runtime import Store
from bot.settings import load_settings
from bot.web import create_app
from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage.conversations import load_conversation

URL = "/webhooks/rest/webhook"


@pytest.fixture
async def client(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, Store]]:
    settings = load_settings(database_url=sqlite_url, data_dir=tmp_path / "var")
    store = Store.open(settings)
    app = create_app(settings, nlu, store=store)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, store
    await store.close()


async def send(client: TestClient, sender: str, message: Any) -> list[dict[str, Any]]:
    response = await client.post(URL, json={"sender": sender, "message": message})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert all(item["recipient_id"] == sender for item in body)
    return body


def payloads(body: list[dict[str, Any]]) -> list[str]:
    return [b["payload"] for item in body for b in item.get("buttons", [])]


async def test_rest_conversation_in_english_files_a_case(client) -> None:
    http, store = client
    who = "bridge-user-1"
    body = await send(http, who, "My landlord won't give back my 3000 yuan deposit")
    assert "Privacy" in body[1]["text"]
    assert payloads(body) == ["yes", "no"] or "cat:dispute_tenancy" in payloads(body)
    if "cat:dispute_tenancy" in payloads(body):
        body = await send(http, who, "cat:dispute_tenancy")
    else:
        body = await send(http, who, "yes")
    for _ in range(10):
        buttons = payloads(body)
        if any(p.startswith("street:") for p in buttons):
            break
        if buttons == ["yes", "no"]:
            body = await send(http, who, "yes")
        elif any(p.startswith("choice:") for p in buttons):
            body = await send(http, who, next(p for p in buttons if p.startswith("choice:")))
        elif "skip" in buttons:
            body = await send(http, who, "skip")
        else:
            body = await send(http, who, "Mr Wang, the landlord")
    body = await send(http, who, "street:xixiang")
    body = await send(http, who, "comm:")
    assert "mobile" in body[0]["text"]
    body = await send(http, who, "13900001111")  # straight to the review, consent asked there
    assert "139****1111" in body[0]["text"] and "13900001111" not in body[0]["text"]
    assert payloads(body)[-2:] == ["submit", "submit:no"]
    body = await send(http, who, "submit")
    reference = body[0]["text"].split("case number is ")[1].split(" ")[0]
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
    assert case.category == "dispute_tenancy" and case.language == "en"
    assert case.street == "西乡" and case.channel == "rest"


async def test_rest_bad_requests_are_clear(client) -> None:
    http, _ = client
    for raw, expected in (
        (b"not json", "JSON"),
        (b"[1, 2]", "object"),
        (b'{"message": "hi"}', "sender"),
        (b'{"sender": "x", "message": 42}', "text"),
        (b'{"sender": "' + b"x" * 65 + b'", "message": "hi"}', "64"),
    ):
        response = await http.post(URL, data=raw, headers={"Content-Type": "application/json"})
        assert response.status == 400
        assert expected in (await response.json())["error"]


async def test_a_bridge_message_id_replays_the_first_answer_and_bad_ids_are_refused(
    client,
) -> None:
    """A retried delivery (same ``message_id``, or ``Idempotency-Key``) is handled once and
    answered as the first time; an id of the wrong type or length gets a clear 400."""
    http, store = client
    first = await http.post(URL, json={"sender": "mid", "message": "邻居装修太吵", "message_id": 7})
    again = await http.post(URL, json={"sender": "mid", "message": "邻居装修太吵", "message_id": 7})
    assert first.status == again.status == 200
    assert [i["text"] for i in await again.json()] == [i["text"] for i in await first.json()]
    async with store.sessions() as session:
        _, version = await load_conversation(session, "rest", "mid")
    assert version == 1  # handled once
    headed = {"Idempotency-Key": "k-1"}
    one = await http.post(URL, json={"sender": "mid2", "message": "你好"}, headers=headed)
    two = await http.post(URL, json={"sender": "mid2", "message": "你好"}, headers=headed)
    assert [i["text"] for i in await two.json()] == [i["text"] for i in await one.json()]
    for bad in (True, [1], {"a": 1}, 1.5, "x" * 129):
        response = await http.post(URL, json={"sender": "mid", "message": "hi", "message_id": bad})
        assert response.status == 400
        assert "message_id" in (await response.json())["error"]


async def test_rest_odd_messages_get_polite_answers(client) -> None:
    http, _ = client
    for message in ("", "   ", "😀😀😀", "\x00\x01\x02", "/frobnicate", "a", "x" * 20_001):
        body = await send(http, "odd", message)
        assert body and all(item["text"] for item in body)
    status = await http.get("/webhooks/rest/")
    assert (await status.json()) == {"status": "ok"}


async def test_healthz_reports_database_and_nlu(client) -> None:
    http, _ = client
    response = await http.get("/healthz")
    body = await response.json()
    assert response.status == 200 and body["database"]["status"] == "ok"
    assert "nlu" in body


async def test_rest_resident_talks_with_mediator_through_the_case(client) -> None:
    from actions.intake import file_case
    from bot.web import DESK_SERVICE
    from storage.people import add_mediator, get_or_create_resident

    http, store = client
    who = "bridge-user-2"
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
            external_id="77",
            display_alias="调解员阿芳",
            centre_code="xixiang",
        )
    # The mediator works the case through the app's own desk service; what they say
    # waits in the REST outbox for the bridge's next request.
    desk = http.server.app[DESK_SERVICE]
    await desk.claim(filed.reference, mediator)
    assert await desk.reply(filed.reference, mediator, "您好,我明天上门看看")
    body = await send(http, who, "好的,我明天在家")
    texts = [item["text"] for item in body]
    assert len(texts) == 2 and "调解员阿芳" in texts[0]  # claimed: who has the case
    assert texts[1] == "【" + filed.reference + "】调解员 调解员阿芳:\n您好,我明天上门看看"
    body = await send(http, who, "几点来?")
    assert body == []  # nothing new from the mediator yet; the message went to them
    async with store.sessions() as session:
        case = await case_repo.get_case(session, filed.reference)
        texts = [
            e.data.get("text")
            for e in await case_repo.case_events(session, case)
            if e.kind == "message_in"
        ]
    assert texts == ["好的,我明天在家", "几点来?"]


# ------------------------------------------------------- input cleaned at the edge

JUNK = "\x00\ud800\udfff\x1b"


@pytest.fixture
async def any_db_client(
    db_url: str, nlu: NLUBackend, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, Store]]:
    """The REST app on a fresh SQLite file and on PostgreSQL."""
    settings = load_settings(database_url=db_url, data_dir=tmp_path / "var")
    store = Store.open(settings)
    app = create_app(settings, nlu, store=store)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, store
    await store.close()


async def _raw_send(http: TestClient, sender: str, message: str) -> list[dict[str, Any]]:
    """Send as a bridge would, with \\u escapes, so lone surrogates survive the trip."""
    body = json.dumps({"sender": sender, "message": message}).encode()
    response = await http.post(URL, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_nul_and_lone_surrogates_never_block_filing(any_db_client) -> None:
    """Finding 6: such a character once saved made every later submit fail."""
    http, store = any_db_client
    who = "junk-" + JUNK
    body = await _raw_send(http, who, f"邻居{JUNK}天天半夜装修,吵得{JUNK}睡不着")
    recipient = body[0]["recipient_id"]
    assert "\x00" not in recipient and "\ufffd" in recipient
    for _ in range(14):
        buttons = payloads(body)
        if any(p.startswith("street:") for p in buttons):
            body = await _raw_send(http, who, "street:xixiang")
        elif any(p.startswith("comm:") for p in buttons):
            body = await _raw_send(http, who, "comm:")
        elif "submit" in buttons:
            break
        elif buttons[:2] == ["yes", "no"]:
            body = await _raw_send(http, who, "yes")
        elif any(p.startswith("cat:") for p in buttons):
            body = await _raw_send(http, who, "cat:dispute_neighbor")
        elif any(p.startswith("choice:") for p in buttons):
            body = await _raw_send(http, who, next(p for p in buttons if p.startswith("choice:")))
        elif "skip" in buttons:
            body = await _raw_send(http, who, "skip")
        else:
            body = await _raw_send(http, who, f"楼上{JUNK}王先生")
    assert "submit" in payloads(body), body
    body = await _raw_send(http, who, "submit")
    texts = " ".join(item["text"] for item in body)
    match = re.search(r"BA-\d{8}-\d{4}", texts)
    assert match, texts
    async with store.sessions() as session:
        case = await case_repo.get_case(session, match.group())
    stored = case.resident_words + json.dumps(case.fields, ensure_ascii=False)
    assert "\x00" not in stored and "\ufffd" in case.resident_words
    assert case.channel == "rest"
    # And the chat keeps working after filing.
    assert await _raw_send(http, who, "/status")


async def test_sender_with_newline_cannot_forge_a_log_line(
    client, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 8: ids are one line at the edge, and the log filter catches the rest."""
    import logging

    from bot.channels.sanitise import OneLineLogFilter

    http, _ = client
    forged = "u1\n2026-11-30 00:00:00 WARNING root: FORGED"
    caplog.set_level(logging.DEBUG)
    await send(http, forged.replace("\n", "\ufffd"), "hi")  # what the bridge gets back
    caplog.clear()
    response = await http.post(URL, json={"sender": forged, "message": "hi"})
    assert response.status == 200
    assert (await response.json())[0]["recipient_id"] == forged.replace("\n", "\ufffd")
    lines = [r.getMessage() for r in caplog.records]
    assert lines and not any("\n" in line for line in lines)
    # And a value logged unescaped anywhere else stays on its line through the filter.
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "sender %s", (forged,), None)
    assert OneLineLogFilter().filter(record)
    assert "\n" not in record.getMessage() and "\\n2026" in record.getMessage()
