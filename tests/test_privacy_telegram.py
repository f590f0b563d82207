"""/mydata and /forget over Telegram (real python-telegram-bot, stand-in Bot API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage.models import CaseStatus
from tests.test_telegram import Bot, file_labour_case, running_bot


@pytest.fixture
async def tg(sqlite_url: str, nlu: NLUBackend, tmp_path: Any) -> AsyncIterator[Bot]:
    async with running_bot(sqlite_url, nlu, tmp_path) as running:
        yield running


async def test_mydata_then_forget_on_telegram(tg: Bot) -> None:
    chat = 7301
    reference = await file_labour_case(tg, chat)
    before = len(tg.sent(chat))
    await tg.say(chat, "/mydata")
    await tg.replies(chat, before + 2)
    await tg.settle(chat)
    texts = [c.params["text"] for c in tg.sent(chat)[before:]]
    # Telegram cannot send our stored file by id: the same text comes as messages.
    assert "/forget" in texts[0]
    body = "\n".join(texts[1:])
    assert reference in body and "工资" in body
    assert "13812345678" not in body and all(len(t) <= 4096 for t in texts)

    before = len(tg.sent(chat))
    await tg.say(chat, "/forget")
    await tg.replies(chat, before + 1)
    _, payloads = tg.last_buttons(chat)
    assert payloads == ["yes", "no"]
    await tg.press(chat, "yes")
    await tg.settle(chat)
    async with tg.store.sessions() as session:
        case = await case_repo.get_case(session, reference)
        assert case.status == CaseStatus.WITHDRAWN and case.resident_words == ""
        assert case.phone_encrypted is None and case.chat_id is None
