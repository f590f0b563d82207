"""Key rotation: several keys, interrupted half way and resumed, old data readable."""

from __future__ import annotations

from sqlalchemy import select

from bot.runtime import Store
from storage.keys import rotate_keys
from storage.models import Case, Resident
from storage.phone import PhoneVault
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
