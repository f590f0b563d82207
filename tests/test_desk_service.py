"""The desk service on the real store (SQLite file and PostgreSQL), through ports that
record what another channel would receive (issue 10's findings 14, 16–19, 22, 23 and
the store's invariant that every case has a centre and a department)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from actions import casework
from actions.desk import DeskService
from actions.intake import lookup_status
from bot.case_view import render_case_text
from bot.i18n import raw
from bot.intake_service import _status_item
from bot.runtime import Store
from storage import cases as case_repo
from storage.directory import any_telegram_group, get_centre
from storage.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Centre,
    MediatorRole,
    RiskLevel,
    utcnow,
)
from storage.people import deactivate_mediator, get_or_create_resident
from tests.desk_support import CHANNEL, RecordingCards, desk_on, new_case, staff_member


async def events_of(store: Store, reference: str) -> list[CaseEvent]:
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        return await case_repo.case_events(session, case)


async def get(store: Store, reference: str) -> Case:
    async with store.sessions() as session:
        return await case_repo.get_case(session, reference)


# ------------------------------------------------------------------ finding 14


async def test_deactivating_a_mediator_releases_their_cases(store: Store) -> None:
    desk = desk_on(store, {"fuyong-fenghuang", "fuyong"})
    leaving = await staff_member(store, "m1", "fuyong-fenghuang")
    await staff_member(store, "s1", "fuyong", MediatorRole.SUPERVISOR)
    normal = await new_case(store, chat="r1")
    urgent = await new_case(store, chat="r2", risk="urgent", reason="emergency")
    for reference in (normal, urgent):
        await desk.service.claim(reference, leaving)
    async with store.sessions.begin() as session:
        gone = await deactivate_mediator(session, CHANNEL, "m1")
    released = await desk.service.deactivate(gone)
    assert sorted(released) == sorted([normal, urgent])
    for reference, chat in ((normal, "r1"), (urgent, "r2")):
        case = await get(store, reference)
        assert case.status == CaseStatus.NEW and case.mediator_id is None
        assert case.escalate_at is not None
        assert any("回到待受理队列" in text for text in desk.residents.texts(chat))
        # The supervisor hears who left and which case needs a person.
        assert any(reference in text for text in desk.staff.texts("s1"))
    # Both are back in the station's queue for the others.
    other = await staff_member(store, "m2", "fuyong-fenghuang")
    async with store.sessions() as session:
        queued = {c.reference for c in await casework.queue(session, other)}
    assert {normal, urgent} <= queued


# ------------------------------------------------------------------ finding 16


async def test_station_without_group_card_goes_to_nearest_centre_up(store: Store) -> None:
    desk = desk_on(store, {"fuyong", "baoan"})  # the station has no group
    reference = await new_case(store)
    assert await desk.service.announce(reference) == 1
    assert desk.cards.centres(reference) == ["fuyong"]
    announced = [e for e in await events_of(store, reference) if e.kind == "announced"]
    assert [e.data["centre"] for e in announced] == ["fuyong"]
    # The case itself stays with the station (its own mediators may still claim it).
    assert (await get(store, reference)).centre.code == "fuyong-fenghuang"


# ------------------------------------------------------------------ finding 17


async def test_never_announced_case_escalating_gets_one_card_per_centre(store: Store) -> None:
    desk = desk_on(store, {"fuyong-fenghuang", "fuyong", "baoan"})
    reference = await new_case(store)  # filed, its announcement lost
    due = (await get(store, reference)).escalate_at
    counts = await desk.service.sweep(due + timedelta(seconds=1))
    assert counts["escalated"] == 1
    assert (await desk.service.sweep(due + timedelta(seconds=2)))["announced"] == 0
    centres = desk.cards.centres(reference)
    assert len(centres) == len(set(centres)), centres
    announced = [e for e in await events_of(store, reference) if e.kind == "announced"]
    assert len(announced) == len(centres)
    assert len({(e.data["target"], e.data["centre"]) for e in announced}) == len(announced)


# ------------------------------------------------------------------ finding 18


async def test_transfer_is_told_to_the_resident_and_old_cards_follow(store: Store) -> None:
    desk = desk_on(store, {"fuyong-fenghuang", "xixiang"})
    worker = await staff_member(store, "m1", "fuyong-fenghuang")
    reference = await new_case(store)
    await desk.service.announce(reference)
    await desk.service.claim(reference, worker)
    assert desk.cards.latest(1).holder == "调解员m1"
    await desk.service.transfer(reference, worker, "xixiang", "居民住在西乡")
    assert any("已转到" in text and reference in text for text in desk.residents.texts("r1"))
    old = desk.cards.latest(1)
    assert old.holder is None and old.status == "new"
    assert desk.cards.centres(reference) == ["fuyong-fenghuang", "xixiang"]


async def test_release_is_told_to_the_resident_and_old_cards_follow(store: Store) -> None:
    desk = desk_on(store, {"fuyong-fenghuang"})
    worker = await staff_member(store, "m1", "fuyong-fenghuang")
    reference = await new_case(store)
    await desk.service.announce(reference)
    await desk.service.claim(reference, worker)
    await desk.service.release(reference, worker)
    assert any("回到待受理队列" in text for text in desk.residents.texts("r1"))
    card = desk.cards.latest(1)
    assert card.holder is None and card.claimable
    assert desk.cards.centres(reference) == ["fuyong-fenghuang"]  # edited, not reposted


# ------------------------------------------------------------------ finding 19


async def test_resident_status_shows_only_named_events(store: Store) -> None:
    desk = desk_on(store, {"fuyong-fenghuang"})
    worker = await staff_member(store, "m1", "fuyong-fenghuang")
    reference = await new_case(store)
    await desk.service.announce(reference)  # an "announced" event, staff-only
    await desk.service.details(reference, worker)  # a "view"
    names = raw("dialogue.event_names", "zh")
    async with store.sessions() as session:
        resident = await get_or_create_resident(session, CHANNEL, "r1")
        [item] = await lookup_status(session, resident)
    assert item["last_event"] in names
    shown = _status_item(item, "zh", "Asia/Shanghai")["last"]
    assert "dialogue.event_names" not in str(shown) and shown
    await desk.service.claim(reference, worker)
    await desk.service.acknowledge(reference, worker)
    async with store.sessions() as session:
        [item] = await lookup_status(session, resident)
    assert item["last_event"] == "claim"


# ------------------------------------------------------------------ finding 20


async def test_mediator_timeline_in_the_configured_time_zone(store: Store) -> None:
    desk = desk_on(store, {"fuyong-fenghuang"}, timezone="America/New_York")
    worker = await staff_member(store, "m1", "fuyong-fenghuang")
    reference = await new_case(store)
    view = await desk.service.details(reference, worker)
    text = render_case_text(view.case, view.events, "zh", "America/New_York")
    local = view.events[0].created_at.astimezone(ZoneInfo("America/New_York"))
    shanghai = view.events[0].created_at.astimezone(ZoneInfo("Asia/Shanghai"))
    assert local.strftime("%Y-%m-%d %H:%M") in text
    assert shanghai.strftime("%Y-%m-%d %H:%M") not in text


# ------------------------------------------------------------------ finding 22


async def test_whoever_takes_over_reads_the_transcript(store: Store) -> None:
    desk = desk_on(store, {"fuyong-fenghuang"})
    first = await staff_member(store, "m1", "fuyong-fenghuang")
    second = await staff_member(store, "m2", "fuyong-fenghuang")
    reference = await new_case(store)
    await desk.service.claim(reference, first)
    async with store.sessions.begin() as session:
        case = await case_repo.get_case(session, reference)
        actor = case_repo.Actor("resident", str(case.resident_id))
        await casework.record_message(session, case, "message_in", actor, {"text": "老板又推迟了"})
        await casework.record_message(
            session, case, "message_in", actor, {"kind": "photo", "file_id": "ph-1"}
        )
    await desk.service.reply(reference, first, "我明天去厂里")
    await desk.service.release(reference, first)
    await desk.service.claim(reference, second)
    view = await desk.service.details(reference, second)
    said = [e.data.get("text") for e in view.transcript]
    assert "老板又推迟了" in said and "我明天去厂里" in said
    assert [e.data["file_id"] for e in view.evidence] == ["ph-1"]
    text = render_case_text(view.case, view.events, "zh", "Asia/Shanghai")
    assert "老板又推迟了" in text and "我明天去厂里" in text


# ------------------------------------------------------------------ finding 23


async def test_follow_up_carries_the_residents_comment(store: Store) -> None:
    desk = desk_on(store, {"fuyong-fenghuang"})
    worker = await staff_member(store, "m1", "fuyong-fenghuang")
    await staff_member(store, "s1", "fuyong", MediatorRole.SUPERVISOR)
    reference = await new_case(store)
    await desk.service.claim(reference, worker)
    await desk.service.set_status(reference, worker, CaseStatus.RESOLVED)
    async with store.sessions.begin() as session:
        _, follow = await casework.rate(session, reference, 2, (CHANNEL, "r1"))
    assert follow
    await desk.service.follow_up(reference)
    async with store.sessions.begin() as session:
        await casework.comment(session, reference, "等了好久才有人理", (CHANNEL, "r1"))
    await desk.service.follow_up(reference)
    assert any("等了好久才有人理" in text for text in desk.staff.texts("s1"))


async def test_idle_claimed_case_is_reminded_once(store: Store) -> None:
    desk = desk_on(store, {"fuyong-fenghuang"})
    worker = await staff_member(store, "m1", "fuyong-fenghuang")
    reference = await new_case(store)
    await desk.service.claim(reference, worker)
    now = utcnow()
    assert (await desk.service.sweep(now + timedelta(days=1)))["reminded"] == 0
    assert (await desk.service.sweep(now + timedelta(days=3)))["reminded"] == 1
    assert (await desk.service.sweep(now + timedelta(days=3, hours=1)))["reminded"] == 0
    assert (await desk.service.sweep(now + timedelta(days=5)))["reminded"] == 0
    reminders = [text for text in desk.staff.texts("m1") if "两天没有进展" in text]
    assert len(reminders) == 1 and reference in reminders[0]
    # Activity starts a new idle stretch: one more reminder after it.
    await desk.service.reply(reference, worker, "请问有新情况吗")
    assert (await desk.service.sweep(utcnow() + timedelta(days=3)))["reminded"] == 1


# ----------------------------------------------------------- store invariant (0002)


@pytest.mark.parametrize("missing", ["centre_id", "department_id"])
async def test_a_case_cannot_be_stored_without_centre_and_department(
    store: Store, missing: str
) -> None:
    reference = await new_case(store)
    case = await get(store, reference)
    values = {"centre_id": case.centre_id, "department_id": case.department_id, missing: None}
    with pytest.raises(IntegrityError):
        async with store.sessions.begin() as session:
            await case_repo.file_case(
                session,
                category="dispute_labor",
                resident_words="x",
                channel=CHANNEL,
                risk_level=RiskLevel.NORMAL,
                **values,
            )
    async with store.sessions() as session:
        count = len((await session.execute(select(Case.id))).all())
    assert count == 1


# ------------------------------------------------------- a card nobody could see


class _NowhereCards(RecordingCards):
    """A target that says it has no group or robot anywhere (yet posts if asked)."""

    async def reaches_any(self) -> bool:
        return False


async def test_a_new_cases_card_is_not_built_when_no_target_can_show_it(store: Store) -> None:
    cards = _NowhereCards({"fuyong-fenghuang", "fuyong", "baoan"})
    desk = DeskService(store, cards=[cards])
    reference = await new_case(store)
    assert await desk.announce(reference, reason="filed") == 0
    assert cards.posts == []
    # An emergency always takes the full path (fresh cards, whatever the targets say).
    assert await desk.announce(reference, reason="urgent", fresh=True) >= 1
    assert cards.centres(reference)
    # A target that cannot tell (no reaches_any) is always tried.
    plain = desk_on(store, {"fuyong-fenghuang"})
    other = await new_case(store)
    assert await plain.service.announce(other, reason="filed") == 1


async def test_wecom_and_telegram_targets_know_whether_they_reach_anyone(store: Store) -> None:
    from bot.channels.wecom import WeComRobotTarget
    from storage.wechat import set_wecom_webhook

    wecom = WeComRobotTarget(store)
    assert await wecom.reaches_any() is False  # the directory has no robot
    async with store.sessions.begin() as session:
        centre = await get_centre(session, "fuyong")
        assert centre is not None
        await set_wecom_webhook(
            session, centre.id, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1"
        )
    assert await wecom.reaches_any() is True
    async with store.sessions() as session:
        groups = await any_telegram_group(session)
        with_chat = (
            await session.execute(select(Centre.id).where(Centre.telegram_chat_id.is_not(None)))
        ).first()
    assert groups is (with_chat is not None)
    await wecom.close()
