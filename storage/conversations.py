"""Conversation state, saved after every event with optimistic concurrency.

Two bot processes (or two updates of the same chat) may handle events at once; the
``version`` column makes the second save fail with :class:`StaleState` instead of
silently overwriting the first, so the caller reloads and tries again.

A draft holds what the resident typed (their story, the phone given at the phone step),
so the saved ``state`` has personal numbers masked and ``state_sealed`` the original
(:mod:`storage.sealed`); loading with the vault gives the original back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.errors import StaleState
from storage.models import Conversation, utcnow
from storage.sealed import Vault, seal_value, session_vault, unseal_value

#: Built once: constructing a statement costs more than running it on SQLite, and these
#: two run for every message of every chat.
_LOAD = select(Conversation.state, Conversation.state_sealed, Conversation.version).where(
    Conversation.channel == bindparam("channel"), Conversation.chat_id == bindparam("chat_id")
)
_SAVE = (
    update(Conversation)
    .where(
        Conversation.channel == bindparam("b_channel"),
        Conversation.chat_id == bindparam("b_chat_id"),
        Conversation.version == bindparam("b_version"),
    )
    .values(
        state=bindparam("state"),
        state_sealed=bindparam("state_sealed"),
        version=bindparam("version"),
        updated_at=bindparam("updated_at"),
    )
    .execution_options(synchronize_session=False)
)


async def load_conversation(
    session: AsyncSession, channel: str, chat_id: str, *, vault: Vault | None = None
) -> tuple[dict[str, Any], int]:
    """The saved state (the original, with the session's or the given vault) and its
    version; a chat never seen has ``({}, 0)``."""
    row = (
        await session.execute(_LOAD, {"channel": channel, "chat_id": str(chat_id)})
    ).one_or_none()
    if row is None:
        return {}, 0
    vault = vault or session_vault(session)
    return dict(unseal_value(row.state or {}, row.state_sealed, vault)), int(row.version)


async def save_conversation(
    session: AsyncSession | AsyncConnection,
    channel: str,
    chat_id: str,
    state: dict[str, Any],
    expected_version: int,
    *,
    vault: Vault | None = None,
) -> int:
    """Save ``state`` if nobody saved since ``expected_version``; returns the new version.

    Takes a session, or a bare connection for the hot path of a message that changes
    nothing but the conversation (no ORM unit of work needed; pass ``vault`` then).
    """
    chat_id = str(chat_id)
    if isinstance(session, AsyncSession):
        vault = vault or session_vault(session)
    masked, token = seal_value(state, vault)
    connection = await session.connection() if isinstance(session, AsyncSession) else session
    if expected_version == 0:
        # First save of a chat: an insert that does nothing if another process got there
        # first (then that process's state wins and we retry), without a savepoint.
        insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        created = await connection.execute(
            insert(Conversation)
            .values(
                channel=channel,
                chat_id=chat_id,
                state=masked,
                state_sealed=token,
                version=1,
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["channel", "chat_id"])
        )
        if created.rowcount != 1:  # type: ignore[attr-defined]
            raise StaleState(chat_id, expected_version)
        return 1
    result = await connection.execute(
        _SAVE,
        {
            "b_channel": channel,
            "b_chat_id": chat_id,
            "b_version": expected_version,
            "state": masked,
            "state_sealed": token,
            "version": expected_version + 1,
            "updated_at": utcnow(),
        },
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleState(chat_id, expected_version)
    return expected_version + 1
