"""Sealed free texts on the real store (SQLite file and PostgreSQL): what is written,
what is read back, who may open it, and that the opening is on the timeline."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from actions import casework
from actions.casework import NotAllowed
from actions.desk import DeskService
from actions.reveal import reveal
from bot.case_view import render_case_text
from bot.runtime import Store
from storage import cases as case_repo
from storage.conversations import load_conversation, save_conversation
from storage.db import session_factory
from storage.keys import seal_clear_text
from storage.models import Case, CaseEvent, Conversation, MediatorRole
from storage.people import add_mediator, get_or_create_resident
from storage.phone import PhoneVault
from storage.redact import redact
from storage.sealed import seal_text, seal_value, unseal_text, unseal_value
from tests.test_privacy import new_case

PHONE = "13866017325"
CARD = "6222021234567890128"
WORDS = f"欠薪三个月,电话{PHONE},工资卡{CARD}"


def test_seal_and_unseal_text_and_json() -> None:
    vault = PhoneVault("k")
    masked, token = seal_text(WORDS, vault)
    assert PHONE not in str(masked) and CARD not in str(masked) and "138****7325" in str(masked)
    assert token is not None and unseal_text(masked, token, vault) == WORDS
    assert seal_text("没有号码", vault) == ("没有号码", None)
    # Without the key (or with another), only the masked copy comes back.
    assert unseal_text(masked, token, PhoneVault("other")) == masked
    assert unseal_text(masked, token, None) == masked
    value = {"text": WORDS, "file_id": f"AgAC{PHONE}x", "n": [1, {"w": f"卡 {CARD}"}]}
    shown, sealed = seal_value(value, vault)
    assert shown["file_id"] == value["file_id"]  # ids are never "masked" into nonsense
    assert PHONE not in shown["text"] and CARD not in str(shown["n"])
    assert unseal_value(shown, sealed, vault) == value
    # No vault: masked, nothing kept (the safe failure).
    assert seal_value(value, None) == (shown, None)


def test_email_right_after_chinese_is_found() -> None:
    assert redact("邮箱wang.xiaoming@example.com").masked_text == "邮箱w***@example.com"


async def test_every_writer_is_sealed_by_the_store(store: Store) -> None:
    reference = await new_case(store, chat="s1", words=WORDS)
    async with store.sessions.begin() as session:
        case = await case_repo.get_case(session, reference)
        assert PHONE not in case.resident_words and PHONE not in case.summary
        assert unseal_text(case.resident_words, case.resident_words_sealed, store.vault) == WORDS
        resident = await get_or_create_resident(session, "telegram", "s1")
        actor = case_repo.Actor("resident", str(resident.id))
        await casework.record_message(session, case, "message_in", actor, {"text": WORDS})
        # A later edit appended to the shown copy keeps the original growing with it.
        case.resident_words = case.resident_words + f"\n补充:我的卡{CARD}"
        case.rating_comment = f"打{PHONE}"
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        original = unseal_text(case.resident_words, case.resident_words_sealed, store.vault)
        assert original == WORDS + f"\n补充:我的卡{CARD}"
        assert CARD not in case.resident_words
        assert unseal_text(case.rating_comment, case.rating_comment_sealed, store.vault) == (
            f"打{PHONE}"
        )
        [message] = [e for e in await case_repo.case_events(session, case) if e.data_sealed]
        assert message.data["text"] != WORDS
        assert unseal_value(message.data, message.data_sealed, store.vault)["text"] == WORDS


async def test_conversation_draft_sealed_and_loaded_back(store: Store) -> None:
    state = {"step": "review", "draft": {"words": [WORDS], "phone": PHONE}}
    async with store.sessions.begin() as session:
        await save_conversation(session, "rest", "c1", state, 0)
    async with store.sessions() as session:
        row = (await session.execute(select(Conversation))).scalar_one()
        assert PHONE not in str(row.state) and row.state_sealed is not None
        loaded, version = await load_conversation(session, "rest", "c1")
    assert loaded == state and version == 1
    # A session without the vault (another program) sees the masked draft only.
    bare = session_factory(store.engine)
    async with bare() as session:
        masked, _ = await load_conversation(session, "rest", "c1")
    assert masked["draft"]["phone"] == "138****7325"


async def _mediators(store: Store) -> tuple[object, object]:
    async with store.sessions.begin() as session:
        own = await add_mediator(
            session,
            channel="telegram",
            external_id="s-own",
            display_alias="甲",
            centre_code="fuyong-fenghuang",
            role=MediatorRole.MEDIATOR,
        )
        boss = await add_mediator(
            session,
            channel="telegram",
            external_id="s-boss",
            display_alias="乙",
            centre_code="fuyong",
            role=MediatorRole.SUPERVISOR,
        )
    return own, boss


async def test_reveal_is_for_the_own_mediator_only_and_recorded(store: Store) -> None:
    reference = await new_case(store, chat="s2", words=WORDS)
    own, boss = await _mediators(store)
    desk = DeskService(store)
    await desk.claim(reference, own)  # type: ignore[arg-type]

    # A supervisor over the centre sees the case, masked, and cannot open it.
    view = await desk.details(reference, boss, reveal=True)  # type: ignore[arg-type]
    assert view.revealed is None and PHONE not in view.phone
    text = render_case_text(view.case, view.events, "zh", "Asia/Shanghai", phone=view.phone)
    assert PHONE not in text and CARD not in text
    async with store.sessions.begin() as session:
        case = await case_repo.get_case(session, reference)
        with pytest.raises(NotAllowed):
            await reveal(session, case, boss, store.vault, via="test")  # type: ignore[arg-type]

    # Without asking, even the own mediator reads the masked case (no reveal recorded).
    quiet = await desk.details(reference, own)  # type: ignore[arg-type]
    assert quiet.revealed is None and PHONE not in quiet.phone
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        query = select(CaseEvent).where(
            CaseEvent.case_id == case.id, CaseEvent.kind == "phone_revealed"
        )
        assert not list((await session.execute(query)).scalars())

    full = await desk.details(reference, own, reveal=True, via="telegram")  # type: ignore[arg-type]
    assert full.revealed is not None and full.revealed.words == WORDS
    shown = render_case_text(
        full.case, full.events, "zh", "Asia/Shanghai", phone=full.phone, revealed=full.revealed
    )
    assert PHONE in shown and CARD in shown
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        [entry] = list((await session.execute(query)).scalars())
    assert entry.actor_id == str(own.id) and entry.data["via"] == "telegram"  # type: ignore[attr-defined]

    # An inactive mediator, even the own one, opens nothing.
    own.active = False  # type: ignore[attr-defined]
    with pytest.raises(NotAllowed):
        await desk.reveal_phone(reference, own)  # type: ignore[arg-type]


async def test_rows_from_before_sealing_are_sealed_by_the_key_command(store: Store) -> None:
    """A store written before this version: numbers in the clear until ``keys rotate``."""
    reference = await new_case(store, chat="s3", words="没有号码")
    bare = session_factory(store.engine)  # Core writes, as an old version would have
    async with bare.begin() as session:
        case = (await session.execute(select(Case).where(Case.reference == reference))).scalar_one()
        await session.execute(
            update(Case).where(Case.id == case.id).values(resident_words=WORDS, summary=WORDS)
        )
        await session.execute(
            CaseEvent.__table__.insert().values(
                case_id=case.id, kind="note", actor_type="mediator", data={"text": WORDS}
            )
        )
    first = await seal_clear_text(store.sessions, store.vault, batch_size=1)
    assert first.sealed == 3
    again = await seal_clear_text(store.sessions, store.vault, batch_size=1)
    assert again.sealed == 0
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        assert PHONE not in case.resident_words + case.summary
        assert unseal_text(case.summary, case.summary_sealed, store.vault) == WORDS
        [note] = [e for e in await case_repo.case_events(session, case) if e.kind == "note"]
        assert PHONE not in str(note.data)
        assert unseal_value(note.data, note.data_sealed, store.vault) == {"text": WORDS}


async def test_the_summary_never_cuts_a_number_in_half(store: Store) -> None:
    """The card's one-line summary is cut at 80 characters; a number across the cut
    would leave digits the store cannot recognise as a phone. It is kept whole instead
    (and so masked)."""
    words = "老板拖欠工资" * 12 + f"请打{PHONE}联系"  # the phone starts at character 74
    reference = await new_case(store, chat="s4", words=words)
    async with store.sessions() as session:
        case = await case_repo.get_case(session, reference)
    assert "138****7325" in case.summary and "13866" not in case.summary
    assert PHONE in str(unseal_text(case.summary, case.summary_sealed, store.vault))
