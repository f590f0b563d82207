"""Repository functions on a real SQLite file and on the machine's PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from bot.runtime import Store
from storage import cases, conversations, people, updates
from storage.directory import first_department_for, get_centre
from storage.errors import (
    AlreadyClaimed,
    CaseNotFound,
    InvalidTransition,
    MediatorInactive,
    StaleState,
)
from storage.models import AppendOnlyError, CaseEvent, CaseStatus, MediatorRole, RiskLevel
from storage.phone import mask_phone


async def _file(store: Store, **extra: object) -> str:
    async with store.sessions.begin() as session:
        centre = await get_centre(session, "xixiang")
        case = await cases.file_case(
            session,
            category=extra.pop("category", "dispute_labor"),
            resident_words="老板欠我三个月工资",
            channel="telegram",
            centre_id=centre.id if centre else None,
            department=await first_department_for(
                session, str(extra.get("category", "dispute_labor"))
            ),
            street="西乡",
            **extra,
        )
        return case.reference


async def _mediator(store: Store, external_id: str, centre: str = "xixiang", active: bool = True):
    async with store.sessions.begin() as session:
        mediator = await people.add_mediator(
            session,
            channel="telegram",
            external_id=external_id,
            display_alias=f"调解员{external_id}",
            centre_code=centre,
            role=MediatorRole.MEDIATOR,
        )
        if not active:
            await people.deactivate_mediator(session, "telegram", external_id)
            await session.refresh(mediator)
        return mediator


async def test_file_and_get_case(store: Store) -> None:
    reference = await _file(store, fields={"amount": 8000}, risk_level=RiskLevel.ELEVATED)
    assert reference.startswith("BA-") and reference.endswith("-0001")
    async with store.sessions() as session:
        case = await cases.get_case(session, reference.lower())
        assert case.category == "dispute_labor"
        assert case.fields == {"amount": 8000}
        assert case.status == CaseStatus.NEW
        assert case.centre is not None and case.centre.code == "xixiang"
        events = await cases.case_events(session, case)
    assert [e.kind for e in events] == ["filed"]
    assert events[0].data["risk_level"] == "elevated"


async def test_unknown_reference(store: Store) -> None:
    async with store.sessions() as session:
        with pytest.raises(CaseNotFound, match="BA-19990101-0001"):
            await cases.get_case(session, "BA-19990101-0001")


async def test_list_cases_filters_and_paging(store: Store) -> None:
    for _ in range(5):
        await _file(store)
    urgent = await _file(store, category="dispute_family", risk_level=RiskLevel.URGENT)
    async with store.sessions() as session:
        centre = await get_centre(session, "xixiang")
        first = await cases.list_cases(session, centre_ids=[centre.id], page=1, page_size=4)
        second = await cases.list_cases(session, centre_ids=[centre.id], page=2, page_size=4)
        family = await cases.list_cases(session, category="dispute_family")
        urgent_only = await cases.list_cases(session, risk=RiskLevel.URGENT)
        other_centre = await cases.list_cases(session, centre_ids=[centre.parent_id])
        claimed = await cases.list_cases(session, statuses=[CaseStatus.CLAIMED])
    assert first.total == 6 and first.pages == 2
    assert first.items[0].reference == urgent  # urgent first
    assert len(first.items) == 4 and len(second.items) == 2
    assert {c.reference for c in first.items}.isdisjoint({c.reference for c in second.items})
    assert [c.reference for c in family.items] == [urgent]
    assert [c.reference for c in urgent_only.items] == [urgent]
    assert other_centre.total == 0 and claimed.total == 0


async def test_claim_and_status_flow(store: Store) -> None:
    reference = await _file(store)
    mediator = await _mediator(store, "501")
    other = await _mediator(store, "502")
    async with store.sessions.begin() as session:
        case = await cases.claim_case(session, reference, mediator)
        assert case.status == CaseStatus.CLAIMED and case.mediator_id == mediator.id
    async with store.sessions.begin() as session:
        with pytest.raises(AlreadyClaimed) as refused:
            await cases.claim_case(session, reference, other)
        assert refused.value.claimed_by == "调解员501"
    actor = cases.Actor.of(mediator)
    async with store.sessions.begin() as session:
        await cases.change_status(session, reference, CaseStatus.IN_MEDIATION, actor)
        await cases.change_status(session, reference, CaseStatus.RESOLVED, actor)
        case = await cases.change_status(session, reference, CaseStatus.CLOSED, actor)
        assert case.resolved_at is not None and case.closed_at is not None
    async with store.sessions.begin() as session:
        with pytest.raises(InvalidTransition, match="closed to new"):
            await cases.change_status(session, reference, CaseStatus.NEW, actor)
    async with store.sessions() as session:
        case = await cases.get_case(session, reference)
        kinds = [e.kind for e in await cases.case_events(session, case)]
        assert case.status == CaseStatus.CLOSED
    assert kinds == ["filed", "claim", "status_change", "status_change", "status_change"]


async def test_invalid_transition_new_to_resolved(store: Store) -> None:
    reference = await _file(store)
    async with store.sessions.begin() as session:
        with pytest.raises(InvalidTransition):
            await cases.change_status(session, reference, CaseStatus.RESOLVED, cases.Actor.system())
        case = await cases.get_case(session, reference)
        assert case.status == CaseStatus.NEW


async def test_claim_by_inactive_mediator_refused(store: Store) -> None:
    reference = await _file(store)
    inactive = await _mediator(store, "601", active=False)
    async with store.sessions.begin() as session:
        with pytest.raises(MediatorInactive):
            await cases.claim_case(session, reference, inactive)
    async with store.sessions() as session:
        case = await cases.get_case(session, reference)
    assert case.status == CaseStatus.NEW and case.mediator_id is None


async def test_fifty_concurrent_claims_one_winner(store: Store) -> None:
    reference = await _file(store)
    mediators = [await _mediator(store, str(700 + i)) for i in range(50)]

    async def claim(mediator) -> str:
        try:
            async with store.sessions.begin() as session:
                await cases.claim_case(session, reference, mediator)
            return "won"
        except AlreadyClaimed:
            return "lost"

    results = await asyncio.gather(*(claim(m) for m in mediators))
    assert results.count("won") == 1 and results.count("lost") == 49
    async with store.sessions() as session:
        case = await cases.get_case(session, reference)
        claims = [e for e in await cases.case_events(session, case) if e.kind == "claim"]
    winner = mediators[results.index("won")]
    assert case.mediator_id == winner.id and len(claims) == 1


async def test_two_hundred_concurrent_filings_distinct_references(store: Store) -> None:
    references = await asyncio.gather(*(_file(store) for _ in range(200)))
    assert len(set(references)) == 200
    numbers = sorted(int(r.rsplit("-", 1)[1]) for r in references)
    assert numbers == list(range(1, 201))


async def test_events_are_append_only(store: Store) -> None:
    reference = await _file(store)
    async with store.sessions.begin() as session:
        case = await cases.get_case(session, reference)
        await cases.add_event(
            session, case, "note", cases.Actor("mediator", "1"), {"text": "已电话联系"}
        )
    async with store.sessions() as session:
        event = (
            await session.execute(select(CaseEvent).where(CaseEvent.kind == "note"))
        ).scalar_one()
        assert event.data == {"text": "已电话联系"}
        event.kind = "tampered"
        with pytest.raises(AppendOnlyError):
            await session.flush()
        await session.rollback()
    async with store.sessions() as session:
        event = (
            await session.execute(select(CaseEvent).where(CaseEvent.kind == "note"))
        ).scalar_one()
        with pytest.raises(AppendOnlyError):
            await session.delete(event)
            await session.flush()


async def test_processed_update_recorded_once(store: Store) -> None:
    async with store.sessions.begin() as session:
        assert await updates.record_processed_update(session, "telegram", 42) is True
    async with store.sessions.begin() as session:
        assert await updates.record_processed_update(session, "telegram", 42) is False
        assert await updates.record_processed_update(session, "rest", 42) is True


async def test_conversation_optimistic_concurrency(store: Store) -> None:
    async with store.sessions.begin() as session:
        assert await conversations.load_conversation(session, "telegram", "9") == ({}, 0)
        assert (
            await conversations.save_conversation(session, "telegram", "9", {"step": "a"}, 0) == 1
        )
    async with store.sessions.begin() as session:
        state, version = await conversations.load_conversation(session, "telegram", "9")
        assert state == {"step": "a"} and version == 1
        assert (
            await conversations.save_conversation(session, "telegram", "9", {"step": "b"}, 1) == 2
        )
    async with store.sessions.begin() as session:
        with pytest.raises(StaleState):
            await conversations.save_conversation(session, "telegram", "9", {"step": "c"}, 1)
    async with store.sessions.begin() as session:
        with pytest.raises(StaleState):
            await conversations.save_conversation(session, "telegram", "9", {"step": "x"}, 0)
    async with store.sessions() as session:
        assert await conversations.load_conversation(session, "telegram", "9") == ({"step": "b"}, 2)


async def test_resident_phone_is_encrypted(store: Store) -> None:
    async with store.sessions.begin() as session:
        resident = await people.get_or_create_resident(session, "telegram", "77", "zh")
        await people.set_resident_phone(session, resident, "13812345678", store.vault)
    async with store.sessions() as session:
        again = await people.get_or_create_resident(session, "telegram", "77")
        assert again.id == resident.id
        assert b"13812345678" not in (again.phone_encrypted or b"")
        assert again.phone_masked == "138****5678" == mask_phone("13812345678")
        assert store.vault.decrypt(again.phone_encrypted) == "13812345678"


async def test_mediator_list_and_deactivate(store: Store) -> None:
    await _mediator(store, "801")
    await _mediator(store, "802", centre="xixiang-gushu")
    async with store.sessions.begin() as session:
        await people.deactivate_mediator(session, "telegram", "801")
    async with store.sessions() as session:
        everyone = await people.list_mediators(session)
        active = await people.list_mediators(session, include_inactive=False)
    assert [m.external_id for m in everyone] == ["801", "802"]
    assert [m.external_id for m in active] == ["802"]


async def test_sqlite_connections_come_back_without_an_open_transaction(sqlite_url: str) -> None:
    """The pool skips its reset-on-return ROLLBACK for SQLite; nothing may stay open."""
    from sqlalchemy import text

    from storage.db import create_engine, session_factory

    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    try:
        async with engine.connect() as connection:  # read, no commit
            await connection.execute(text("SELECT 1"))
        with pytest.raises(RuntimeError):
            async with sessions.begin() as session:  # fails half-way
                await session.execute(text("UPDATE reference_counters SET last_value = 1"))
                raise RuntimeError("boom")
        raw = await engine.raw_connection()  # straight from the pool, nothing begun
        try:
            assert raw.driver_connection._conn.in_transaction is False
        finally:
            raw.close()
        async with sessions.begin() as session:  # and writing still works
            await session.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
