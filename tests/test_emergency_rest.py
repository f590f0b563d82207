"""Issue 9 on the REST channel: an emergency in each state of a conversation reaches
people with the resident's words within seconds, and goes up a level when nobody
acknowledges — with no Telegram at all (cards and staff reach other channels through
the desk service's ports: here recording stand-ins, as a WeCom robot or the workspace
would receive them)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from actions import casework
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import DESK_SERVICE, create_app
from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage.conversations import load_conversation, save_conversation
from storage.models import CaseStatus, MediatorRole, RiskLevel, utcnow
from storage.people import add_mediator
from tests.desk_support import RecordingCards, RecordingStaff

URL = "/webhooks/rest/webhook"
DANGER = "他现在拿着刀在我家门口说要砍死我,手机13812345678"
STATES = ["before_filing", "mid_intake", "filed", "claimed", "in_mediation", "resolved"]


async def say(http: TestClient, who: str, message: str) -> list[dict[str, Any]]:
    response = await http.post(URL, json={"sender": who, "message": message})
    assert response.status == 200
    return list(await response.json())


async def put_case_in_state(store: Store, who: str, state: str, mediator: Any) -> str:
    """A case of this chat, filed through the intake service's own action, in ``state``."""
    from actions.intake import file_case
    from storage.people import get_or_create_resident

    async with store.sessions.begin() as session:
        resident = await get_or_create_resident(session, "rest", who)
        filed = await file_case(
            session,
            {
                "words": ["楼上邻居装修把我家墙弄裂了"],
                "category": "dispute_neighbor",
                "street": "xixiang",
                "community": "流塘",
                "phone": "13900001111",
                "consent": True,
            },
            resident=resident,
            channel="rest",
            chat_id=who,
            language="zh",
            vault=store.vault,
            reason="submit",
        )
        _, version = await load_conversation(session, "rest", who)
        await save_conversation(
            session,
            "rest",
            who,
            {
                "step": "done",
                "lang": "zh",
                "lang_set": False,
                "draft": None,
                "cases": [filed.reference],
            },
            version,
        )
    if state in ("claimed", "in_mediation", "resolved"):
        async with store.sessions.begin() as session:
            await casework.claim(session, filed.reference, mediator)
            if state in ("in_mediation", "resolved"):
                await casework.set_status(
                    session, filed.reference, mediator, CaseStatus.IN_MEDIATION
                )
            if state == "resolved":
                await casework.set_status(session, filed.reference, mediator, CaseStatus.RESOLVED)
    return filed.reference


@pytest.mark.parametrize("state", STATES)
async def test_an_emergency_on_rest_reaches_people_in_every_state(
    state: str, db_url: str, nlu: NLUBackend, tmp_path: Path
) -> None:
    settings = load_settings(database_url=db_url, data_dir=tmp_path / "var", sweep_seconds=0)
    store = Store.open(settings)
    app = create_app(settings, nlu, store=store)
    desk = app[DESK_SERVICE]
    cards = RecordingCards({"xixiang", "baoan", "xixiang-liutang", "fuyong"})
    staff = RecordingStaff()
    desk.add_card_target(cards)
    desk.add_staff_port(staff)
    who = f"rest-{state}"
    try:
        async with TestClient(TestServer(app)) as http:
            async with store.sessions.begin() as session:
                mediator = await add_mediator(
                    session,
                    channel="test",
                    external_id="m1",
                    display_alias="调解员阿芳",
                    centre_code="xixiang",
                )
                await add_mediator(
                    session,
                    channel="test",
                    external_id="boss",
                    display_alias="西乡主任",
                    centre_code="xixiang",
                    role=MediatorRole.SUPERVISOR,
                )
                await add_mediator(
                    session,
                    channel="test",
                    external_id="district",
                    display_alias="区主任",
                    centre_code="baoan",
                    role=MediatorRole.SUPERVISOR,
                )
            reference = None
            if state == "mid_intake":
                await say(http, who, "我们住在西乡流塘,楼上邻居装修把我家墙弄裂了")
            elif state != "before_filing":
                reference = await put_case_in_state(store, who, state, mediator)
            started = time.monotonic()
            replies = await say(http, who, DANGER)
            elapsed = time.monotonic() - started
            text = "\n".join(r["text"] for r in replies)
            assert "110" in text and "1 个工作日" not in text and "24 小时" not in text
            async with store.sessions() as session:
                if reference is None:
                    state_now, _ = await load_conversation(session, "rest", who)
                    reference = state_now["cases"][-1]
                case = await case_repo.get_case(session, reference)
                events = await case_repo.case_events(session, case)
            assert case.risk_level == RiskLevel.URGENT
            said = [e for e in events if e.kind == "emergency"]
            assert said and "拿着刀" in said[-1].data["words"]
            assert "13812345678" not in said[-1].data["words"]  # phones masked
            # Within seconds (the reply waits for the alerts): a fresh urgent card with the
            # words, the danger and the place, and the supervisors told.
            assert elapsed < 5
            urgent = [c for _, c in cards.posts if c.reference == reference and c.trigger]
            assert urgent, cards.posts
            card = urgent[-1]
            assert "拿着刀" in card.trigger and "13812345678" not in card.trigger
            assert card.danger and card.urgent
            # No place in the first message: the district takes it (and its supervisor).
            nearest = "district" if state == "before_filing" else "boss"
            assert any("拿着刀" in t for t in staff.texts(nearest))
            if state in ("claimed", "in_mediation", "resolved"):
                assert any("拿着刀" in t for t in staff.texts("m1"))
            # Nobody acknowledges: past the urgent limit the alert goes up a level.
            await desk.sweep(utcnow() + timedelta(minutes=61))
            assert any("拿着刀" in t for t in staff.texts("district"))
            async with store.sessions() as session:
                case = await case_repo.get_case(session, reference)
                kinds = [e.kind for e in await case_repo.case_events(session, case)]
            assert "alert_escalated" in kinds
    finally:
        await store.close()
