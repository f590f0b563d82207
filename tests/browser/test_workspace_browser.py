"""The workspace in a real browser (Playwright driving Debian's Chromium).

A real server on 127.0.0.1 runs the whole app (REST channel and workspace) on a fresh
SQLite store with the real NLU; residents talk to it over HTTP like a bridge would, and
mediators click through the pages. Without Chromium these tests skip with the reason,
except under ``CI=true``, where they must run. Screenshots go to results/screenshots/.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openpyxl import load_workbook
from sqlalchemy import select

from bot.runtime import Store
from bot.web import RESIDENT_PORTS, create_app
from storage.cases import get_case
from storage.db import create_engine, session_factory
from storage.models import CaseEvent, MediatorRole
from storage.phone import PhoneVault
from tests.conftest import IN_CI, ROOT
from tests.workspace_support import (
    PASSWORD,
    RecordingPort,
    add_user,
    file_chat_case,
    workspace_settings,
)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = ROOT / "results" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
LIVE_TIMEOUT_MS = 10_000

if not Path(CHROMIUM).exists():
    reason = f"no browser at {CHROMIUM} (apt-get install chromium fonts-wqy-microhei)"
    if IN_CI:
        raise RuntimeError(f"CI=true requires the browser tests to run: {reason}")
    pytest.skip(reason, allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright  # noqa: E402


class Live:
    """The running app, its store and the resident port the test watches."""

    def __init__(self, base: str, store: Store, port: RecordingPort) -> None:
        self.base = base
        self.store = store
        self.port = port

    async def say(self, sender: str, message: str) -> list[dict[str, Any]]:
        """A resident's message through the REST channel, as a bridge would send it."""
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.base}/webhooks/rest/webhook", json={"sender": sender, "message": message}
            ) as response,
        ):
            assert response.status == 200
            return list(await response.json())

    async def events(self, reference: str, kind: str) -> list[CaseEvent]:
        async with self.store.sessions() as session:
            case = await get_case(session, reference)
            query = select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.kind == kind)
            return list((await session.execute(query)).scalars())


@pytest.fixture
async def live(sqlite_url: str, tmp_path: Path, nlu: Any) -> AsyncIterator[Live]:
    engine = create_engine(sqlite_url)
    store = Store(engine=engine, sessions=session_factory(engine), vault=PhoneVault("test"))
    settings = workspace_settings(tmp_path, centres_file=ROOT / "storage/data/baoan_centres.yml")
    app = create_app(settings, nlu, store=store)
    # Watch what reaches REST residents while the real REST port (the outbox) delivers it.
    ports = app[RESIDENT_PORTS]
    port = RecordingPort("rest", forward_to=ports.get("rest"))
    ports.register(port)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
    yield Live(f"http://127.0.0.1:{address[1]}", store, port)
    await runner.cleanup()
    await engine.dispose()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        await launched.close()


async def signed_in(browser: Browser, live: Live, username: str, **context: Any) -> Page:
    page = await (await browser.new_context(viewport=DESKTOP, **context)).new_page()
    await page.goto(f"{live.base}/desk/")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{live.base}/desk/")
    return page


async def shoot(page: Page, name: str) -> None:
    """Desktop and phone screenshots of the page as it is now."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.set_viewport_size(DESKTOP)
    await page.screenshot(path=str(SHOTS / f"{name}-desktop.png"), full_page=True)
    await page.set_viewport_size(PHONE)
    await page.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)
    docs = ROOT / "docs" / "screenshots"
    if os.environ.get("TIAOJIE_UPDATE_DOCS_SCREENSHOTS") == "1":
        docs.mkdir(parents=True, exist_ok=True)
        widths = ("desktop", "phone") if name == "queue" else ("desktop",)
        for width in widths:
            shutil.copyfile(SHOTS / f"{name}-{width}.png", docs / f"{name}-{width}.png")


def payloads(body: list[dict[str, Any]]) -> list[str]:
    return [b["payload"] for item in body for b in item.get("buttons", [])]


async def file_by_chat(live: Live, who: str) -> str:
    """A resident files a tenancy case in English through the REST channel."""
    body = await live.say(who, "My landlord won't give back my 3000 yuan deposit")
    body = await live.say(
        who, "cat:dispute_tenancy" if "cat:dispute_tenancy" in payloads(body) else "yes"
    )
    for _ in range(10):
        buttons = payloads(body)
        if any(p.startswith("street:") for p in buttons):
            break
        if buttons == ["yes", "no"]:
            body = await live.say(who, "yes")
        elif any(p.startswith("choice:") for p in buttons):
            body = await live.say(who, next(p for p in buttons if p.startswith("choice:")))
        elif "skip" in buttons:
            body = await live.say(who, "skip")
        else:
            body = await live.say(who, "Mr Wang, the landlord")
    await live.say(who, "street:xixiang")
    await live.say(who, "comm:")
    await live.say(who, "13900001111")
    body = await live.say(who, "submit")  # consent is given with the submit button
    return str(body[0]["text"].split("case number is ")[1].split(" ")[0])


# --------------------------------------------------------------------------------- tests


async def test_from_chat_to_rating_without_a_reload(live: Live, browser: Browser) -> None:
    page = await signed_in(browser, live, "li") if await _users(live) else None
    assert page is not None
    await page.wait_for_selector("#queue[data-connected='1']")
    reference = await file_by_chat(live, "bridge-7")
    # The new case appears in the open queue by itself (SSE → fragment refresh).
    await page.wait_for_selector(f"#queue >> text={reference}", timeout=LIVE_TIMEOUT_MS)
    await shoot(page, "queue")
    await page.click(f"text={reference}")
    await page.click("#claim")
    await page.wait_for_selector("text=您已受理这个案件")
    await page.fill("#reply-text", "您好,我是西乡的调解员小李,明天上午给您打电话。")
    await page.click("#send-reply")
    await page.wait_for_selector(".flash")
    out = await live.events(reference, "message_out")
    assert [e.data["text"] for e in out] == ["您好,我是西乡的调解员小李,明天上午给您打电话。"]
    assert live.port.sent and live.port.sent[-1][0] == "bridge-7"
    assert "明天上午" in live.port.sent[-1][1][0].text
    # The resident answers; the REST bridge gets the mediator's words with the answer,
    # and the answer shows on the open case page without a reload.
    body = await live.say("bridge-7", "OK, I am at home tomorrow morning")
    assert any("明天上午" in item["text"] for item in body)
    await page.wait_for_selector(
        "#timeline >> text=OK, I am at home tomorrow morning", timeout=LIVE_TIMEOUT_MS
    )
    await page.select_option("#outcome-select", "agreement")
    await page.click("#set-outcome")
    await page.wait_for_selector(".flash")
    await page.select_option("#status-select", "resolved")
    await page.click("#set-status")
    await page.wait_for_selector(".flash")
    rating = live.port.sent[-1][1][0]
    assert f"rate:{reference}:5" in [b.payload for b in rating.buttons[0]]
    await live.say("bridge-7", f"rate:{reference}:5")
    await page.reload()
    assert (await page.inner_text("#rating")).strip() == "5"
    await shoot(page, "case")


async def _users(live: Live) -> bool:
    await add_user(live.store, "li", "xixiang", name="调解员小李")
    await add_user(live.store, "zhao", "xixiang", name="调解员小赵")
    await add_user(live.store, "chen", "fuyong", name="调解员小陈")
    await add_user(live.store, "boss", "xixiang", MediatorRole.SUPERVISOR, name="西乡主任")
    await add_user(live.store, "fulian", "baoan", MediatorRole.DEPARTMENT, name="区妇联")
    return True


async def test_two_mediators_claim_at_once_and_one_wins(live: Live, browser: Browser) -> None:
    await _users(live)
    reference = await file_chat_case(live.store)
    first = await signed_in(browser, live, "li")
    second = await signed_in(browser, live, "zhao")
    for page in (first, second):
        await page.goto(f"{live.base}/desk/cases/{reference}")
    await asyncio.gather(first.click("#claim"), second.click("#claim"))
    for page in (first, second):
        await page.wait_for_selector(".flash")
    texts = [await page.inner_text(".flash") for page in (first, second)]
    assert sorted("您已受理" in text for text in texts) == [False, True]
    assert len(await live.events(reference, "claim")) == 1


async def test_other_centre_403_and_payloads_inert(live: Live, browser: Browser) -> None:
    await _users(live)
    words = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">押金不退'
    reference = await file_chat_case(live.store, words=words)
    outsider = await signed_in(browser, live, "chen")
    answer = await outsider.goto(f"{live.base}/desk/cases/{reference}")
    assert answer is not None and answer.status == 403
    answer = await outsider.goto(f"{live.base}/desk/cases/{reference}/evidence/1")
    assert answer is not None and answer.status == 403
    page = await signed_in(browser, live, "li")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(f"{live.base}/desk/cases/{reference}")
    assert "<script>" in await page.inner_text("#words")
    await page.goto(f"{live.base}/desk/")
    assert await page.evaluate("window.__xss") is None and dialogs == []
    # A state-changing request without the CSRF token is refused.
    refused = await page.request.post(f"{live.base}/desk/cases/{reference}/claim")
    assert refused.status == 403
    assert await live.events(reference, "claim") == []


async def test_walk_in_and_partner_department(live: Live, browser: Browser) -> None:
    await _users(live)
    other = await file_chat_case(live.store, chat_id="r9")
    page = await signed_in(browser, live, "li")
    await page.goto(f"{live.base}/desk/intake?kind=dispute_family")
    await page.fill("#words", "邻居家夫妻天天吵架,孩子没人管")
    await page.select_option("#street", "xixiang")
    await page.fill("#phone", "13700002222")
    await page.check("#consent")
    await page.click("#file-case")
    await page.wait_for_url("**/desk/cases/*")
    reference = page.url.rsplit("/", 1)[1]
    async with live.store.sessions() as session:
        case = await get_case(session, reference)
    assert case.channel == "walk_in" and case.street == "西乡" and case.centre is not None
    assert case.centre.code == "xixiang" and case.risk_level.value == "normal"
    await page.click("#claim")
    await page.wait_for_selector(".flash")
    await page.fill("#summon-request", "请妇联协助家访")
    await page.click("#summon")
    await page.wait_for_selector(".flash")
    department = await signed_in(browser, live, "fulian")
    queue = await department.inner_text("#queue")
    assert reference in queue and other not in queue
    await department.goto(f"{live.base}/desk/cases/{reference}")
    await department.check("input[name=state][value=handled]")
    await department.fill("#rb-reason", "已上门家访")
    await department.click("#report-back")
    await department.wait_for_selector(".flash")
    await page.wait_for_selector("#timeline >> text=已上门家访", timeout=LIVE_TIMEOUT_MS)
    answer = await department.goto(f"{live.base}/desk/cases/{other}")
    assert answer is not None and answer.status == 403


async def test_reports_and_xlsx_export(live: Live, browser: Browser) -> None:
    await _users(live)
    labour = await file_chat_case(live.store, category="dispute_labor", words="欠薪 13812345678")
    await file_chat_case(live.store, chat_id="r2", community="固戍")
    await file_chat_case(live.store, chat_id="r3", street="xinan", category="dispute_neighbor")
    page = await signed_in(browser, live, "boss")
    await page.goto(f"{live.base}/desk/reports")
    await page.wait_for_selector("table.heat")
    await page.wait_for_function(
        "Array.from(document.querySelectorAll('.charts img')).every(i => i.naturalWidth > 0)"
    )
    await shoot(page, "reports")
    await page.goto(f"{live.base}/desk/reports?kind=dispute_labor")
    async with page.expect_download() as waiting:
        await page.click("#export-xlsx")
    download = await waiting.value
    saved = await download.path()
    book = load_workbook(io.BytesIO(await asyncio.to_thread(Path(saved).read_bytes)))
    rows = list(book.active.iter_rows(values_only=True))
    assert [row[0] for row in rows[1:]] == [labour]
    flat = " ".join(str(v) for row in rows for v in row)
    assert "13812345678" not in flat and "138****5678" in flat
