"""Retention on an injected clock, on the real store (SQLite file and PostgreSQL)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from actions.retention import RetentionPolicy, run_retention
from bot.runtime import Store
from storage import cases as case_repo
from storage.conversations import load_conversation, save_conversation
from storage.models import Case, CaseStatus, ProcessedUpdate, Resident, utcnow
from storage.review import NluCapture, text_hash
from storage.sealed import unseal_text
from storage.updates import record_processed_update
from tests.test_privacy import PHONE, worked_case

POLICY = RetentionPolicy(draft_days=30, update_ids_days=7, closed_years=3)


async def test_retention_clears_drafts_update_ids_and_old_closed_cases(
    store: Store, tmp_path: Path
) -> None:
    old, old_file = await worked_case(store, "701", close=True)
    recent, _ = await worked_case(store, "702", close=True)
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / old_file).write_bytes(b"x")
    exports = tmp_path / "exports"
    exports.mkdir()
    stale_export = exports / "abc"
    stale_export.write_text("old export")
    now = utcnow() + timedelta(days=365 * 3 + 40)  # the clock, three years on
    os.utime(stale_export, (now.timestamp() - 2 * 86400,) * 2)
    async with store.sessions.begin() as session:
        # The recent case closed "yesterday" on the moved clock: it must stay.
        await session.execute(
            update(Case).where(Case.reference == recent).values(closed_at=now - timedelta(days=1))
        )
        draft = {"lang": "zh", "step": "phone", "draft": {"words": ["吵架"], "phone": PHONE}}
        await save_conversation(session, "telegram", "chat-old", draft, 0)
        await record_processed_update(session, "telegram", 1)

    dry = await run_retention(store, POLICY, tmp_path, now=now, dry_run=True)
    assert dry["drafts"] == 1 and dry["cases"] == 1 and dry["update_ids"] == 1
    assert dry["files"] == 2 and dry["residents"] == 1 and dry["events"] >= 3
    assert stale_export.exists() and (evidence / old_file).exists()
    async with store.sessions() as session:
        still = await case_repo.get_case(session, old)
        assert PHONE in str(
            unseal_text(still.resident_words, still.resident_words_sealed, store.vault)
        )

    counts = await run_retention(store, POLICY, tmp_path, now=now)
    assert counts["drafts"] == 1 and counts["cases"] == 1 and counts["update_ids"] == 1
    assert counts["events"] >= 3 and counts["residents"] == 1
    assert counts["files"] == 2 and not stale_export.exists() and not list(evidence.iterdir())
    async with store.sessions() as session:
        state, _ = await load_conversation(session, "telegram", "chat-old")
        assert state == {"lang": "zh"}
        gone = await case_repo.get_case(session, old)
        assert gone.resident_words == "" and gone.phone_encrypted is None
        assert gone.resident_words_sealed is None and gone.summary_sealed is None
        assert gone.status == CaseStatus.CLOSED and gone.rating == 4
        kept = await case_repo.get_case(session, recent)
        assert PHONE in str(
            unseal_text(kept.resident_words, kept.resident_words_sealed, store.vault)
        )
        assert not (await session.execute(select(ProcessedUpdate))).all()
        residents = set((await session.execute(select(Resident.external_id))).scalars())
        assert "701" not in residents and "702" in residents

    again = await run_retention(store, POLICY, tmp_path, now=now)
    assert again == {k: 0 for k in again}


async def test_fresh_data_is_kept(store: Store, tmp_path: Path) -> None:
    await worked_case(store, "711", close=True)
    async with store.sessions.begin() as session:
        await save_conversation(session, "rest", "r1", {"draft": {"words": ["a"]}}, 0)
        await record_processed_update(session, "telegram", 9)
    counts = await run_retention(store, POLICY, tmp_path, now=utcnow() + timedelta(days=6))
    assert counts == {k: 0 for k in counts}


async def test_captured_messages_go_after_a_year_or_with_their_case(
    store: Store, tmp_path: Path
) -> None:
    """The NLU review inbox: a capture that never led to a case is deleted after
    ``capture_days``; one with a case stays while the case's personal data does."""
    reference, _ = await worked_case(store, "721", close=True)
    async with store.sessions.begin() as session:
        case = await case_repo.get_case(session, reference)
        for chat, case_id in (("loose", None), ("filed", case.id)):
            session.add(
                NluCapture(
                    channel="rest",
                    chat_id=chat,
                    case_id=case_id,
                    decision_point="first_message",
                    text_masked="老板欠薪,电话138****5678",
                    text_hash=text_hash(chat),
                )
            )
    policy = RetentionPolicy(draft_days=30, update_ids_days=7, closed_years=3, capture_days=365)

    async def left() -> list[str | None]:
        async with store.sessions() as session:
            query = select(NluCapture.chat_id).order_by(NluCapture.chat_id)
            return list((await session.execute(query)).scalars())

    soon = await run_retention(store, policy, tmp_path, now=utcnow() + timedelta(days=200))
    assert soon["captures"] == 0 and await left() == ["filed", "loose"]
    year = utcnow() + timedelta(days=366)
    dry = await run_retention(store, policy, tmp_path, now=year, dry_run=True)
    assert dry["captures"] == 1 and await left() == ["filed", "loose"]
    done = await run_retention(store, policy, tmp_path, now=year)
    assert done["captures"] == 1 and done["cases"] == 0 and await left() == ["filed"]
    later = await run_retention(
        store, policy, tmp_path, now=utcnow() + timedelta(days=3 * 365 + 40)
    )
    assert later["cases"] == 1 and later["captures"] == 1 and await left() == []
