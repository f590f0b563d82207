"""The WeChat API client against the stand-in: one shared access token for all
processes, refreshed before it expires by one process at a time, and a refused token
retried once; plus ``tiaojie wechat menu``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.channels.wechat_api import WeChatApi, WeChatApiError
from bot.cli import app as cli
from bot.runtime import Store
from bot.wechat_commands import DEFAULT_MENU, MenuFileError, menu_payload
from storage.models import utcnow
from storage.wechat import read_token
from tests.support.wechat_api import APP_ID, APP_SECRET, WeChatApiStandIn

TOKEN_PATH = "/cgi-bin/token"


@pytest.fixture
async def api() -> AsyncIterator[WeChatApiStandIn]:
    async with WeChatApiStandIn() as stand_in:
        yield stand_in


def client(store: Store, stand_in: WeChatApiStandIn, clock=utcnow) -> WeChatApi:
    return WeChatApi(
        None, store, base_url=stand_in.base_url, app_id=APP_ID, app_secret=APP_SECRET, clock=clock
    )


async def test_processes_share_one_token_and_one_refresh(store: Store, api) -> None:
    # Three "processes" (clients with their own memory) asking at the same moment.
    workers = [client(store, api) for _ in range(3)]
    for worker in workers:
        await worker.start()
    try:
        tokens = await asyncio.gather(*(w.access_token() for w in workers for _ in range(4)))
        assert len(set(tokens)) == 1
        assert len(api.sent(TOKEN_PATH)) == 1
        async with store.sessions() as session:
            stored = await read_token(session, APP_ID)
        assert stored is not None and stored[0] == tokens[0]
        assert stored[1] - utcnow() > timedelta(hours=1, minutes=55)
        # Every worker can use it.
        await asyncio.gather(*(w.send_text("o-1", f"hello {i}") for i, w in enumerate(workers)))
        assert len(api.sent("/cgi-bin/message/custom/send")) == 3
    finally:
        for worker in workers:
            await worker.close()


async def test_token_is_refreshed_before_it_expires(store: Store, api) -> None:
    now = [utcnow()]
    worker = client(store, api, clock=lambda: now[0])
    await worker.start()
    try:
        first = await worker.access_token()
        now[0] += timedelta(hours=1, minutes=50)
        assert await worker.access_token() == first
        now[0] += timedelta(minutes=6)  # within 5 minutes of WeChat's 2 hours
        second = await worker.access_token()
        assert second != first and len(api.sent(TOKEN_PATH)) == 2
    finally:
        await worker.close()


async def test_refused_token_is_refreshed_once_and_the_call_retried(store: Store, api) -> None:
    worker = client(store, api)
    other = client(store, api)  # another process holding the same token in memory
    await worker.start()
    await other.start()
    try:
        await worker.send_text("o-1", "one")
        await other.send_text("o-1", "two")
        api.expire_tokens()
        await worker.send_text("o-1", "three")
        await other.send_text("o-1", "four")
        texts = [c.body["text"]["content"] for c in api.sent("/cgi-bin/message/custom/send")]
        assert texts == ["one", "two", "three", "four"]
        # The second process found the new token in the store: one refresh in all.
        assert len(api.sent(TOKEN_PATH)) == 2
    finally:
        await worker.close()
        await other.close()


async def test_failed_refresh_gives_the_lease_back(store: Store, api) -> None:
    worker = client(store, api)
    await worker.start()
    try:
        api.fail_next(TOKEN_PATH, 1, errcode=-1)
        with pytest.raises(WeChatApiError):
            await worker.access_token()
        # Nobody waits 30 s for a dead lease: the next call fetches at once.
        assert await asyncio.wait_for(worker.access_token(), 2)
    finally:
        await worker.close()


async def test_wechat_errors_are_raised_with_their_code(store: Store, api) -> None:
    worker = client(store, api)
    await worker.start()
    try:
        api.out_of_window.add("o-silent")
        with pytest.raises(WeChatApiError) as error:
            await worker.send_text("o-silent", "hello")
        assert error.value.errcode == 45015 and error.value.permanent
        api.fail_next("/cgi-bin/message/custom/send", 1, status=502)
        with pytest.raises(WeChatApiError) as error:
            await worker.send_text("o-1", "hello")
        assert not error.value.permanent
        media = api.add_media(b"x" * 2000)
        assert await worker.download_media(media, max_bytes=1000) is None
        data, mime = await worker.download_media(media, max_bytes=5000)  # type: ignore[misc]
        assert data == b"x" * 2000 and mime == "image/jpeg"
    finally:
        await worker.close()


# ------------------------------------------------------------------ the menu command


def test_menu_keys_are_the_channels_commands() -> None:
    from bot import wechat_commands
    from bot.channels import wechat

    assert wechat_commands.MENU_COMMANDS == wechat.MENU_COMMANDS


def test_default_menu_file_is_valid() -> None:
    payload = menu_payload(DEFAULT_MENU)
    assert [b["name"] for b in payload["button"]] == ["我要调解", "查进度", "更多"]
    assert payload["button"][0] == {"type": "click", "name": "我要调解", "key": "start"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("button: []", "button"),
        ("button:\n  - name: 调解\n    key: launch_rockets\n", "key must be one of"),
        ("button:\n  - name: 一二三四五六\n    key: start\n", "16 bytes"),
        ("button:\n  - name: a\n  - name: b\n    key: start\n", "exactly one"),
        ("button: [\n", "not valid YAML"),
    ],
)
def test_menu_file_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "menu.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MenuFileError, match=message):
        menu_payload(path)


async def test_menu_command_sets_the_menu(sqlite_url: str, api, tmp_path: Path) -> None:
    env = {
        "TIAOJIE_DATABASE_URL": sqlite_url,
        "TIAOJIE_DATA_DIR": str(tmp_path),
        "WECHAT_TOKEN": "t",
        "WECHAT_APP_ID": APP_ID,
        "WECHAT_APP_SECRET": APP_SECRET,
        "WECHAT_API_BASE_URL": api.base_url,
    }
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, cli, ["wechat", "menu", str(DEFAULT_MENU)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "5" in result.output
    assert api.menu == menu_payload(DEFAULT_MENU)
    api.fail_next("/cgi-bin/menu/create", 1, errcode=-1)
    result = await asyncio.to_thread(runner.invoke, cli, ["wechat", "menu"], env=env)
    assert result.exit_code == 1 and "-1" in result.output
