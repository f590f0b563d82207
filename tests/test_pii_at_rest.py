"""Nothing personal in the clear (issue 14), checked the way an auditor would: grep.

A resident files a case over the REST channel of the real app (and, in the second test,
over Telegram through the stand-in Bot API) with a story that holds a mobile number,
an 18-digit ID card number with a valid checksum, a Luhn-valid bank card number typed
in groups and an e-mail address, and gives another number at the phone step. A
mediator claims it in the web workspace, replies and notes with more numbers, summons a
department (whose report quotes one), resolves it; the resident writes again and
leaves a rating comment with a number. Then every table and column of the store (and,
on SQLite, the raw database and WAL files), every log line written at DEBUG (through
the application's log filters) and every INFO line (without them), and every export —
the workspace's CSV and Excel, the reports page, ``tiaojie case show`` / ``audit`` /
``report``, ``/mydata``, the administrators' resident export — is searched for each
number as typed and as bare digits: none may appear. Only the case's own mediator,
after the audited reveal, is shown them in full (checked too).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openpyxl import load_workbook
from sqlalchemy import inspect, select, text

from bot.case_view import render_case_text
from bot.channels.sanitise import install_log_filter
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import create_app
from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage.db import create_engine
from storage.models import MediatorRole, ProcessedUpdate
from storage.outbox import OutboxMessage
from storage.redact import id_card_valid, luhn_valid
from storage.review import NluCapture
from storage.summons import Summons
from tests.test_rest_channel import URL, payloads
from tests.workspace_support import add_user, csrf_of, sign_in

STORY_PHONE = "13866017325"
STEP_PHONE = "13900451276"
LATER_PHONE = "15012983467"
ID_NUMBER = "440306198503124519"
NOTE_ID = "440306199001011236"
BANK_TYPED = "6222 0212 3456 7890 128"
REPLY_BANK = "6217000012345670"
EMAIL = "wang.xiaoming@example.com"

STORY = (
    "老板拖欠我们三个月工资,一共8000元,厂在西乡,十几个工友都没拿到钱。"
    f"我电话{STORY_PHONE},身份证{ID_NUMBER},工资卡{BANK_TYPED},邮箱{EMAIL}"
)


def _variants() -> dict[str, str]:
    """Every way a number may show: as typed, bare digits, and the e-mail's name."""
    found: dict[str, str] = {}
    for raw in (STORY_PHONE, STEP_PHONE, LATER_PHONE, ID_NUMBER, NOTE_ID, REPLY_BANK, EMAIL):
        found[raw] = raw
    found[BANK_TYPED] = BANK_TYPED
    found[BANK_TYPED.replace(" ", "")] = BANK_TYPED
    found[EMAIL.split("@")[0]] = EMAIL
    for phone in (STORY_PHONE, STEP_PHONE, LATER_PHONE):
        found[f"{phone[:3]} {phone[3:7]} {phone[7:]}"] = phone
        found[f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"] = phone
    return found


VARIANTS = _variants()


def leaks(text: str) -> list[str]:
    """The personal numbers found in ``text`` (empty: nothing in the clear)."""
    return sorted({raw for variant, raw in VARIANTS.items() if variant in text})


def test_the_numbers_are_what_they_claim() -> None:
    assert id_card_valid(ID_NUMBER) and id_card_valid(NOTE_ID)
    assert luhn_valid(BANK_TYPED.replace(" ", "")) and luhn_valid(REPLY_BANK)


# ------------------------------------------------------------------------------ logs


@pytest.fixture
def logs() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """(DEBUG through the application's log filters, INFO as our code writes it)."""
    root = logging.getLogger()
    debug_out, info_out = io.StringIO(), io.StringIO()
    debug = logging.StreamHandler(debug_out)
    debug.setLevel(logging.DEBUG)
    info = logging.StreamHandler(info_out)
    info.setLevel(logging.INFO)
    for handler in (debug, info):
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    holder = logging.Logger("capture")  # the filters go on our DEBUG handler only
    holder.addHandler(debug)
    install_log_filter(holder)
    level = root.level
    root.addHandler(debug)
    root.addHandler(info)
    root.setLevel(logging.DEBUG)
    try:
        yield debug_out, info_out
    finally:
        root.removeHandler(debug)
        root.removeHandler(info)
        root.setLevel(level)


# ------------------------------------------------------------------------------ store


async def scan_store(url: str) -> dict[str, list[str]]:
    """``table.column`` → numbers found in the clear, over every table of the store."""
    found: dict[str, list[str]] = {}
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            assert {"cases", "case_events", "conversations", "outbox", "nlu_captures"} <= set(
                tables
            )
            for table in tables:
                result = await connection.execute(text(f'SELECT * FROM "{table}"'))
                for row in result.mappings():
                    for column, value in row.items():
                        if isinstance(value, bytes | memoryview):
                            shown = bytes(value).decode("latin-1")
                        elif isinstance(value, dict | list):
                            shown = json.dumps(value, ensure_ascii=False)
                        else:
                            shown = str(value)
                        hits = leaks(shown)
                        if hits:
                            found.setdefault(f"{table}.{column}", []).extend(hits)
    finally:
        await engine.dispose()
    return found


def scan_sqlite_files(url: str) -> list[str]:
    """The database file and its WAL, byte for byte (freed pages included)."""
    path = Path(url.split("///", 1)[1])
    with sqlite3.connect(path) as connection:  # the WAL as another process leaves it
        connection.execute("SELECT count(*) FROM cases").fetchone()
    found: list[str] = []
    for name in (path, Path(f"{path}-wal")):
        if name.exists():
            found += leaks(name.read_bytes().decode("utf-8", errors="replace"))
    return found


# ------------------------------------------------------------------------- the flow


@pytest.fixture
async def app(
    db_url: str, nlu: NLUBackend, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, Store, Any]]:
    settings = load_settings(
        database_url=db_url, data_dir=tmp_path / "var", secret_key="pii-secret", sweep_seconds=0
    )
    store = Store.open(settings)
    application = create_app(settings, nlu, store=store)
    async with TestClient(TestServer(application)) as client:
        yield client, store, settings
    await store.close()


_DELIVERIES = itertools.count(1)


async def send(client: TestClient, sender: str, message: str) -> list[dict[str, Any]]:
    """One message as a bridge with message ids sends it (its replies are then kept
    with the delivery, for a retry: they must be masked there too)."""
    body = {"sender": sender, "message": message, "message_id": f"m-{next(_DELIVERIES)}"}
    response = await client.post(URL, json=body)
    assert response.status == 200, await response.text()
    return list(await response.json())


def _texts(body: list[dict[str, Any]]) -> str:
    return "\n".join(str(item.get("text") or "") for item in body)


async def rest_intake(http: TestClient, sender: str, db_url: str | None = None) -> str:
    """The whole intake by REST; returns the reference. With ``db_url``, the store is
    searched at the review, while the draft (story, phone) waits in the conversation."""
    body = await send(http, sender, STORY)
    for _ in range(30):
        buttons = payloads(body)
        said = _texts(body)
        if "submit" in buttons:
            break
        if any(p.startswith("street:") for p in buttons):
            body = await send(http, sender, "street:xixiang")
        elif any(p.startswith("comm:") for p in buttons):
            # No community: the case stays with the street's centre (where "li" works).
            body = await send(http, sender, "comm:")
        elif "手机号码" in said:
            body = await send(http, sender, STEP_PHONE)
        elif "yes" in buttons:
            body = await send(http, sender, "yes")
        elif "cat:dispute_labor" in buttons:
            body = await send(http, sender, "cat:dispute_labor")
        elif any(p.startswith("choice:") for p in buttons):
            body = await send(http, sender, next(p for p in buttons if p.startswith("choice:")))
        elif "skip" in buttons:
            body = await send(http, sender, "skip")
        else:
            body = await send(http, sender, "宏达电子厂")
    assert "submit" in payloads(body), _texts(body)
    if db_url is not None:
        assert await scan_store(db_url) == {}, "an open draft left a number in the clear"
    body = await send(http, sender, "submit")
    found = re.search(r"BA-\d{8}-\d{4}", _texts(body))
    assert found, _texts(body)
    return found.group()


async def post_form(client: TestClient, path: str, page: str, **data: str) -> Any:
    token = csrf_of(await (await client.get(page)).text())
    return await client.post(path, data={"csrf": token, **data}, allow_redirects=False)


async def test_nothing_personal_in_the_clear_after_a_full_intake(
    app: tuple[TestClient, Store, Any], db_url: str, logs: Any
) -> None:
    http, store, settings = app
    debug_out, info_out = logs
    sender = "pii-resident"

    # 1. The story with every kind of number; while the intake is open, the draft
    #    (story and phone typed at the phone step) is in the store, sealed.
    reference = await rest_intake(http, sender, db_url)

    # 2. Staff: the mediator of the street claims, replies, notes, summons a department.
    await add_user(store, "li", "xixiang")
    await add_user(store, "zhao", "xixiang")
    await add_user(store, "boss", "baoan", MediatorRole.ADMIN)
    await add_user(store, "chief", "xixiang", MediatorRole.SUPERVISOR)
    department = await add_user(store, "fulian", "baoan", MediatorRole.DEPARTMENT)
    mediator = TestClient(TestServer(http.app))
    await mediator.start_server()
    try:
        await sign_in(mediator, "li")
        page = f"/desk/cases/{reference}"
        html = await (await mediator.get(page)).text()
        assert not leaks(html), "the case page before the claim"
        assert (await post_form(mediator, f"{page}/claim", page)).status == 303
        await send(http, sender, f"我换了新号码{LATER_PHONE},请打这个")  # relayed
        reply = f"收到。请把工资卡{REPLY_BANK}的流水和邮箱{EMAIL}里的工资条发来"
        assert (await post_form(mediator, f"{page}/reply", page, text=reply)).status == 303
        note = f"已核对身份证{NOTE_ID},与陈述一致"
        assert (await post_form(mediator, f"{page}/note", page, text=note)).status == 303
        summon = await post_form(
            mediator,
            f"{page}/summon",
            page,
            department=str(department.mediator_id),
            request=f"请联系居民{STEP_PHONE}",
        )
        assert summon.status == 303
        # The resident's next message carries the mediator's reply (the REST outbox).
        answered = await send(http, sender, "好的")
        assert REPLY_BANK in _texts(answered)  # the resident reads it as written

        # The department reports back, quoting a number.
        office = TestClient(TestServer(http.app))
        await office.start_server()
        try:
            await sign_in(office, "fulian")
            back = await post_form(
                office,
                f"{page}/report-back",
                page,
                state="handled",
                reason=f"已电话联系{LATER_PHONE}",
            )
            assert back.status == 303
        finally:
            await office.close()

        # Resolved; the resident rates it low and comments with a number.
        resolved = await post_form(mediator, f"{page}/status", page, status="resolved")
        assert resolved.status == 303
        asked = await send(http, sender, "结果呢")
        assert f"rate:{reference}:2" in payloads(asked), _texts(asked)
        await send(http, sender, f"rate:{reference}:2")
        await send(http, sender, f"太慢了,以后打{LATER_PHONE}")

        # 3. What everyone but the case's own mediator sees: masked.
        shown: dict[str, str] = {}
        shown["own mediator's case page, before the reveal"] = await (
            await mediator.get(page)
        ).text()
        shown["queue"] = await (await mediator.get("/desk/?all=1")).text()
        shown["export.csv"] = (await (await mediator.get("/desk/export.csv")).read()).decode(
            "utf-8-sig"
        )
        book = load_workbook(io.BytesIO(await (await mediator.get("/desk/export.xlsx")).read()))
        shown["export.xlsx"] = "\n".join(
            str(cell) for row in book.active.iter_rows(values_only=True) for cell in row
        )
        colleague = TestClient(TestServer(http.app))
        await colleague.start_server()
        try:
            await sign_in(colleague, "zhao")
            shown["colleague's case page"] = await (await colleague.get(page)).text()
            refused = await post_form(colleague, f"{page}/phone", page)
            assert refused.status == 403
            shown["colleague's refused reveal"] = await refused.text()
            await sign_in(colleague, "chief")
            shown["reports"] = await (await colleague.get("/desk/reports?all=1")).text()
            shown["supervisor's case page"] = await (await colleague.get(page)).text()
            await sign_in(colleague, "boss")
            shown["audit page"] = await (
                await colleague.get(f"/desk/admin/audit?ref={reference}")
            ).text()
            for fmt in ("txt", "json"):
                exported = await post_form(
                    colleague,
                    "/desk/admin/residents/export",
                    "/desk/admin/residents",
                    channel="rest",
                    id=sender,
                    basis="书面申请 2026-001,窗口核验身份",
                    format=fmt,
                )
                assert exported.status == 200
                shown[f"admin export ({fmt})"] = await exported.text()
        finally:
            await colleague.close()
        mine = await send(http, sender, "/mydata")
        shown["/mydata replies"] = _texts(mine)
        files = list((Path(settings.data_dir) / "exports").iterdir())
        assert files
        shown["/mydata file"] = "\n".join(p.read_text(encoding="utf-8") for p in files)
        async with store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            events = await case_repo.case_events(session, case)
            shown["case show"] = render_case_text(case, events, "zh", settings.timezone)
        for where, content in shown.items():
            assert not leaks(content), f"{where}: {leaks(content)}"
        assert "138****7325" in shown["colleague's case page"]  # masked, not dropped

        # 4. The case's own mediator, after the audited click, sees it all in full.
        revealed = await post_form(mediator, f"{page}/phone", page)
        assert revealed.status == 200
        full = await revealed.text()
        for number in (STEP_PHONE, STORY_PHONE, ID_NUMBER, BANK_TYPED, EMAIL, NOTE_ID):
            assert number in full, number
        assert LATER_PHONE in full and REPLY_BANK in full
    finally:
        await mediator.close()
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        kinds = [e.kind for e in await case_repo.case_events(session, case)]
        sealed_rows = {
            "case words": case.resident_words_sealed,
            "rating comment": case.rating_comment_sealed,
            "summons": (await session.execute(select(Summons.request_sealed))).scalar(),
            "kept replies": (
                await session.execute(
                    select(ProcessedUpdate.update_id).where(
                        ProcessedUpdate.replies_sealed.is_not(None)
                    )
                )
            ).scalar(),
            "outbox": (
                await session.execute(
                    select(OutboxMessage.id).where(OutboxMessage.payload_sealed.is_not(None))
                )
            ).scalar(),
        }
        captures = list((await session.execute(select(NluCapture.text_masked))).scalars())
    assert kinds.count("phone_revealed") == 1 and "data_exported" in kinds
    # Masked in the columns, the originals sealed beside them (not merely dropped).
    assert all(sealed_rows.values()), sealed_rows
    assert any("138****7325" in capture for capture in captures), captures

    # 5. The store, every table and column (and the SQLite files byte for byte).
    assert await scan_store(db_url) == {}
    if db_url.startswith("sqlite"):
        assert scan_sqlite_files(db_url) == []

    # 6. The logs: DEBUG through the application's filters, INFO as written.
    debug_lines = debug_out.getvalue()
    assert "pii-resident" in debug_lines or "rest" in debug_lines  # something was logged
    assert leaks(debug_lines) == [], [line for line in debug_lines.splitlines() if leaks(line)][:5]
    info_lines = info_out.getvalue()
    assert info_lines and leaks(info_lines) == [], [
        line for line in info_lines.splitlines() if leaks(line)
    ][:5]


# -------------------------------------------------------------------- the CLI, too


@pytest.fixture
def sqlite_only(db_url: str) -> str:
    if not db_url.startswith("sqlite"):
        pytest.skip("the command line is run once, on the SQLite file")
    return db_url


async def test_command_line_views_are_masked(
    app: tuple[TestClient, Store, Any], sqlite_only: str, tmp_path: Path
) -> None:
    """``tiaojie case show``, ``case audit --format csv`` and ``report --format csv`` as
    real processes on the store a REST intake with the numbers wrote."""
    import os

    from tests.test_cli import run_cli

    http = app[0]
    reference = await rest_intake(http, "pii-cli")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_"))}
    env.update(
        TIAOJIE_DATABASE_URL=sqlite_only,
        TIAOJIE_DATA_DIR=str(tmp_path / "var"),
        TIAOJIE_SECRET_KEY="pii-secret",
        COLUMNS="200",
    )
    outputs = await asyncio.gather(
        asyncio.to_thread(run_cli, "case", "show", reference, env=env),
        asyncio.to_thread(run_cli, "case", "audit", reference, "--format", "csv", env=env),
        asyncio.to_thread(run_cli, "report", "--format", "csv", env=env),
    )
    for done in outputs:
        assert done.returncode == 0, done.stderr
        assert not leaks(done.stdout + done.stderr), done.args
    assert "138****7325" in outputs[0].stdout


# ----------------------------------------------------------------------- Telegram


async def telegram_intake(bot: Any, chat: int) -> str:
    """A Telegram intake whose story holds every number (in Fuyong, where the test
    network's station has a group); a phone asked for is shared as a contact."""
    await bot.say(chat, STORY.replace("西乡", "福永"))
    await bot.replies(chat, 3)
    await bot.settle(chat, 0.2)
    for _ in range(14):
        markup = bot.sent(chat)[-1].params.get("reply_markup") or {}
        keyboard = markup.get("keyboard")
        # Only the last message's own buttons: an older keyboard is a past question.
        buttons = [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]
        before = len(bot.sent(chat))
        if keyboard and keyboard[0][0].get("request_contact"):
            bot.api.push_update(bot.api.contact_update(chat, f"+86{STEP_PHONE}"))
            await bot.replies(chat, before + 1)
        elif "submit" in buttons:
            break
        elif any(p.startswith("street:") for p in buttons):
            await bot.press(chat, "street:fuyong")
        elif any(p.startswith("comm:") for p in buttons):
            await bot.press(chat, "comm:凤凰" if "comm:凤凰" in buttons else buttons[0])
        elif "yes" in buttons:
            await bot.press(chat, "yes")
        elif "cat:dispute_labor" in buttons:
            await bot.press(chat, "cat:dispute_labor")
        elif any(p.startswith("choice:") for p in buttons):
            await bot.press(chat, next(p for p in buttons if p.startswith("choice:")))
        elif "skip" in buttons:
            await bot.press(chat, "skip")
        else:
            await bot.say(chat, "宏达电子厂")
            await bot.replies(chat, before + 1)
        await bot.settle(chat, 0.15)
    trail = [(c.params.get("text"), c.params.get("reply_markup")) for c in bot.sent(chat)]
    assert "submit" in bot.last_buttons(chat)[1], trail
    await bot.press(chat, "submit")
    await bot.settle(chat)
    filed = [c.params["text"] for c in bot.sent(chat) if "BA-" in c.params["text"]]
    found = re.search(r"BA-\d{8}-\d{4}", filed[-1] if filed else "")
    assert found, [c.params["text"] for c in bot.sent(chat)[-3:]]
    return found.group()


async def test_telegram_intake_cards_and_desk(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Path, logs: Any
) -> None:
    """Over Telegram: the centre's card and the store stay masked; the case's own
    mediator reads the words as said with /case (recorded); a colleague does not."""
    from tests.test_mediator_desk import STATION_CHAT, card_of, press, private, setup_network
    from tests.test_telegram import running_bot

    debug_out, info_out = logs
    resident = 7401
    async with running_bot(sqlite_url, nlu, tmp_path) as bot:
        await setup_network(bot)
        reference = await telegram_intake(bot, resident)
        card = await card_of(bot, STATION_CHAT, reference)
        await press(bot, STATION_CHAT, 9101, f"claim:{reference}", card)
        await bot.api.wait_for(
            "sendMessage",
            lambda c: c.chat_id == resident and "受理" in c.params["text"],
            timeout=10,
        )
        await private(bot, 9101, f"/note {reference} 身份证{NOTE_ID}已核对")
        await private(bot, 9101, f"/reply {reference} 请把卡号{REPLY_BANK}的流水发来")
        own = await private(bot, 9101, f"/case {reference}")
        other = await private(bot, 9102, f"/case {reference}")
        await bot.settle(STATION_CHAT)
        group = "\n".join(
            str(c.params.get("text") or "")
            for name in ("sendMessage", "editMessageText")
            for c in bot.api.calls_to(name)
            if c.chat_id == STATION_CHAT
        )
        async with bot.store.sessions() as session:
            case = await case_repo.get_case(session, reference)
            revealed = [e.kind for e in await case_repo.case_events(session, case)].count(
                "phone_revealed"
            )
    assert reference in group and not leaks(group), leaks(group)
    # The case's own mediator, with /case (the story's phone was taken as the contact).
    for number in (STORY_PHONE, ID_NUMBER, BANK_TYPED, EMAIL, NOTE_ID, REPLY_BANK):
        assert number in own, number
    assert not leaks(other), leaks(other)  # a colleague of the same station
    assert revealed == 1
    assert await scan_store(sqlite_url) == {}
    assert scan_sqlite_files(sqlite_url) == []
    assert not leaks(debug_out.getvalue()) and not leaks(info_out.getvalue())
