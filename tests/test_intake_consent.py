"""Submitting without consent ("提交,但不同意提供联系方式") keeps no phone number on the
case or the resident, on SQLite and PostgreSQL; with consent the number is kept
(encrypted, masked copy for display)."""

from __future__ import annotations

import pytest

from actions.intake import file_case
from bot.runtime import Store
from storage import cases as case_repo
from storage.people import get_or_create_resident


@pytest.mark.parametrize("consent", [True, False])
async def test_phone_is_kept_only_with_consent(store: Store, consent: bool) -> None:
    async with store.sessions.begin() as session:
        resident = await get_or_create_resident(session, "rest", f"consent-{consent}")
        filed = await file_case(
            session,
            {
                "words": ["邻居漏水"],
                "category": "dispute_neighbor",
                "street": "xixiang",
                "community": None,
                "phone": "13812345678",
                "consent": consent,
            },
            resident=resident,
            channel="rest",
            chat_id=f"consent-{consent}",
            language="zh",
            vault=store.vault,
            reason="submit",
        )
    async with store.sessions() as session:
        case = await case_repo.get_case(session, filed.reference)
        resident = await get_or_create_resident(session, "rest", f"consent-{consent}")
    if consent:
        assert case.phone_masked == "138****5678" and case.phone_encrypted
        assert store.vault.decrypt(case.phone_encrypted) == "13812345678"
        assert resident.phone_masked == "138****5678"
    else:
        assert case.phone_masked is None and case.phone_encrypted is None
        assert resident.phone_masked is None and resident.phone_encrypted is None
        assert case.contact_consent is False
