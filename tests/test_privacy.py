"""A resident's export and erasure on the real store (SQLite file and PostgreSQL)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from actions import casework, privacy
from actions.intake import attach_evidence, file_case
from bot.runtime import Store
from storage import cases as case_repo
from storage.cases import Actor
from storage.models import (
    AppendOnlyError,
    Case,
    CaseEvent,
    CaseStatus,
    Conversation,
    MediatorRole,
    Outcome,
    Resident,
)
from storage.people import add_mediator, get_or_create_resident
from storage.sealed import unseal_text

PHONE = "13812345678"
WORDS = f"老板欠我三个月工资,我的电话{PHONE}"


async def new_case(
    store: Store, chat: str = "555", words: str = WORDS, channel: str = "telegram"
) -> str:
    async with store.sessions.begin() as session:
        resident = await get_or_create_resident(session, channel, chat)
        draft = {
            "words": [words],
            "category": "dispute_labor",
            "slots": {"employer": "深圳某某公司", "months": 3},
            "street": "fuyong",
            "community": "凤凰",
            "phone": PHONE,
            "consent": True,
            "risk": "normal",
        }
        filed = await file_case(
            session,
            draft,
            resident=resident,
            channel=channel,
            chat_id=chat,
            language="zh",
            vault=store.vault,
            reason="submit",
        )
        return filed.reference


async def worked_case(store: Store, chat: str, *, close: bool) -> tuple[str, str]:
    """A case claimed, messaged both ways, with a stored evidence file; closed or open."""
    reference = await new_case(store, chat)
    digest = hashlib.sha256(b"photo-" + chat.encode()).hexdigest()
    async with store.sessions.begin() as session:
        mediator = await add_mediator(
            session,
            channel="telegram",
            external_id=f"m{chat}",
            display_alias="李调解",
            centre_code="fuyong-fenghuang",
            role=MediatorRole.MEDIATOR,
        )
        case = await casework.claim(session, reference, mediator)
        resident = await get_or_create_resident(session, "telegram", chat)
        actor = Actor("resident", str(resident.id))
        await casework.record_message(session, case, "message_in", actor, {"text": "他叫王五"})
        await casework.record_message(
            session, case, "message_out", Actor.of(mediator), {"text": "收到,明天联系您"}
        )
        await attach_evidence(
            session,
            reference,
            {"kind": "photo", "file_id": f"local:{digest}", "file_name": "欠条.jpg"},
            resident,
        )
        if close:
            await case_repo.change_status(
                session, reference, CaseStatus.RESOLVED, Actor.of(mediator)
            )
            await case_repo.set_outcome(session, reference, Outcome.AGREEMENT, Actor.of(mediator))
            await case_repo.change_status(session, reference, CaseStatus.CLOSED, Actor.of(mediator))
            case = await case_repo.get_case(session, reference)
            case.rating = 4
    return reference, digest


async def test_export_holds_cases_messages_evidence_and_masks_phones(store: Store) -> None:
    reference, _ = await worked_case(store, "601", close=True)
    second = await new_case(store, "601", words="身份证 11010519491231002X 邮箱 li.si@example.com")
    async with store.sessions() as session:
        export = await privacy.export_resident(session, "telegram", "601", "en")
    assert [c["reference"] for c in export["cases"]] == [reference, second]
    assert "11010519491231002X" not in str(export) and "li.si@example.com" not in str(export)
    export["cases"] = export["cases"][:1]
    case = export["cases"][0]
    assert case["status"] == "closed" and case["outcome"] == "agreement" and case["rating"] == 4
    assert [m["direction"] for m in case["messages"]] == ["in", "out"]
    assert case["messages"][0]["text"] == "他叫王五"
    assert case["evidence"][0]["name"] == "欠条.jpg"
    assert export["ratings"] == [{"reference": reference, "rating": 4}]
    text = privacy.render_export(export, "Asia/Shanghai")
    assert f"Case {reference}" in text and "Kind:" in text and "Messages:" in text
    dumped = privacy.export_json(export) + text
    assert PHONE not in dumped and "138****5678" in dumped


async def test_forget_withdraws_open_anonymises_closed_and_keeps_report(
    store: Store, tmp_path: Path
) -> None:
    closed, closed_file = await worked_case(store, "602", close=True)
    # A second resident's closed case must be untouched.
    other, _ = await worked_case(store, "603", close=True)
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / f"{closed_file}.jpg").write_bytes(b"jpeg")
    async with store.sessions() as session:
        before = await casework.report(session)
    opened = await new_case(store, "602", words=f"邻居噪音,身份证号 11010519491231002X 电话{PHONE}")

    async with store.sessions.begin() as session:
        result = await privacy.forget_resident(
            session, "telegram", "602", Actor("admin", "cli:test")
        )
    assert privacy.delete_files(tmp_path, result.files) == 1
    assert not list(evidence.iterdir())
    assert [w.reference for w in result.withdrawn] == [opened]
    assert sorted(result.erased_cases) == sorted([closed, opened])
    assert result.resident_deleted

    async with store.sessions() as session:
        for reference in (closed, opened):
            case = await case_repo.get_case(session, reference)
            assert case.resident_words == "" and case.summary == ""
            assert case.phone_encrypted is None and case.phone_masked is None
            assert case.chat_id is None and case.resident_id is None
            assert case.fields.get("employer") is None
            events = await case_repo.case_events(session, case)
            erased = [e for e in events if e.kind == "data_erased"]
            assert len(erased) == 1 and erased[0].actor_type == "admin"
            assert erased[0].actor_id == "cli:test"
            for event in events:
                assert "text" not in event.data and "file_id" not in event.data
        closed_case = await case_repo.get_case(session, closed)
        assert closed_case.status == CaseStatus.CLOSED and closed_case.rating == 4
        assert closed_case.category == "dispute_labor" and closed_case.street
        assert (await case_repo.get_case(session, opened)).status == CaseStatus.WITHDRAWN
        untouched = await case_repo.get_case(session, other)
        # Another resident's words are untouched: masked to show, the original sealed.
        assert PHONE not in untouched.resident_words
        assert PHONE in str(
            unseal_text(untouched.resident_words, untouched.resident_words_sealed, store.vault)
        )
        residents = list((await session.execute(select(Resident.external_id))).scalars())
        assert "602" not in residents and "603" in residents
    async with store.sessions() as session:
        rows = {(r.centre, r.category): r for r in await casework.report(session)}
        for row in before:
            # The withdrawn case adds one filed, unclaimed case; every figure of the
            # closed cases (claims, resolutions, times, ratings) is what it was.
            now = rows[(row.centre, row.category)]
            assert now.filed == row.filed + 1
            assert now.mean_rating == row.mean_rating
            assert now.median_claim_minutes == row.median_claim_minutes
            assert now.median_resolution_hours == row.median_resolution_hours
            assert now.resolved == row.resolved and now.claimed == row.claimed


async def test_report_identical_after_erasing_only_closed_cases(store: Store) -> None:
    await worked_case(store, "611", close=True)
    await worked_case(store, "612", close=True)
    async with store.sessions() as session:
        before = await casework.report(session)
    async with store.sessions.begin() as session:
        await privacy.forget_resident(session, "telegram", "611", Actor("admin", "x"))
    async with store.sessions() as session:
        assert await casework.report(session) == before


async def test_timeline_still_refuses_ordinary_changes_after_erasure(store: Store) -> None:
    await worked_case(store, "621", close=True)
    async with store.sessions.begin() as session:
        await privacy.forget_resident(session, "telegram", "621", Actor("admin", "x"))
    with pytest.raises(AppendOnlyError):
        async with store.sessions.begin() as session:
            event = (await session.execute(select(CaseEvent).limit(1))).scalar_one()
            event.data = {"text": "forged"}
            await session.flush()


async def test_forget_twice_is_harmless_and_unknown_resident_is_empty(store: Store) -> None:
    await worked_case(store, "631", close=True)
    async with store.sessions.begin() as session:
        first = await privacy.forget_resident(session, "telegram", "631", Actor("admin", "x"))
        session.add(Conversation(channel="telegram", chat_id="631", state={"lang": "zh"}))
    async with store.sessions.begin() as session:
        second = await privacy.forget_resident(session, "telegram", "631", Actor("admin", "x"))
    assert first.counts()["cases"] == 1
    assert second.counts() == {"withdrawn": 0, "cases": 0, "events": 0, "files": 0, "resident": 0}
    assert second.conversation_deleted
    async with store.sessions() as session:
        count = len(list((await session.execute(select(Case))).scalars()))
    assert count == 1


async def test_no_trace_of_the_resident_in_any_table_after_forget(
    store: Store, tmp_path: Path
) -> None:
    """Grep every table for the phone, the ID number and the words after /forget."""
    from storage.models import Base

    id_number = "11010519491231002X"
    await worked_case(store, "641", close=True)
    await new_case(store, "641", words=f"身份证 {id_number} 银行卡 6222020200112233445")
    async with store.sessions.begin() as session:
        await privacy.forget_resident(session, "telegram", "641", Actor("admin", "x"))
    dumped = []
    async with store.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                dumped.append(repr(tuple(row)))
    everything = "\n".join(dumped)
    for secret in (PHONE, "138****5678", id_number, "6222020200112233445", "王五", "欠条"):
        assert secret not in everything, secret
    assert "'641'" not in everything
