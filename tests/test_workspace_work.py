"""Workspace: staff intake, partner departments, reports, exports and administration."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from bot.runtime import Store
from storage.cases import get_case
from storage.models import Case, CaseStatus, MediatorRole, RiskLevel
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


async def _newest_walk_in(store: Store) -> str:
    async with store.sessions() as session:
        query = select(Case.reference).where(Case.channel == "walk_in").order_by(Case.id.desc())
        return str((await session.execute(query.limit(1))).scalar_one())


async def test_walk_in_case_is_routed_like_a_chat_case(store: Store, make_client) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    chat = await file_chat_case(store, street="xixiang", community="固戍", category="dispute_labor")
    await sign_in(client, "li")
    csrf = await token_from(client, "/desk/intake?kind=dispute_labor")
    response = await client.post(
        "/desk/intake",
        data={
            "csrf": csrf,
            "kind": "dispute_labor",
            "words": "老板拖欠三个月工资八千块",
            "street": "xixiang",
            "community": "固戍",
            "phone": "139 0000 1234",
            "consent": "yes",
        },
        allow_redirects=False,
    )
    assert response.status == 303
    # It went to the 固戍 station below li's street centre, like the chat case: li is
    # sent back to the intake form with the reference in a message.
    assert response.headers["Location"] == "/desk/intake"
    reference = await _newest_walk_in(store)
    async with store.sessions() as session:
        walk_in = await get_case(session, reference)
        by_chat = await get_case(session, chat)
    assert walk_in.channel == "walk_in" and walk_in.contact_consent
    assert walk_in.centre_id == by_chat.centre_id and walk_in.department_id == by_chat.department_id
    assert walk_in.phone_masked == "139****1234"
    staff = await events_of(store, reference, "staff_intake")
    assert staff and staff[0].data["consent"] is True


async def test_walk_in_with_alarming_words_is_urgent_and_needs_consent(
    store: Store, make_client
) -> None:
    client = await make_client()
    await add_user(store, "li", "xixiang")
    await sign_in(client, "li")
    csrf = await token_from(client, "/desk/intake")
    words = "丈夫喝醉了拿刀威胁要杀了我"
    refused = await client.post(
        "/desk/intake", data={"csrf": csrf, "kind": "dispute_family", "words": words}
    )
    assert refused.status == 400  # no consent ticked: nothing filed, the words kept
    assert words in await refused.text()
    response = await client.post(
        "/desk/intake",
        data={"csrf": csrf, "kind": "dispute_family", "words": words, "consent": "yes"},
        allow_redirects=False,
    )
    assert response.status == 303
    reference = await _newest_walk_in(store)
    async with store.sessions() as session:
        case = await get_case(session, reference)
    assert case.risk_level == RiskLevel.URGENT
    assert case.phone_masked is None  # a resident without a phone is fine


async def test_department_sees_only_summoned_case_and_reports_back(
    store: Store, make_client
) -> None:
    await add_user(store, "li", "xixiang")
    await add_user(store, "fulian", "baoan", MediatorRole.DEPARTMENT, name="区妇联")
    summoned = await file_chat_case(store, category="dispute_family")
    untouched = await file_chat_case(store, chat_id="r2")
    mediator = await make_client()
    await sign_in(mediator, "li")
    csrf = await token_from(mediator, f"/desk/cases/{summoned}")
    await mediator.post(f"/desk/cases/{summoned}/claim", data={"csrf": csrf})
    page = await (await mediator.get(f"/desk/cases/{summoned}")).text()
    assert "区妇联" in page
    department_id = page.split('id="summon-dept" name="department"><option value="')[1][:6]
    department_id = department_id.split('"')[0]
    answer = await mediator.post(
        f"/desk/cases/{summoned}/summon",
        data={"csrf": csrf, "department": department_id, "request": "请协助家访"},
        allow_redirects=False,
    )
    assert answer.status == 303
    department = await make_client()
    await sign_in(department, "fulian")
    queue = await (await department.get("/desk/")).text()
    assert summoned in queue and untouched not in queue
    assert (await department.get(f"/desk/cases/{untouched}")).status == 403
    token = await token_from(department, f"/desk/cases/{summoned}")
    assert (
        await department.post(f"/desk/cases/{summoned}/claim", data={"csrf": token})
    ).status == 403
    assert (
        await department.post(
            f"/desk/cases/{summoned}/status", data={"csrf": token, "status": "resolved"}
        )
    ).status == 403
    reported = await department.post(
        f"/desk/cases/{summoned}/report-back",
        data={"csrf": token, "state": "handled", "reason": "已上门家访,双方同意再谈"},
        allow_redirects=False,
    )
    assert reported.status == 303
    events = await events_of(store, summoned, "department_report")
    assert [(e.data["state"], e.data["reason"]) for e in events] == [
        ("handled", "已上门家访,双方同意再谈")
    ]
    assert await events_of(store, summoned, "summoned")


async def test_reports_page_and_charts_for_supervisors_only(store: Store, make_client) -> None:
    await add_user(store, "boss", "xixiang", MediatorRole.SUPERVISOR)
    await add_user(store, "li", "xixiang")
    await file_chat_case(store)
    await file_chat_case(store, chat_id="r2", category="dispute_labor")
    boss = await make_client()
    await sign_in(boss, "boss")
    page = await boss.get("/desk/reports")
    html = await page.text()
    assert page.status == 200 and "西乡" in html
    chart = await boss.get("/desk/reports/chart/kinds.svg")
    assert chart.status == 200 and chart.content_type == "image/svg+xml"
    assert (await chart.text()).lstrip().startswith("<?xml")
    mediator = await make_client()
    await sign_in(mediator, "li")
    assert (await mediator.get("/desk/reports")).status == 403


async def test_xlsx_export_holds_filtered_rows_with_phones_masked(
    store: Store, make_client
) -> None:
    await add_user(store, "boss", "xixiang", MediatorRole.SUPERVISOR)
    labour = await file_chat_case(store, category="dispute_labor", words="欠薪 13812345678")
    tenancy = await file_chat_case(store, chat_id="r2")
    client = await make_client()
    await sign_in(client, "boss")
    response = await client.get("/desk/export.xlsx?kind=dispute_labor")
    assert response.status == 200
    book = load_workbook(io.BytesIO(await response.read()))
    rows = list(book.active.iter_rows(values_only=True))
    references = [row[0] for row in rows[1:]]
    assert references == [labour] and tenancy not in references
    flat = " ".join(str(v) for row in rows for v in row)
    assert "13812345678" not in flat and "138****5678" in flat
    csv_body = await (await client.get("/desk/export.csv")).text()
    assert labour in csv_body and tenancy in csv_body and "13812345678" not in csv_body
    # Every export is on the timeline of each case it held.
    assert [e.data["format"] for e in await events_of(store, labour, "exported")] == [
        "xlsx",
        "csv",
    ]
    assert [e.data["format"] for e in await events_of(store, tenancy, "exported")] == ["csv"]


async def test_admin_pages_and_audit_trail(store: Store, make_client) -> None:
    await add_user(store, "root", "baoan", MediatorRole.ADMIN)
    await add_user(store, "li", "xixiang")
    reference = await file_chat_case(store)
    client = await make_client()
    await sign_in(client, "root")
    users = await (await client.get("/desk/admin/users")).text()
    assert "li" in users
    centres = await client.get("/desk/admin/centres")
    csrf = csrf_of(await centres.text())
    reloaded = await client.post(
        "/desk/admin/centres/reload", data={"csrf": csrf}, allow_redirects=True
    )
    assert reloaded.status == 200 and "已重新载入" in await reloaded.text()
    audit = await (await client.get(f"/desk/admin/audit?ref={reference}")).text()
    assert "filed" in audit and "routed" in audit
    mediator = await make_client()
    await sign_in(mediator, "li")
    assert (await mediator.get("/desk/admin/users")).status == 403
    assert (await mediator.get(f"/desk/admin/audit?ref={reference}")).status == 403


async def test_queue_filters_search_and_paging(store: Store, make_client) -> None:
    await add_user(store, "li", "xixiang")
    urgent = await file_chat_case(store, words="他拿刀砸门", risk="urgent", chat_id="u")
    for n in range(27):
        await file_chat_case(store, chat_id=f"r{n}", words=f"押金纠纷第{n}号")
    client = await make_client()
    await sign_in(client, "li")
    first = await (await client.get("/desk/")).text()
    assert first.index(urgent) < first.index("押金纠纷第0号")  # urgent first, then oldest
    assert "押金纠纷第26号" not in first
    second = await (await client.get("/desk/?page=2")).text()
    assert "押金纠纷第26号" in second
    found = await (await client.get("/desk/?q=第13号")).text()
    assert "押金纠纷第13号" in found and "押金纠纷第12号" not in found
    only_urgent = await (await client.get("/desk/?risk=urgent")).text()
    assert urgent in only_urgent and "押金纠纷" not in only_urgent
    # Searching for a phone number only matches references, never the words.
    assert "押金" not in await (await client.get("/desk/?q=13812345678")).text()
    async with store.sessions() as session:
        count = len(list((await session.execute(select(Case))).scalars()))
    assert count == 28
    assert CaseStatus.NEW  # the filters default to open cases


async def test_recategorise_records_old_and_new_kind(store: Store, make_client) -> None:
    await add_user(store, "li", "xixiang")
    reference = await file_chat_case(store, category="dispute_tenancy")
    client = await make_client()
    await sign_in(client, "li")
    csrf = await token_from(client, f"/desk/cases/{reference}")
    await client.post(f"/desk/cases/{reference}/claim", data={"csrf": csrf})
    response = await client.post(
        f"/desk/cases/{reference}/recategorise",
        data={"csrf": csrf, "kind": "dispute_labor"},
        allow_redirects=False,
    )
    assert response.status == 303
    async with store.sessions() as session:
        case = await get_case(session, reference)
    assert case.category == "dispute_labor" and case.department is not None
    changes = await events_of(store, reference, "recategorised")
    assert [(e.data["from"], e.data["to"]) for e in changes] == [
        ("dispute_tenancy", "dispute_labor")
    ]
    bogus = await client.post(
        f"/desk/cases/{reference}/recategorise",
        data={"csrf": csrf, "kind": "no_such_kind"},
        allow_redirects=False,
    )
    assert bogus.status == 303 and len(await events_of(store, reference, "recategorised")) == 1
