"""Helpers and fixtures shared by the workspace's tests (not a test module itself)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from actions import intake
from actions.ports import ResidentPorts
from bot.dialogue.model import Reply
from bot.runtime import Store
from bot.settings import Settings
from bot.workspace.app import create_workspace
from bot.workspace.passwords import hash_password
from storage import accounts
from storage.cases import get_case
from storage.models import CaseEvent, MediatorRole
from storage.people import get_or_create_resident

PASSWORD = "correct horse battery"
#: Hashed once per run: argon2 is slow on purpose.
PASSWORD_HASH = hash_password(PASSWORD)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class RecordingPort:
    """A resident port that keeps what it was asked to send (implements ResidentPort),
    and hands it on to the channel's real port when given one."""

    def __init__(self, channel: str, forward_to: Any = None) -> None:
        self.channel = channel
        self.forward_to = forward_to
        self.sent: list[tuple[str, list[Reply], str]] = []

    async def send(self, chat_id: str, replies: Sequence[Reply], *, language: str) -> None:
        self.sent.append((chat_id, list(replies), language))
        if self.forward_to is not None:
            await self.forward_to.send(chat_id, replies, language=language)


def workspace_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        secret_key="test-secret",  # type: ignore[arg-type]
        data_dir=tmp_path,
        **overrides,
    )


async def add_user(
    store: Store,
    username: str,
    centre: str,
    role: MediatorRole = MediatorRole.MEDIATOR,
    name: str | None = None,
) -> accounts.WebUser:
    async with store.sessions.begin() as session:
        return await accounts.add_user(
            session,
            username=username,
            display_name=name or f"调解员{username}",
            centre_code=centre,
            role=role,
            password_hash=PASSWORD_HASH,
        )


async def file_chat_case(
    store: Store,
    *,
    words: str = "房东不退押金三千块,我的电话13812345678",
    street: str = "xixiang",
    community: str | None = None,
    category: str = "dispute_tenancy",
    chat_id: str = "resident-1",
    channel: str = "rest",
    risk: str = "normal",
    phone: str | None = "13812345678",
) -> str:
    """A case filed the way the chat files one (same draft shape, same routing)."""
    async with store.sessions.begin() as session:
        resident = await get_or_create_resident(session, channel, chat_id)
        filed = await intake.file_case(
            session,
            {
                "category": category,
                "words": [words],
                "slots": {},
                "street": street,
                "community": community,
                "phone": phone,
                "consent": True,
                "risk": risk,
                "attachments": [],
            },
            resident=resident,
            channel=channel,
            chat_id=chat_id,
            language="zh",
            vault=store.vault,
            reason="emergency" if risk == "urgent" else "filed",
        )
    return filed.reference


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def client_factory(store: Store, tmp_path: Path, port: RecordingPort) -> AsyncIterator[Any]:
    """Yields ``make(**settings)`` that starts a test client on a fresh workspace."""
    clients: list[TestClient] = []

    async def make(**overrides: object) -> TestClient:
        settings = workspace_settings(tmp_path, **overrides)
        app = web.Application()
        app.add_subapp("/desk/", create_workspace(settings, store, ResidentPorts([port])))
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    page = await client.get("/desk/signin")
    token = csrf_of(await page.text())
    return await client.post(
        "/desk/signin",
        data={"username": username, "password": password, "csrf": token, "next": "/desk/"},
        allow_redirects=False,
    )


async def token_from(client: TestClient, path: str) -> str:
    return csrf_of(await (await client.get(path)).text())


async def events_of(store: Store, reference: str, kind: str) -> list[CaseEvent]:
    async with store.sessions() as session:
        case = await get_case(session, reference)
        query = select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.kind == kind)
        return list((await session.execute(query)).scalars())
