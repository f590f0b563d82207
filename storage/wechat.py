"""What WeChat and WeCom need to remember between processes.

- ``wechat_tokens``: the Official Account's access token. WeChat invalidates the old
  token whenever a new one is fetched, so several workers fetching their own would keep
  knocking each other's token out; one row per app id is shared instead, and a
  conditional UPDATE on ``lease_until`` lets exactly one process refresh it at a time.
- ``wechat_contacts``: per resident (openid), when they last wrote to us (customer-service
  messages are only allowed within 48 hours of that), whether they still follow the
  account, and the payloads of the options we last offered (so "1" means the first).
- ``wecom_robots``: a centre's WeCom group-robot webhook (the URL holds the robot's key,
  so it lives in the store beside the centre rather than in every log line).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, Centre, utcnow


class WeChatToken(Base):
    """The shared access token of one Official Account (app id)."""

    __tablename__ = "wechat_tokens"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_token: Mapped[str | None] = mapped_column(String(1024))
    expires_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]


class WeChatContact(Base):
    """One resident's WeChat openid and what the channel must know about them."""

    __tablename__ = "wechat_contacts"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_inbound_at: Mapped[datetime | None]
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    unsubscribed_at: Mapped[datetime | None]
    options: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WeComRobot(Base):
    """The WeCom group robot where a centre's new, urgent and escalated cases go."""

    __tablename__ = "wecom_robots"

    centre_id: Mapped[int] = mapped_column(
        ForeignKey("centres.id", ondelete="CASCADE"), primary_key=True
    )
    webhook_url: Mapped[str] = mapped_column(String(512))


def _insert(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return pg_insert if dialect == "postgresql" else sqlite_insert


# ------------------------------------------------------------------------- tokens


async def read_token(session: AsyncSession, app_id: str) -> tuple[str, datetime] | None:
    """The stored token and its expiry, or None when there is none yet."""
    row = await session.get(WeChatToken, app_id, populate_existing=True)
    if row is None or row.access_token is None or row.expires_at is None:
        return None
    return row.access_token, row.expires_at


async def take_refresh_lease(
    session: AsyncSession, app_id: str, owner: str, now: datetime, lease: timedelta
) -> bool:
    """Become the one process allowed to fetch a new token for ``lease``; True if so.

    The row is created if missing (a no-op when another process did it first), then a
    conditional UPDATE claims it only when nobody holds an unexpired lease: of several
    processes racing, exactly one sees a row count of 1.
    """
    insert = _insert(session)
    await session.execute(
        insert(WeChatToken).values(app_id=app_id).on_conflict_do_nothing(index_elements=["app_id"])
    )
    result = await session.execute(
        update(WeChatToken)
        .where(
            WeChatToken.app_id == app_id,
            or_(WeChatToken.lease_until.is_(None), WeChatToken.lease_until < now),
        )
        .values(lease_owner=owner, lease_until=now + lease)
    )
    return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]


async def store_token(
    session: AsyncSession, app_id: str, owner: str, token: str, expires_at: datetime
) -> None:
    """Save a freshly fetched token and give the lease back."""
    await session.execute(
        update(WeChatToken)
        .where(WeChatToken.app_id == app_id)
        .values(access_token=token, expires_at=expires_at, lease_owner=None, lease_until=None)
    )


async def release_lease(session: AsyncSession, app_id: str, owner: str) -> None:
    """Give the lease back without a token (the fetch failed)."""
    await session.execute(
        update(WeChatToken)
        .where(WeChatToken.app_id == app_id, WeChatToken.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


async def expire_token(session: AsyncSession, app_id: str, token: str, now: datetime) -> None:
    """WeChat refused ``token``: mark it expired, unless someone already replaced it."""
    await session.execute(
        update(WeChatToken)
        .where(WeChatToken.app_id == app_id, WeChatToken.access_token == token)
        .values(expires_at=now)
    )


# ----------------------------------------------------------------------- contacts


async def _upsert_contact(session: AsyncSession, openid: str, **values: Any) -> None:
    insert = _insert(session)
    values.setdefault("updated_at", utcnow())
    statement = (
        insert(WeChatContact)
        .values(openid=openid, **{"options": [], "subscribed": True, **values})
        .on_conflict_do_update(index_elements=["openid"], set_=values)
    )
    await session.execute(statement)


async def touch_contact(session: AsyncSession, openid: str, at: datetime) -> None:
    """The resident wrote to us at ``at``: the 48-hour window starts again."""
    await _upsert_contact(session, openid, last_inbound_at=at, subscribed=True)


async def mark_unsubscribed(session: AsyncSession, openid: str, at: datetime) -> None:
    await _upsert_contact(session, openid, subscribed=False, unsubscribed_at=at)


async def remember_options(session: AsyncSession, openid: str, payloads: list[str]) -> None:
    """The payloads of the options we just showed, in the order they were numbered."""
    await _upsert_contact(session, openid, options=list(payloads))


async def get_contact(session: AsyncSession, openid: str) -> WeChatContact | None:
    return await session.get(WeChatContact, openid, populate_existing=True)


# ------------------------------------------------------------------------- WeCom


async def set_wecom_webhook(session: AsyncSession, centre_id: int, url: str | None) -> None:
    """Set or (with None) remove a centre's robot webhook."""
    row = await session.get(WeComRobot, centre_id)
    if url is None:
        if row is not None:
            await session.delete(row)
        return
    if row is None:
        session.add(WeComRobot(centre_id=centre_id, webhook_url=url))
    else:
        row.webhook_url = url


async def any_wecom_robot(session: AsyncSession) -> bool:
    """Whether any centre has a WeCom group robot."""
    query = select(WeComRobot.centre_id).limit(1)
    return (await session.execute(query)).first() is not None


async def wecom_webhook(session: AsyncSession, centre_code: str) -> str | None:
    """The robot webhook of the centre with ``centre_code``, if it has one."""
    query = (
        select(WeComRobot.webhook_url)
        .join(Centre, Centre.id == WeComRobot.centre_id)
        .where(Centre.code == centre_code)
    )
    return (await session.execute(query)).scalar_one_or_none()
