"""Learning from residents, in a real browser (Playwright driving Debian's Chromium).

The whole app runs on 127.0.0.1 on a fresh SQLite store with the real NLU behind the
hot-swappable wrapper the running assistant uses; residents write through the REST
channel, so the inbox fills the way it does in production. An administrator labels
three messages with the keyboard, starts a retrain, watches its progress live, reads
the gate's comparison and activates the candidate; the registry shows it active, the
running app switches to it, and the labels carry the administrator's name. Without
Chromium the test skips with the reason, except under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from bot.model_swap import SwappableNLU
from bot.runtime import Store
from bot.web import create_app
from storage.db import create_engine, session_factory
from storage.models import MediatorRole
from storage.nlu_registry import ModelStatus, NluModel, active_version
from storage.phone import PhoneVault
from storage.review import CaptureStatus, NluCapture
from tests.conftest import IN_CI, ROOT
from tests.workspace_support import PASSWORD, add_user, workspace_settings

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
SHOTS = ROOT / "results" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
TRAINING_TIMEOUT_MS = 240_000

if not Path(CHROMIUM).exists():
    reason = f"no browser at {CHROMIUM} (apt-get install chromium fonts-wqy-microhei)"
    if IN_CI:
        raise RuntimeError(f"CI=true requires the browser tests to run: {reason}")
    pytest.skip(reason, allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright  # noqa: E402

#: First messages of four residents (one with a phone number, which must never show),
#: with the kind an administrator knows each one is.
RESIDENTS = {
    "r-wages": ("老板拖欠我三个月工资一共八千块,我电话13812345678", "dispute_labor"),
    "r-deposit": ("房东不退押金三千块,说墙刷坏了", "dispute_tenancy"),
    "r-noise": ("楼上邻居天天半夜装修,吵得孩子睡不着", "dispute_neighbor"),
    "r-parking": ("小区车位被别人长期占用,物业也不管", "dispute_property_mgmt"),
}


class Live:
    def __init__(self, base: str, store: Store, nlu: SwappableNLU) -> None:
        self.base = base
        self.store = store
        self.nlu = nlu

    async def say(self, sender: str, message: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.base}/webhooks/rest/webhook", json={"sender": sender, "message": message}
            ) as response,
        ):
            assert response.status == 200
            return list(await response.json())


@pytest.fixture
async def live(sqlite_url: str, tmp_path: Path, nlu: Any) -> AsyncIterator[Live]:
    engine = create_engine(sqlite_url)
    store = Store(engine=engine, sessions=session_factory(engine), vault=PhoneVault("test"))
    settings = workspace_settings(
        tmp_path,
        centres_file=ROOT / "storage/data/baoan_centres.yml",
        model_dir=tmp_path / "models",
    )
    # The running assistant's NLU: registers the loaded model as the active one and
    # follows the registry, so an activation reaches this app without a restart.
    swappable = SwappableNLU(nlu, sqlite_url, poll_seconds=0.5)
    await swappable.start()
    app = create_app(settings, swappable, store=store)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
    yield Live(f"http://127.0.0.1:{address[1]}", store, swappable)
    await runner.cleanup()
    await swappable.close()
    await engine.dispose()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        await launched.close()


async def signed_in(browser: Browser, live: Live, username: str) -> Page:
    page = await (await browser.new_context(viewport=DESKTOP)).new_page()
    await page.goto(f"{live.base}/desk/")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{live.base}/desk/")
    return page


async def focused_id(page: Page) -> int:
    return int(await page.get_attribute("#inbox .learn-item.focused", "data-id") or 0)


async def test_admin_labels_by_keyboard_retrains_and_activates(
    live: Live, browser: Browser
) -> None:
    for sender, (words, _kind) in RESIDENTS.items():
        await live.say(sender, words)
    await live.say("r-noise", "no")  # the resident says the proposed kind is wrong
    await add_user(live.store, "wang", "baoan", MediatorRole.ADMIN, name="王管理员")
    async with live.store.sessions() as session:
        before = await active_version(session)
    assert before is not None  # the loaded model, registered at start

    page = await signed_in(browser, live, "wang")
    await page.click("header nav >> text=管理")
    await page.click("nav.pages >> text=审核收件箱")
    await page.wait_for_selector("#inbox[data-keyboard='1']")
    assert "13812345678" not in await page.content() and "138****5678" in await page.content()
    ids = [
        int(x)
        for x in await page.eval_on_selector_all(
            "#inbox .learn-item", "items => items.map(i => i.dataset.id)"
        )
    ]
    assert len(ids) == 4
    first = await page.inner_text(f"#item-{ids[0]}")
    assert "居民否认了类型" in first and RESIDENTS["r-noise"][0] in first  # disagreement first

    async def key_for(capture_id: int) -> str:
        """The one key (1, 2 or 3) of the right kind among the model's top three."""
        text = await page.inner_text(f"#item-{capture_id} .words")
        kind = next(k for words, k in RESIDENTS.values() if words[:8] in text)
        key = await page.get_attribute(
            f"#item-{capture_id} .top-three button[value='{kind}']", "data-key"
        )
        assert key in ("1", "2", "3"), (text, kind)
        return key

    chosen = {capture_id: await key_for(capture_id) for capture_id in ids[:3]}
    values = {
        capture_id: await page.get_attribute(
            f"#item-{capture_id} button[data-key='{key}']", "value"
        )
        for capture_id, key in chosen.items()
    }

    # A number key labels the focused item; the focus moves on by itself.
    assert await focused_id(page) == ids[0]
    await page.keyboard.press(chosen[ids[0]])
    await page.wait_for_selector(f"#item-{ids[0]}.status-labelled")
    assert await focused_id(page) == ids[1]
    await page.keyboard.press("j")
    await page.keyboard.press("ArrowDown")
    assert await focused_id(page) == ids[3]
    await page.keyboard.press("k")
    await page.keyboard.press("ArrowUp")
    assert await focused_id(page) == ids[1]
    await page.keyboard.press(chosen[ids[1]])
    await page.wait_for_selector(f"#item-{ids[1]}.status-labelled")
    assert await focused_id(page) == ids[2]
    await page.keyboard.press(chosen[ids[2]])
    await page.wait_for_selector(f"#item-{ids[2]}.status-labelled")
    assert await focused_id(page) == ids[3]
    await page.keyboard.press("s")
    await page.wait_for_selector(f"#item-{ids[3]}.status-skipped")
    shown = await page.inner_text(f"#item-{ids[0]} .labelled")
    assert f"已标注为 {values[ids[0]]} · web:wang" in shown
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "learn-inbox-desktop.png"), full_page=True)

    # Retrain: the page follows the background training live, then shows the gate.
    await page.click("nav.pages >> text=语言模型")
    await page.click("#retrain")
    await page.wait_for_selector("#training[data-connected='1']")
    version = page.url.rsplit("/", 1)[1]
    assert version.startswith("nlu-")
    started = time.monotonic()
    await page.wait_for_selector(
        "#training[data-status='candidate'], #training[data-status='failed']",
        timeout=TRAINING_TIMEOUT_MS,
    )
    assert await page.get_attribute("#training", "data-status") == "candidate", (
        await page.inner_text("#training")
    )
    assert await page.eval_on_selector("#progress", "bar => bar.value") == 1
    assert await page.locator("#stages li").count() >= 2  # stages arrived one by one
    assert time.monotonic() - started < TRAINING_TIMEOUT_MS / 1000
    await page.click("#see-comparison")
    await page.wait_for_selector("#gate")
    verdict = await page.inner_text("#gate-verdict")
    assert "通过" in verdict and "未通过" not in verdict, await page.inner_text("#gate")
    assert await page.locator(".dataset[data-name='nlu_test.yml'] table.per-intent").count() == 1
    assert "macro-F1" in await page.inner_text(".dataset[data-name='nlu_test.yml']")
    await page.screenshot(path=str(SHOTS / "learn-gate-desktop.png"), full_page=True)

    await page.click("#gate button.activate")
    await page.wait_for_url(f"{live.base}/desk/learn/models")
    row = page.locator(f"tr[data-version='{version}']")
    assert await row.get_attribute("data-status") == "active"
    assert "★" in await row.inner_text() and "web:wang" in await row.inner_text()
    await page.screenshot(path=str(SHOTS / "learn-models-desktop.png"), full_page=True)

    async with live.store.sessions() as session:
        active = await active_version(session)
        assert active is not None and active[0] == version
        models = (await session.execute(select(NluModel))).scalars().all()
        assert {m.version: m.status for m in models}[before[0]] == ModelStatus.RETIRED
        labelled = (
            (
                await session.execute(
                    select(NluCapture).where(NluCapture.status == CaptureStatus.LABELLED)
                )
            )
            .scalars()
            .all()
        )
    assert sorted(r.id for r in labelled) == sorted(ids[:3])
    for capture in labelled:
        assert capture.label == values[capture.id] and capture.labelled_by == "web:wang"
        assert capture.labelled_at is not None
    # Every running process follows the registry: this one switches within seconds.
    deadline = time.monotonic() + 10
    while live.nlu.version != version:
        assert time.monotonic() < deadline, "the app did not switch to the new model"
        await asyncio.sleep(0.2)
