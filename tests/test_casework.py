"""Mediators' case work on the real store (SQLite file and PostgreSQL).

Claims under contention, who may do what, escalation on an injected clock (surviving a
restart of the process), transfer and release, and the report figures.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from actions import casework
from actions.intake import file_case
from bot.runtime import Store
from storage import cases as case_repo
from storage.db import create_engine, session_factory
from storage.directory import get_centre
from storage.errors import AlreadyClaimed
from storage.models import CaseStatus, MediatorRole, Outcome, RiskLevel, utcnow
from storage.people import add_mediator, get_or_create_resident


async def new_case(
    store: Store,
    *,
    street: str = "fuyong",
    community: str | None = "凤凰",
    risk: str = "normal",
    category: str = "dispute_labor",
    chat: str = "777",
) -> str:
    async with store.sessions.begin() as session:
        resident = await get_or_create_resident(session, "telegram", chat)
        draft = {
            "words": ["老板欠薪"],
            "category": category,
            "slots": {},
            "street": street,
            "community": community,
            "phone": "13812345678",
            "consent": True,
            "risk": risk,
        }
        filed = await file_case(
            session,
            draft,
            resident=resident,
            channel="telegram",
            chat_id=chat,
            language="zh",
            vault=store.vault,
            reason="submit",
        )
        return filed.reference


async def mediator(
    store: Store, ident: str, centre: str, role: MediatorRole = MediatorRole.MEDIATOR
):
    async with store.sessions.begin() as session:
        return await add_mediator(
            session,
            channel="telegram",
            external_id=ident,
            display_alias=f"调解员{ident}",
            centre_code=centre,
            role=role,
        )


async def test_twenty_concurrent_claims_one_winner(store: Store) -> None:
    reference = await new_case(store)
    people = [await mediator(store, str(9000 + n), "fuyong-fenghuang") for n in range(20)]

    async def try_claim(person) -> str:
        try:
            async with store.sessions.begin() as session:
                await casework.claim(session, reference, person)
            return "won"
        except AlreadyClaimed as error:
            return f"lost:{error.claimed_by}"

    results = await asyncio.gather(*(try_claim(p) for p in people))
    assert results.count("won") == 1
    winner = people[results.index("won")]
    assert all(r == f"lost:{winner.display_alias}" for r in results if r != "won")
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        events = [e.kind for e in await case_repo.case_events(session, case)]
    assert case.mediator_id == winner.id and case.status == CaseStatus.CLAIMED
    assert events.count("claim") == 1


async def test_who_may_see_and_claim(store: Store) -> None:
    reference = await new_case(store)  # at the 凤凰 community station under 福永
    local = await mediator(store, "1", "fuyong-fenghuang")
    elsewhere = await mediator(store, "2", "xixiang")
    street_supervisor = await mediator(store, "3", "fuyong", MediatorRole.SUPERVISOR)
    street_mediator = await mediator(store, "4", "fuyong")
    async with store.sessions() as session:
        assert [c.reference for c in await casework.queue(session, local)] == [reference]
        assert await casework.queue(session, elsewhere) == []
        assert reference in [c.reference for c in await casework.queue(session, street_supervisor)]
        assert await casework.queue(session, street_mediator) == []
    for outsider in (elsewhere, street_mediator):
        with pytest.raises(casework.NotAllowed):
            async with store.sessions.begin() as session:
                await casework.claim(session, reference, outsider)
        with pytest.raises(casework.NotAllowed):
            async with store.sessions.begin() as session:
                await casework.note(session, reference, outsider, "看一下")
    # The supervisor may work it without claiming; the local mediator claims it.
    async with store.sessions.begin() as session:
        await casework.note(session, reference, street_supervisor, "请尽快联系")
        await casework.claim(session, reference, local)
    # Deactivated: nothing any more, not even viewing.
    async with store.sessions.begin() as session:
        from storage.people import deactivate_mediator

        await deactivate_mediator(session, "telegram", "1")
    async with store.sessions() as session:
        gone = await casework.active_mediator(session, "telegram", "1")
        assert gone is not None and not gone.active
        with pytest.raises(casework.NotAllowed):
            await casework.view(session, reference, gone)


async def test_escalation_on_clock_survives_restart(db_url: str, store: Store) -> None:
    reference = await new_case(store)
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        due = case.escalate_at
        assert case.centre.code == "fuyong-fenghuang" and due is not None
    # Nothing is due yet.
    async with store.sessions.begin() as session:
        assert await casework.due_for_escalation(session, due - timedelta(minutes=1)) == []
    # "Restart": a new engine on the same database finds the schedule in the store.
    engine = create_engine(db_url)
    restarted = Store(engine=engine, sessions=session_factory(engine), vault=store.vault)
    try:
        async with restarted.sessions.begin() as session:
            [waiting] = await casework.due_for_escalation(session, due + timedelta(seconds=1))
            target = await casework.escalate(session, waiting, due + timedelta(seconds=1))
            assert target is not None and target.code == "fuyong"
            # A second process escalating the same moment changes nothing.
            assert await casework.escalate(session, waiting, due + timedelta(seconds=1)) is None
        async with restarted.sessions.begin() as session:
            case = await case_repo.get_case(session, reference)
            assert case.escalation_level == 1 and case.centre.code == "fuyong"
            later = case.escalate_at
            [again] = await casework.due_for_escalation(session, later + timedelta(seconds=1))
            target = await casework.escalate(session, again, later + timedelta(seconds=1))
            assert target is not None and target.code == "baoan"
    finally:
        await engine.dispose()


async def test_urgent_cases_get_the_short_limit(store: Store) -> None:
    reference = await new_case(store, risk="urgent")
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        waited = case.escalate_at - case.created_at
    assert case.risk_level == RiskLevel.URGENT
    assert waited <= timedelta(minutes=30)


async def test_transfer_and_release_put_the_case_in_the_right_queue(store: Store) -> None:
    reference = await new_case(store)
    local = await mediator(store, "11", "fuyong-fenghuang")
    xixiang = await mediator(store, "12", "xixiang")
    async with store.sessions.begin() as session:
        await casework.claim(session, reference, local)
    async with store.sessions.begin() as session:
        await casework.release(session, reference, local)
    async with store.sessions() as session:
        assert [c.reference for c in await casework.queue(session, local)] == [reference]
    async with store.sessions.begin() as session:
        await casework.claim(session, reference, local)
        case, target = await casework.transfer(session, reference, local, "xixiang", "在西乡住")
        assert target.code == "xixiang"
    async with store.sessions() as session:
        assert await casework.queue(session, local) == []
        assert [c.reference for c in await casework.queue(session, xixiang)] == [reference]
        case = await case_repo.get_case(session, reference)
        kinds = [e.kind for e in await case_repo.case_events(session, case)]
    assert case.status == CaseStatus.NEW and case.mediator_id is None
    assert "transfer" in kinds and kinds.count("claim") == 2
    with pytest.raises(casework.NotAllowed):
        async with store.sessions.begin() as session:
            await casework.transfer(session, reference, local, "fuyong", "再转回去")


async def test_outcome_rating_and_report(store: Store) -> None:
    done = await new_case(store, chat="801")
    await new_case(store, chat="802")
    person = await mediator(store, "21", "fuyong-fenghuang")
    async with store.sessions.begin() as session:
        await casework.claim(session, done, person)
        await casework.set_status(session, done, person, CaseStatus.IN_MEDIATION)
        await casework.set_outcome(session, done, person, Outcome.AGREEMENT)
        await casework.set_status(session, done, person, CaseStatus.RESOLVED)
    with pytest.raises(casework.NotAllowed):  # someone else's chat cannot rate it
        async with store.sessions.begin() as session:
            await casework.rate(session, done, 5, ("telegram", "802"))
    async with store.sessions.begin() as session:
        _, follow_up = await casework.rate(session, done, 2, ("telegram", "801"))
        assert follow_up is True
        await casework.comment(session, done, "等太久了", ("telegram", "801"))
    async with store.sessions() as session:
        rows = await casework.report(session)
        case = await case_repo.get_case(session, done)
    [row] = [r for r in rows if r.centre == "fuyong-fenghuang" and r.category == "dispute_labor"]
    assert (row.filed, row.claimed, row.resolved) == (2, 1, 1)
    assert row.closure_rate == 0.5 and row.mean_rating == 2.0
    assert row.median_claim_minutes is not None and row.median_claim_minutes >= 0
    assert case.rating == 2 and case.rating_comment == "等太久了"
    assert (utcnow() - case.resolved_at) < timedelta(minutes=5)


async def test_unknown_centre_on_transfer(store: Store) -> None:
    reference = await new_case(store)
    local = await mediator(store, "31", "fuyong-fenghuang")
    async with store.sessions.begin() as session:
        await casework.claim(session, reference, local)
    from storage.errors import CentreNotFound

    with pytest.raises(CentreNotFound):
        async with store.sessions.begin() as session:
            await casework.transfer(session, reference, local, "atlantis", "?")
    async with store.sessions() as session:
        assert (await get_centre(session, "atlantis")) is None
