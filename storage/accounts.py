"""Accounts of the web workspace: users, sign-in attempts and one-time sign-in links.

A workspace user is a person with a password (argon2 hash, never the password) and a
:class:`~storage.models.Mediator` row on channel ``web`` whose ``external_id`` is the
user's id, so the same permission code serves the Telegram desk and the workspace.

Sessions live in an encrypted cookie, but every request checks the cookie's
``session_version`` against the user row: disabling a user or resetting a password
bumps the version, which ends every session of that user at once (revocation without
a session table).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage import people
from storage.errors import StoreError
from storage.models import Base, Mediator, MediatorRole, utcnow

#: Failures that lock a user name out, and the window they are counted in.
LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = timedelta(minutes=15)
#: How long a one-time sign-in link works.
LINK_LIFETIME = timedelta(hours=24)


class WebUser(Base):
    """A person who signs in to the workspace."""

    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    mediator_id: Mapped[int | None] = mapped_column(ForeignKey("mediators.id"), index=True)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    language: Mapped[str] = mapped_column(String(8), default="zh")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_sign_in: Mapped[datetime | None]

    mediator: Mapped[Mediator | None] = relationship(lazy="selectin")


class LoginAttempt(Base):
    """One sign-in attempt; failures within the window lock the user name out."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    remote: Mapped[str | None] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SignInLink(Base):
    """A one-time sign-in link; only the SHA-256 of its token is stored."""

    __tablename__ = "sign_in_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def get_user(session: AsyncSession, user_id: int) -> WebUser | None:
    return await session.get(WebUser, user_id)


async def find_user(session: AsyncSession, username: str) -> WebUser | None:
    query = select(WebUser).where(WebUser.username == username.strip().lower())
    return (await session.execute(query)).scalar_one_or_none()


async def list_users(session: AsyncSession) -> list[WebUser]:
    return list((await session.execute(select(WebUser).order_by(WebUser.id))).scalars())


async def record_attempt(
    session: AsyncSession, username: str, ok: bool, remote: str | None, now: datetime | None = None
) -> None:
    session.add(
        LoginAttempt(
            username=username.strip().lower()[:64],
            ok=ok,
            remote=(remote or "")[:64] or None,
            created_at=now or utcnow(),
        )
    )
    await session.flush()


async def locked_out(session: AsyncSession, username: str, now: datetime | None = None) -> bool:
    """Five failures in fifteen minutes since the last success lock the name out."""
    now = now or utcnow()
    name = username.strip().lower()[:64]
    since = now - LOCKOUT_WINDOW
    last_ok = (
        await session.execute(
            select(func.max(LoginAttempt.created_at)).where(
                LoginAttempt.username == name, LoginAttempt.ok.is_(True)
            )
        )
    ).scalar_one_or_none()
    if last_ok is not None and last_ok > since:
        since = last_ok
    failures = (
        await session.execute(
            select(func.count())
            .select_from(LoginAttempt)
            .where(
                LoginAttempt.username == name,
                LoginAttempt.ok.is_(False),
                LoginAttempt.created_at > since,
            )
        )
    ).scalar_one()
    return int(failures) >= LOCKOUT_FAILURES


async def create_link(session: AsyncSession, user: WebUser, now: datetime | None = None) -> str:
    """A fresh one-time token for ``user`` (returned once, stored hashed)."""
    token = secrets.token_urlsafe(32)
    session.add(
        SignInLink(
            token_hash=_digest(token),
            user_id=user.id,
            expires_at=(now or utcnow()) + LINK_LIFETIME,
        )
    )
    await session.flush()
    return token


async def peek_link(
    session: AsyncSession, token: str, now: datetime | None = None
) -> WebUser | None:
    """The link's active user while the link is unused and unexpired, else None."""
    now = now or utcnow()
    link = await session.get(SignInLink, _digest(token))
    if link is None or link.used_at is not None or link.expires_at <= now:
        return None
    user = await get_user(session, link.user_id)
    return user if user is not None and user.active else None


async def use_link(
    session: AsyncSession, token: str, now: datetime | None = None
) -> WebUser | None:
    """Like :func:`peek_link`, and marks the link used (it works once)."""
    user = await peek_link(session, token, now)
    if user is not None:
        link = await session.get(SignInLink, _digest(token))
        assert link is not None
        link.used_at = now or utcnow()
        await session.flush()
    return user


async def add_user(
    session: AsyncSession,
    *,
    username: str,
    display_name: str,
    centre_code: str,
    role: MediatorRole,
    password_hash: str | None,
    telegram_id: int | None = None,
) -> WebUser:
    """Create a user and the mediator row it works as.

    A user linked to a Telegram id works as that Telegram mediator on both desks (one
    row: a case claimed on Telegram can be answered from the workspace and back, and
    disabling the user ends both); otherwise as a ``web`` mediator row of its own.

    Raises :class:`~storage.errors.CentreNotFound` for an unknown centre and
    :class:`UserExists` when the name is taken.
    """
    name = username.strip().lower()
    if await find_user(session, name) is not None:
        raise UserExists(name)
    user = WebUser(
        username=name,
        display_name=display_name,
        password_hash=password_hash,
        telegram_id=telegram_id,
        language="zh",
        active=True,
        session_version=1,
    )
    session.add(user)
    await session.flush()
    mediator = await people.add_mediator(
        session,
        channel="telegram" if telegram_id is not None else "web",
        external_id=str(telegram_id) if telegram_id is not None else str(user.id),
        display_alias=display_name,
        centre_code=centre_code,
        role=role,
    )
    user.mediator_id = mediator.id
    await session.flush()
    await session.refresh(user)
    return user


async def disable_user(session: AsyncSession, username: str) -> WebUser:
    """Disable the user and end every session of theirs at once."""
    user = await find_user(session, username)
    if user is None:
        raise UserNotFound(username)
    user.active = False
    user.session_version += 1
    if user.mediator is not None:
        user.mediator.active = False
    await session.flush()
    return user


async def set_password(session: AsyncSession, user: WebUser, password_hash: str) -> None:
    """A new password ends the user's other sessions."""
    user.password_hash = password_hash
    user.session_version += 1
    await session.flush()


async def linked_mediator_ids(session: AsyncSession, user: WebUser) -> set[int]:
    """The user's mediator rows on every desk (web, and Telegram when linked)."""
    ids = {user.mediator_id} if user.mediator_id is not None else set()
    if user.telegram_id is not None:
        other = await people.find_mediator(session, "telegram", str(user.telegram_id))
        if other is not None:
            ids.add(other.id)
    return ids


class UserExists(StoreError):
    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} exists")
        self.username = username


class UserNotFound(StoreError):
    def __init__(self, username: str) -> None:
        super().__init__(f"no user {username!r}")
        self.username = username
