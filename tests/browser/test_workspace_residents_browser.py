"""Issue 14 in a real browser: the case's own mediator reveals the words as said; an
administrator erases a resident's data after seeing what will happen."""

from __future__ import annotations

from typing import Any

from storage import cases as case_repo
from storage.models import CaseStatus, MediatorRole
from tests.browser import test_workspace_browser as base
from tests.browser.test_workspace_browser import Live, signed_in
from tests.workspace_support import add_user, file_chat_case

# The running app and Chromium, as the other browser tests have them (skips the same).
live = base.live
browser = base.browser

WORDS = "房东不退押金三千块,我的电话13812345678,卡号6222021234567890128"


async def test_own_mediator_reveals_the_words_as_said(live: Live, browser: Any) -> None:
    reference = await file_chat_case(live.store, words=WORDS)
    await add_user(live.store, "li", "xixiang")
    page = await signed_in(browser, live, "li")
    await page.goto(f"{live.base}/desk/cases/{reference}")
    words = await page.inner_text("#words")
    assert "138****5678" in words and "****0128" in words and "13812345678" not in words
    await page.click("#claim")
    await page.wait_for_selector("#reveal")
    await page.click("#reveal")
    await page.wait_for_selector("#revealed-note")
    assert "13812345678" in await page.inner_text("#words")
    assert "6222021234567890128" in await page.inner_text("#words")
    assert "13812345678" in await page.inner_text(".phone")
    assert len(await live.events(reference, "phone_revealed")) == 1
    # Reloaded, the page is masked again: the reveal was for that answer only.
    await page.goto(f"{live.base}/desk/cases/{reference}")
    assert "13812345678" not in await page.inner_text("#words")


async def test_administrator_erases_a_resident_after_the_preview(live: Live, browser: Any) -> None:
    reference = await file_chat_case(live.store, words=WORDS, chat_id="resident-9")
    await add_user(live.store, "boss", "baoan", MediatorRole.ADMIN)
    page = await signed_in(browser, live, "boss")
    await page.goto(f"{live.base}/desk/admin/residents")
    await page.select_option("#forget-channel", "rest")
    await page.fill("#forget-id", "resident-9")
    await page.click("#forget-preview")
    await page.wait_for_selector("#what-happens")
    assert reference in await page.inner_text("#what-happens")
    await page.fill("#forget-basis", "书面申请 2026-021")
    await page.check("#forget-check")
    await page.click("#forget")
    await page.wait_for_selector(".flash")
    assert "已删除" in await page.inner_text(".flash")
    async with live.store.sessions() as session:
        case = await case_repo.get_case(session, reference)
    assert case.status == CaseStatus.WITHDRAWN and case.resident_words == ""
