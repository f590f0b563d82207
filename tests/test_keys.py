"""Key rotation: several keys, interrupted half way and resumed, old data readable."""

from __future__ import annotations

from sqlalchemy import select

from bot.runtime import Store
from storage import cases as case_repo
from storage import outbox
from storage.cases import Actor
from storage.conversations import load_conversation, save_conversation
from storage.db import session_factory
from storage.keys import ENCRYPTED_COLUMNS, rotate_keys
from storage.models import Case, Resident
from storage.phone import PhoneVault
from storage.sealed import unseal_text, unseal_value
from storage.updates import keep_replies, record_processed_update, replies_of
from tests.test_privacy import PHONE, new_case


def test_multifernet_uses_first_key_and_reads_old_ones() -> None:
    old = PhoneVault("old-secret")
    both = PhoneVault("new-secret, old-secret")
    token = old.encrypt(PHONE)
    assert both.decrypt(token) == PHONE and not both.is_current(token)
    fresh = both.encrypt(PHONE)
    assert both.is_current(fresh) and old.decrypt(fresh) is None
    assert PhoneVault("new-secret").decrypt(fresh) == PHONE
    assert PhoneVault("unrelated").decrypt(token) is None


async def test_rotation_interrupted_and_resumed(store: Store) -> None:
    # ``store`` encrypts with "test-secret": ten cases and their resident.
    for n in range(10):
        await new_case(store, chat=f"8{n:02d}")
    rotated = PhoneVault("next-secret,test-secret")

    first = await rotate_keys(store.sessions, rotated, batch_size=3, max_batches=2)
    assert not first.finished and first.rotated == 6 and first.batches == 2
    async with store.sessions() as session:
        tokens = list((await session.execute(select(Case.phone_encrypted))).scalars())
        tokens += list((await session.execute(select(Resident.phone_encrypted))).scalars())
    # Half way: every value still opens with the key ring, some under each key.
    assert all(rotated.decrypt(t) == PHONE for t in tokens if t)
    assert any(rotated.is_current(t) for t in tokens if t)
    assert any(not rotated.is_current(t) for t in tokens if t)

    second = await rotate_keys(store.sessions, rotated, batch_size=3)
    assert second.finished and second.current == 6
    # 20 phones (cases and residents), and each story's words and summary (sealed: they
    # hold the phone too).
    assert first.rotated + second.rotated == 40 and second.unreadable == 0
    assert second.per_column["cases.resident_words_sealed"] == 10
    async with store.sessions() as session:
        tokens = list((await session.execute(select(Case.phone_encrypted))).scalars())
        tokens += list((await session.execute(select(Resident.phone_encrypted))).scalars())
    only_new = PhoneVault("next-secret")
    assert len(tokens) == 20 and all(only_new.decrypt(t) == PHONE for t in tokens)

    third = await rotate_keys(store.sessions, rotated, batch_size=3)
    assert third.rotated == 0 and third.current == 40


async def test_sealed_texts_rotate_too_and_stay_readable_half_way(store: Store) -> None:
    """Words, summary, answers, timeline entries, drafts, outbox and summons texts
    sealed under the old key: a rotation stopped half way leaves every one readable
    (some under each key), a second run finishes, and the old key can then go."""
    words = f"电话{PHONE},卡号6222021234567890128"
    reference = await new_case(store, chat="sealed-1", words=words)
    async with store.sessions.begin() as session:
        case = await case_repo.get_case(session, reference)
        case.fields = {"employer": f"老板电话{PHONE}"}
        await case_repo.add_event(session, case, "note", Actor.system(), {"text": words})
        await save_conversation(session, "rest", "sealed-1", {"draft": {"phone": PHONE}}, 0)
        await outbox.enqueue(session, "rest", "sealed-1", [{"text": words}])
        for update_id in (41, 42):  # a composite key (source, update_id), walked in order
            await record_processed_update(session, "rest", update_id)
            await keep_replies(session, "rest", update_id, [{"text": words}])
    rotated = PhoneVault("next-secret,test-secret")
    columns = [(m, n) for m, n in ENCRYPTED_COLUMNS if n.endswith("_sealed")]

    async def sealed_tokens() -> list[bytes]:
        found: list[bytes] = []
        async with store.sessions() as session:
            for model, name in columns:
                column = getattr(model, name)
                query = select(column).where(column.is_not(None))
                found += list((await session.execute(query)).scalars())
        return found

    before = await sealed_tokens()
    # Words, summary, answers, the note, the draft, the outbox, two kept replies.
    assert len(before) == 8
    first = await rotate_keys(store.sessions, rotated, batch_size=1, max_batches=6)
    assert not first.finished
    half = await sealed_tokens()
    assert all(rotated.decrypt(t) for t in half)
    assert any(rotated.is_current(t) for t in half + before)
    assert any(not rotated.is_current(t) for t in half)
    async with store.sessions() as session:  # the store reads on meanwhile
        case = await case_repo.get_case(session, reference)
        assert unseal_text(case.resident_words, case.resident_words_sealed, rotated) == words
        state, _ = await load_conversation(session, "rest", "sealed-1", vault=rotated)
        assert state == {"draft": {"phone": PHONE}}

    second = await rotate_keys(store.sessions, rotated, batch_size=1)
    assert second.finished and second.unreadable == 0
    for label in (
        "cases.fields_sealed",
        "case_events.data_sealed",
        "outbox.payload_sealed",
        "processed_updates.replies_sealed",
    ):
        assert first.per_column.get(label, 0) + second.per_column.get(label, 0) >= 1, label
    only_new = PhoneVault("next-secret")
    after = await sealed_tokens()
    assert len(after) == len(before) and all(only_new.decrypt(t) for t in after)
    async with only_new_store(store, only_new).sessions() as session:
        taken = await outbox.take_pending(session, "rest", "sealed-1")
        case = await case_repo.get_case(session, reference)
        fields = unseal_value(case.fields, case.fields_sealed, only_new)
        kept = await replies_of(session, "rest", 42)
    assert taken == [{"text": words}] and fields == {"employer": f"老板电话{PHONE}"}
    assert kept == [{"text": words}]


def only_new_store(store: Store, vault: PhoneVault) -> Store:
    """The same database opened with the new key alone (the old one removed)."""
    return Store(engine=store.engine, sessions=session_factory(store.engine), vault=vault)
