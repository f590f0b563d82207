"""Issue 12: a photo a resident sent on Telegram is shown in the web workspace through
its authorised evidence route (fetched from the Bot API, never a public URL), and only
to staff allowed to see the case."""

from __future__ import annotations

from typing import Any

import aiohttp

from nlu.interface import NLUBackend
from storage import cases as case_repo
from tests.test_telegram import file_labour_case, running_bot
from tests.workspace_support import PASSWORD, add_user, csrf_of

RESIDENT = 6001
PHOTO = b"\xff\xd8\xff\xe0" + b"pay-slip-bytes" * 50


async def signed_in(base: str, username: str) -> aiohttp.ClientSession:
    # Cookies for 127.0.0.1 need the unsafe jar (aiohttp refuses IP hosts by default).
    http = aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    page = await http.get("/desk/signin")
    token = csrf_of(await page.text())
    answer = await http.post(
        "/desk/signin",
        data={"username": username, "password": PASSWORD, "csrf": token, "next": "/desk/"},
        allow_redirects=False,
    )
    assert answer.status == 303
    return http


async def test_telegram_photo_is_shown_in_the_workspace(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Any
) -> None:
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        reference = await file_labour_case(bot, RESIDENT)
        bot.api.push_update(bot.api.photo_update(RESIDENT, PHOTO, file_size=len(PHOTO)))
        await bot.settle(RESIDENT, 1.0)
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            evidence = [
                e for e in await case_repo.case_events(session, case) if e.kind == "evidence"
            ]
        assert evidence, "the photo is evidence on the case"
        centre = case.centre.code
        await add_user(bot.store, "li", centre)
        await add_user(bot.store, "far", "shiyan" if not centre.startswith("shiyan") else "xinan")
        base = f"http://127.0.0.1:{bot.port}"
        url = f"/desk/cases/{reference}/evidence/{evidence[-1].id}"
        mine = await signed_in(base, "li")
        other = await signed_in(base, "far")
        try:
            shown = await mine.get(url)
            assert shown.status == 200 and await shown.read() == PHOTO
            refused = await other.get(url)
            assert refused.status == 403 and PHOTO not in await refused.read()
        finally:
            await mine.close()
            await other.close()
