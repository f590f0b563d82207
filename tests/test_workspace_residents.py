"""Administrators export or erase a resident's data in the workspace, on a verified
request (aiohttp test client, real store on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.runtime import Store
from storage import cases as case_repo
from storage.models import CaseStatus, MediatorRole
from tests.workspace_support import (
    RecordingPort,
    add_user,
    client_factory,
    csrf_of,
    events_of,
    file_chat_case,
    sign_in,
    token_from,
)

RESIDENTS = "/desk/admin/residents"
BASIS = "书面申请 2026-017,窗口核验身份证件"


@pytest.fixture
def port() -> RecordingPort:
    return RecordingPort("rest")


@pytest.fixture
async def make_client(store: Store, tmp_path: Path, port: RecordingPort) -> AsyncIterator[Any]:
    async for make in client_factory(store, tmp_path, port):
        yield make


async def admin(store: Store, make_client: Any) -> Any:
    client = await make_client()
    await add_user(store, "boss", "baoan", MediatorRole.ADMIN)
    assert (await sign_in(client, "boss")).status == 303
    return client


async def test_only_administrators_reach_the_pages(store: Store, make_client: Any) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    await sign_in(client, "li")
    assert (await client.get(RESIDENTS)).status == 403
    preview = await client.get(f"{RESIDENTS}/forget?channel=rest&id=resident-1")
    assert preview.status == 403
    token = await token_from(client, "/desk/")
    posted = await client.post(
        f"{RESIDENTS}/export",
        data={"csrf": token, "channel": "rest", "id": "resident-1", "basis": BASIS},
    )
    assert posted.status == 403


async def test_export_downloads_the_file_and_is_audited(store: Store, make_client: Any) -> None:
    reference = await file_chat_case(store)
    client = await admin(store, make_client)
    page = await client.get(RESIDENTS)
    html = await page.text()
    assert page.status == 200 and "export-form" in html and "forget-form" in html
    token = csrf_of(html)

    # Without the form's token: refused before anything is read.
    forged = await client.post(
        f"{RESIDENTS}/export", data={"channel": "rest", "id": "resident-1", "basis": BASIS}
    )
    assert forged.status == 403
    # Without the request it answers, or with a channel that is not one: a polite 400.
    for data in (
        {"channel": "rest", "id": "resident-1", "basis": ""},
        {"channel": "fax", "id": "resident-1", "basis": BASIS},
        {"channel": "rest", "id": "a b/../c", "basis": BASIS},
    ):
        bad = await client.post(f"{RESIDENTS}/export", data={"csrf": token, **data})
        assert bad.status == 400 and "请求依据" in await bad.text()
    unknown = await client.post(
        f"{RESIDENTS}/export",
        data={"csrf": token, "channel": "rest", "id": "nobody", "basis": BASIS},
    )
    assert unknown.status == 404 and "nobody" in await unknown.text()
    assert not await events_of(store, reference, "data_exported")

    text = await client.post(
        f"{RESIDENTS}/export",
        data={"csrf": token, "channel": "rest", "id": "resident-1", "basis": BASIS},
    )
    assert text.status == 200
    assert "attachment" in text.headers["Content-Disposition"]
    body = await text.text()
    assert reference in body and "138****5678" in body and "13812345678" not in body
    as_json = await client.post(
        f"{RESIDENTS}/export",
        data={
            "csrf": token,
            "channel": "rest",
            "id": "resident-1",
            "basis": BASIS,
            "format": "json",
        },
    )
    exported = json.loads(await as_json.text())
    assert exported["cases"][0]["reference"] == reference
    [first, second] = await events_of(store, reference, "data_exported")
    assert first.actor_type == "admin" and first.actor_id == "web:boss"
    assert first.data["basis"] == BASIS and second.actor_id == "web:boss"


async def test_forget_shows_what_will_happen_then_erases_on_confirmation(
    store: Store, make_client: Any
) -> None:
    opened = await file_chat_case(store)
    other = await file_chat_case(store, chat_id="resident-2")
    client = await admin(store, make_client)
    assert (await client.get(f"{RESIDENTS}/forget?channel=rest&id=")).status == 400
    none = await client.get(f"{RESIDENTS}/forget?channel=rest&id=nobody")
    assert none.status == 404 and "nothing-held" in await none.text()

    preview = await client.get(f"{RESIDENTS}/forget?channel=rest&id=resident-1")
    html = await preview.text()
    assert preview.status == 200 and opened in html and other not in html
    assert "撤回 1 个进行中的案件" in html and "匿名化 1 个案件" in html
    token = csrf_of(html)
    async with store.sessions() as session:  # a preview changes nothing
        assert (await case_repo.get_case(session, opened)).status == CaseStatus.NEW

    unconfirmed = await client.post(
        f"{RESIDENTS}/forget",
        data={"csrf": token, "channel": "rest", "id": "resident-1", "basis": BASIS},
    )
    assert unconfirmed.status == 400
    async with store.sessions() as session:
        assert (await case_repo.get_case(session, opened)).resident_words != ""

    done = await client.post(
        f"{RESIDENTS}/forget",
        data={
            "csrf": token,
            "channel": "rest",
            "id": "resident-1",
            "basis": BASIS,
            "confirm": "yes",
        },
        allow_redirects=False,
    )
    assert done.status == 303 and done.headers["Location"] == RESIDENTS
    told = await (await client.get(RESIDENTS)).text()
    assert "已删除" in told and "撤回 1 个" in told
    async with store.sessions() as session:
        case = await case_repo.get_case(session, opened)
        assert case.status == CaseStatus.WITHDRAWN and case.resident_words == ""
        assert case.resident_words_sealed is None and case.phone_encrypted is None
        kept = await case_repo.get_case(session, other)
        assert kept.resident_words_sealed is not None
    [erased] = await events_of(store, opened, "data_erased")
    assert erased.actor_type == "admin" and erased.actor_id == "web:boss"
    # Twice is harmless: nothing is left to find.
    again = await client.post(
        f"{RESIDENTS}/forget",
        data={
            "csrf": token,
            "channel": "rest",
            "id": "resident-1",
            "basis": BASIS,
            "confirm": "yes",
        },
    )
    assert again.status == 404


async def test_audit_page_names_who_looked_and_who_revealed(store: Store, make_client: Any) -> None:
    reference = await file_chat_case(store)
    mediator = await make_client()
    await add_user(store, "li", "xixiang", name="李调解员")
    await sign_in(mediator, "li")
    page = f"/desk/cases/{reference}"
    token = await token_from(mediator, page)
    await mediator.post(f"{page}/claim", data={"csrf": token})
    revealed = await mediator.post(f"{page}/phone", data={"csrf": token})
    full = await revealed.text()
    assert "13812345678" in full and "revealed-note" in full
    client = await admin(store, make_client)
    audit = await (await client.get(f"/desk/admin/audit?ref={reference}")).text()
    assert "李调解员 (mediator:" in audit and "phone_revealed" in audit
    assert "13812345678" not in audit
