"""/mydata and /forget through the REST channel of the real app (aiohttp test client)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.runtime import Store
from bot.settings import load_settings
from bot.web import create_app
from nlu.interface import NLUBackend
from storage import cases as case_repo
from storage.cases import Actor
from storage.models import CaseStatus
from storage.sealed import unseal_text
from tests.test_privacy import PHONE, new_case
from tests.test_rest_channel import send


@pytest.fixture
async def client(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, Store, Path]]:
    data_dir = tmp_path / "var"
    settings = load_settings(database_url=sqlite_url, data_dir=data_dir)
    store = Store.open(settings)
    app = create_app(settings, nlu, store=store)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, store, data_dir
    await store.close()


async def rest_case(store: Store, sender: str, *, close: bool) -> str:
    reference = await new_case(store, chat=sender, channel="rest")
    async with store.sessions.begin() as session:
        if close:
            await case_repo.change_status(session, reference, CaseStatus.WITHDRAWN, Actor.system())
    return reference


async def test_mydata_sends_the_export_as_a_file_and_text(client) -> None:
    http, store, data_dir = client
    reference = await rest_case(store, "rest-mydata", close=False)
    body = await send(http, "rest-mydata", "/mydata")
    attachment = body[0]["attachment"]
    assert attachment["file_id"].startswith("local:") and attachment["mime_type"] == "text/plain"
    stored = data_dir / "exports" / attachment["file_id"].removeprefix("local:")
    text = stored.read_text(encoding="utf-8")
    assert reference in text and "老板欠我三个月工资" in text
    assert PHONE not in text and "138****5678" in text
    assert reference in "".join(item.get("text", "") for item in body[1:])


async def test_forget_asks_then_withdraws_open_and_erases_closed(client) -> None:
    http, store, _ = client
    sender = "rest-forget"
    closed = await rest_case(store, sender, close=True)
    opened = await rest_case(store, sender, close=False)
    body = await send(http, sender, "/forget")
    assert [b["payload"] for b in body[0]["buttons"]] == ["yes", "no"]
    assert "1" in body[0]["text"] and "2" in body[0]["text"]
    async with store.sessions() as session:  # nothing happens before the yes
        still = await case_repo.get_case(session, opened)
        assert still.resident_words_sealed is not None  # the words (phone sealed) stay
        assert PHONE in str(
            unseal_text(still.resident_words, still.resident_words_sealed, store.vault)
        )

    body = await send(http, sender, "yes")
    assert len(body) == 1
    async with store.sessions() as session:
        for reference in (closed, opened):
            case = await case_repo.get_case(session, reference)
            assert case.resident_words == "" and case.phone_encrypted is None
            assert case.resident_words_sealed is None
            kinds = [e.kind for e in await case_repo.case_events(session, case)]
            assert kinds[-1] == "data_erased"
        assert (await case_repo.get_case(session, opened)).status == CaseStatus.WITHDRAWN
    # A later "yes" is the engine's again, not a second erasure.
    again = await send(http, sender, "yes")
    assert all("data_erased" not in str(item) for item in again)


async def test_forget_cancelled_and_a_stale_yes_deletes_nothing(client) -> None:
    http, store, _ = client
    sender = "rest-cancel"
    opened = await rest_case(store, sender, close=False)
    await send(http, sender, "/forget")
    body = await send(http, sender, "no")
    assert body and body[0]["text"]
    await send(http, sender, "/forget")
    await send(http, sender, "hello")  # the conversation moves on
    await send(http, sender, "yes")
    async with store.sessions() as session:
        case = await case_repo.get_case(session, opened)
        assert case.status == CaseStatus.NEW and case.resident_words_sealed is not None
        assert PHONE in str(
            unseal_text(case.resident_words, case.resident_words_sealed, store.vault)
        )


class StaffInbox:
    """A staff port (the boundary to a chat platform) that keeps what it was given."""

    name = "telegram"

    def __init__(self) -> None:
        self.received: list[tuple[tuple[str, str], str]] = []

    async def notify(
        self,
        staff_key: tuple[str, str],
        text: str,
        *,
        reference: str | None = None,
        attachment: dict[str, Any] | None = None,
        buttons: Sequence[tuple[str, str]] = (),
    ) -> bool:
        self.received.append((staff_key, text))
        return True


async def test_forget_tells_the_mediator_of_a_withdrawn_case(client) -> None:
    from actions import casework
    from bot.i18n import t
    from bot.web import DESK_SERVICE
    from storage.people import add_mediator

    http, store, _ = client
    inbox = StaffInbox()
    http.server.app[DESK_SERVICE].add_staff_port(inbox)
    sender = "rest-told"
    reference = await rest_case(store, sender, close=False)
    async with store.sessions.begin() as session:
        mediator = await add_mediator(
            session,
            channel="telegram",
            external_id="m-told",
            display_alias="王调解",
            centre_code="fuyong-fenghuang",
        )
        await casework.claim(session, reference, mediator)
    await send(http, sender, "/forget")
    await send(http, sender, "yes")
    told = [text for key, text in inbox.received if key == ("telegram", "m-told")]
    assert any(t("privacy.mediator_told", "zh", reference=reference) in text for text in told)
