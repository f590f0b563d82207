"""The web workspace's handlers through aiohttp's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.runtime import Store
from storage import accounts
from storage.models import MediatorRole
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


@pytest.fixture
def port() -> RecordingPort:
    return RecordingPort("rest")


@pytest.fixture
async def make_client(store: Store, tmp_path: Path, port: RecordingPort) -> AsyncIterator[Any]:
    async for make in client_factory(store, tmp_path, port):
        yield make


# ------------------------------------------------------------------------------ sign-in


async def test_sign_in_then_queue_shows_my_centre_with_phones_masked(store, make_client) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    mine = await file_chat_case(store, street="xixiang")
    other = await file_chat_case(store, street="fuyong", chat_id="r2")
    assert (await client.get("/desk/", allow_redirects=False)).status == 303
    response = await sign_in(client, "li")
    assert response.status == 303
    assert response.headers["Location"] == "/desk/"
    page = await client.get("/desk/")
    html = await page.text()
    assert mine in html and other not in html
    assert "13812345678" not in html and "138****5678" in html


async def test_wrong_password_then_lock_out_after_five_failures(store, make_client) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    response = await sign_in(client, "li", "wrong password")
    assert response.status == 401
    assert "用户名或密码不正确" in await response.text()
    for _ in range(4):
        await sign_in(client, "li", "wrong password")
    locked = await sign_in(client, "li")  # even the right password now waits
    assert locked.status == 429
    assert "15 分钟" in await locked.text()


async def test_security_headers_and_cookie_flags(store, make_client) -> None:
    client = await make_client(https=True)
    page = await client.get("/desk/signin")  # the CSRF token already needs a session
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert page.headers["Strict-Transport-Security"]
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"


async def test_cookie_not_secure_without_https(store, make_client) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    response = await sign_in(client, "li")
    assert "Secure" not in response.headers["Set-Cookie"]


async def test_missing_csrf_token_is_refused(store, make_client) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    reference = await file_chat_case(store)
    await sign_in(client, "li")
    refused = await client.post(f"/desk/cases/{reference}/claim", allow_redirects=False)
    assert refused.status == 403
    wrong = await client.post(
        f"/desk/cases/{reference}/claim", data={"csrf": "forged"}, allow_redirects=False
    )
    assert wrong.status == 403
    assert await events_of(store, reference, "claim") == []


async def test_disabled_user_session_ends_at_once(store, make_client) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    await sign_in(client, "li")
    assert (await client.get("/desk/", allow_redirects=False)).status == 200
    async with store.sessions.begin() as session:
        await accounts.disable_user(session, "li")
    assert (await client.get("/desk/", allow_redirects=False)).status == 303
    assert (await sign_in(client, "li")).status == 401


async def test_sign_in_link_works_once(store, make_client) -> None:
    client = await make_client()
    user = await add_user(store, "wang", "xixiang")
    async with store.sessions.begin() as session:
        user = await accounts.get_user(session, user.id)
        token = await accounts.create_link(session, user)
    page = await client.get(f"/desk/link/{token}")
    assert page.status == 200
    csrf = csrf_of(await page.text())
    new = "a brand new secret"
    done = await client.post(
        f"/desk/link/{token}",
        data={"csrf": csrf, "password": new, "again": new},
        allow_redirects=False,
    )
    assert done.status == 303
    assert (await client.get("/desk/", allow_redirects=False)).status == 200
    assert (await client.get(f"/desk/link/{token}")).status == 404
    other = await make_client()
    assert (await sign_in(other, "wang", new)).status == 303


# ---------------------------------------------------------------------------- case work


async def test_other_centre_gets_403_on_case_and_evidence(store, make_client) -> None:
    client = await make_client()
    await add_user(store, "chen", "fuyong")
    reference = await file_chat_case(store, street="xixiang")
    await sign_in(client, "chen")
    assert (await client.get(f"/desk/cases/{reference}")).status == 403
    assert (await client.get(f"/desk/cases/{reference}/evidence/1")).status == 403
    assert (await client.get(f"/desk/cases/{reference}/timeline")).status == 403
    assert await events_of(store, reference, "view") == []


async def test_claim_reply_and_phone_reveal_are_on_the_timeline(
    store, make_client, port: RecordingPort
) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    await add_user(store, "zhao", "xixiang")
    reference = await file_chat_case(store)
    await sign_in(client, "li")
    page = await client.get(f"/desk/cases/{reference}")
    html = await page.text()
    assert "138****5678" in html and "13812345678" not in html
    assert len(await events_of(store, reference, "view")) == 1
    csrf = csrf_of(html)
    claimed = await client.post(
        f"/desk/cases/{reference}/claim", data={"csrf": csrf}, allow_redirects=False
    )
    assert claimed.status == 303
    sent = await client.post(
        f"/desk/cases/{reference}/reply",
        data={"csrf": csrf, "text": "您好,我是西乡的调解员,明天上午打电话给您。"},
        allow_redirects=False,
    )
    assert sent.status == 303
    out = await events_of(store, reference, "message_out")
    assert [e.data["text"] for e in out] == ["您好,我是西乡的调解员,明天上午打电话给您。"]
    # The resident was told of the claim, then got the reply, on their own channel.
    assert [entry[0] for entry in port.sent] == ["resident-1", "resident-1"]
    assert "调解员li" in port.sent[0][1][0].text
    assert "明天上午" in port.sent[-1][1][0].text
    revealed = await client.post(f"/desk/cases/{reference}/phone", data={"csrf": csrf})
    assert "13812345678" in await revealed.text()
    assert len(await events_of(store, reference, "phone_revealed")) == 1
    # A colleague of the same centre sees the case but never the full number.
    colleague = await make_client()
    await sign_in(colleague, "zhao")
    token = await token_from(colleague, f"/desk/cases/{reference}")
    refused = await colleague.post(f"/desk/cases/{reference}/phone", data={"csrf": token})
    assert refused.status == 403
    assert "13812345678" not in await refused.text()


async def test_script_payloads_render_inert(store, make_client) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    words = "<script>alert(1)</script><img src=x onerror=alert(2)>押金不退"
    reference = await file_chat_case(store, words=words)
    await sign_in(client, "li")
    for path in ("/desk/", f"/desk/cases/{reference}"):
        html = await (await client.get(path)).text()
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;" in html


async def test_resolve_asks_the_resident_for_a_rating(
    store, make_client, port: RecordingPort
) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    reference = await file_chat_case(store)
    await sign_in(client, "li")
    csrf = await token_from(client, f"/desk/cases/{reference}")
    for path, data in (
        ("claim", {}),
        ("outcome", {"outcome": "agreement"}),
        ("status", {"status": "resolved"}),
    ):
        response = await client.post(
            f"/desk/cases/{reference}/{path}", data={"csrf": csrf, **data}, allow_redirects=False
        )
        assert response.status == 303, path
    last = port.sent[-1][1][0]
    assert "达成调解协议" in last.text
    assert [b.payload for b in last.buttons[0]] == [f"rate:{reference}:{n}" for n in range(1, 6)]


async def test_bad_input_gets_a_polite_400(store, make_client) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    reference = await file_chat_case(store)
    await sign_in(client, "li")
    csrf = await token_from(client, f"/desk/cases/{reference}")
    response = await client.post(
        f"/desk/cases/{reference}/status", data={"csrf": csrf, "status": "bogus"}
    )
    assert response.status == 400
    assert (await client.get("/desk/cases/not-a-ref")).status == 404
    assert (await client.get("/desk/cases/BA-20200101-9999")).status == 404


async def test_supervisor_sees_centres_below(store, make_client) -> None:
    client = await make_client()
    await add_user(store, "boss", "xixiang", MediatorRole.SUPERVISOR)
    below = await file_chat_case(store, street="xixiang", community="固戍")
    await sign_in(client, "boss")
    assert below in await (await client.get("/desk/")).text()


async def test_language_switch_keeps_the_page(store, make_client) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    await sign_in(client, "li")
    page = await (await client.get("/desk/")).text()
    assert "待处理案件" in page and 'lang="zh-Hans"' in page
    switched = await client.post(
        "/desk/lang", data={"csrf": csrf_of(page), "to": "en", "next": "/desk/"}
    )
    english = await switched.text()
    assert "Open cases" in english and 'lang="en"' in english
    off_site = await client.post(
        "/desk/lang",
        data={"csrf": csrf_of(english), "to": "zh", "next": "https://evil.example/"},
        allow_redirects=False,
    )
    assert off_site.headers["Location"] == "/desk/"


async def test_evidence_only_through_the_authorised_route(store, make_client, tmp_path) -> None:
    import hashlib

    from storage.cases import Actor, add_event, get_case

    photo = b"\x89PNG\r\n\x1a\n fake photo bytes"
    digest = hashlib.sha256(photo).hexdigest()
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / digest).write_bytes(photo)
    reference = await file_chat_case(store)
    async with store.sessions.begin() as session:
        case = await get_case(session, reference)
        item = await add_event(
            session,
            case,
            "evidence",
            Actor("resident", "1"),
            {"kind": "photo", "file_id": f"local:{digest}", "mime_type": "image/png"},
        )
    await add_user(store, "li", "xixiang")
    await add_user(store, "chen", "fuyong")
    client = await make_client()
    unsigned = await client.get(
        f"/desk/cases/{reference}/evidence/{item.id}", allow_redirects=False
    )
    assert unsigned.status == 303
    await sign_in(client, "li")
    page = await (await client.get(f"/desk/cases/{reference}")).text()
    assert f"/desk/cases/{reference}/evidence/{item.id}" in page
    response = await client.get(f"/desk/cases/{reference}/evidence/{item.id}")
    assert response.status == 200 and await response.read() == photo
    assert response.content_type == "image/png"
    assert len(await events_of(store, reference, "evidence_viewed")) == 1
    other = await make_client()
    await sign_in(other, "chen")
    assert (await other.get(f"/desk/cases/{reference}/evidence/{item.id}")).status == 403


async def test_my_cases_include_those_taken_on_telegram(store, make_client) -> None:
    from actions import casework
    from storage.people import find_mediator

    async with store.sessions.begin() as session:
        from bot.workspace.passwords import hash_password

        await accounts.add_user(
            session,
            username="li",
            display_name="李调解员",
            centre_code="xixiang",
            role=MediatorRole.MEDIATOR,
            password_hash=hash_password("correct horse battery"),
            telegram_id=5151,
        )
    reference = await file_chat_case(store)
    untouched = await file_chat_case(store, chat_id="r2")
    async with store.sessions.begin() as session:
        on_telegram = await find_mediator(session, "telegram", "5151")
        assert on_telegram is not None
        await casework.claim(session, reference, on_telegram)
    client = await make_client()
    await sign_in(client, "li")
    mine = await (await client.get("/desk/?mine=1")).text()
    assert reference in mine and untouched not in mine
    # The same person on both desks: the case claimed on Telegram is answered from here.
    csrf = await token_from(client, f"/desk/cases/{reference}")
    replied = await client.post(
        f"/desk/cases/{reference}/reply",
        data={"csrf": csrf, "text": "我在工作台上回复您。"},
        allow_redirects=False,
    )
    assert replied.status == 303
    out = await events_of(store, reference, "message_out")
    assert [e.data["text"] for e in out] == ["我在工作台上回复您。"]


async def test_live_stream_names_new_cases_and_ends_for_a_disabled_user(store, make_client) -> None:
    import asyncio

    client = await make_client()
    await add_user(store, "li", "xixiang")
    await sign_in(client, "li")
    stream = await client.get("/desk/live", headers={"Accept": "text/event-stream"})
    assert stream.status == 200 and stream.content_type == "text/event-stream"
    elsewhere = await file_chat_case(store, street="fuyong", chat_id="r0")
    reference = await file_chat_case(store, risk="urgent")

    async def next_change() -> str:
        while True:
            line = (await stream.content.readline()).decode()
            if line.startswith("data: "):
                return line[6:].strip()

    seen = await asyncio.wait_for(next_change(), timeout=10)
    assert seen.startswith(f"{reference} ") and elsewhere not in seen
    assert seen.endswith(" urgent")
    async with store.sessions.begin() as session:
        await accounts.disable_user(session, "li")

    async def until_closed() -> None:
        while await stream.content.readline():
            pass

    await asyncio.wait_for(until_closed(), timeout=15)
