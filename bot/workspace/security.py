"""Sessions, sign-in state, CSRF and security headers of the workspace.

- The session is an encrypted cookie (aiohttp-session + Fernet) holding the user id, the
  user's ``session_version`` at sign-in, a random session id, the CSRF token and the
  sign-in time. Every request reloads the user: a disabled user, a bumped version
  (password reset, disable) or an expired sign-in ends the session at once.
- CSRF: a synchroniser token kept in the session must come back with every
  state-changing request (form field ``csrf`` or header ``X-CSRF-Token``); otherwise 403.
- Headers: a Content-Security-Policy without inline scripts, no framing, no sniffing, no
  referrer to other sites.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from bot.runtime import Store, secret_key
from bot.settings import Settings
from storage import accounts
from storage.accounts import WebUser
from storage.models import Mediator, MediatorRole

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "tiaojie_desk"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'; object-src 'none'"
)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is signed in on this request."""

    user: WebUser
    mediator: Mediator

    @property
    def role(self) -> MediatorRole:
        return self.mediator.role


def cookie_storage(settings: Settings) -> EncryptedCookieStorage:
    """Encrypted, HttpOnly, SameSite=Lax cookie; Secure behind HTTPS."""
    digest = hashlib.sha256(("workspace-session:" + secret_key(settings)).encode()).digest()
    return EncryptedCookieStorage(
        digest,  # raw 32 bytes: aiohttp-session base64-encodes them for Fernet
        cookie_name=COOKIE,
        max_age=settings.session_hours * 3600,
        httponly=True,
        samesite="Lax",
        secure=settings.https,
        path="/desk/",
    )


def csrf_token(session: Session) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def start_session(request: web.Request, user: WebUser) -> None:
    """A fresh session (new id and CSRF token) on every sign-in: no fixation."""
    language = (await get_session(request)).get("lang") or user.language
    session = await new_session(request)
    session["uid"] = user.id
    session["ver"] = user.session_version
    session["sid"] = secrets.token_urlsafe(16)
    session["csrf"] = secrets.token_urlsafe(32)
    session["iat"] = int(time.time())
    session["lang"] = language


async def end_session(request: web.Request) -> None:
    session = await get_session(request)
    language = session.get("lang")
    session.invalidate()
    fresh = await new_session(request)
    if language:
        fresh["lang"] = language


def headers_middleware(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as error:
            response = error
            _secure(response, settings)
            raise
        _secure(response, settings)
        return response

    return middleware


def _secure(response: web.StreamResponse, settings: Settings) -> None:
    if response.prepared:
        return
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    if settings.https:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"


VIEWER = web.RequestKey("workspace_viewer", object)


def auth_middleware(
    store: Store,
    settings: Settings,
    refuse: Callable[[web.Request, int, str], Awaitable[web.Response]],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Load the viewer, end stale sessions, check the CSRF token of unsafe requests."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        session = await get_session(request)
        if request.method in UNSAFE:
            sent = request.headers.get("X-CSRF-Token")
            if sent is None and request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                sent = (await request.post()).get("csrf")  # type: ignore[assignment]
            expected = session.get("csrf")
            if (
                not isinstance(sent, str)
                or not isinstance(expected, str)
                or not hmac.compare_digest(sent, expected)
            ):
                return await refuse(request, 403, "workspace.errors.csrf")
        request[VIEWER] = await _viewer(store, settings, session)
        return await handler(request)

    return middleware


async def still_signed_in(store: Store, settings: Settings, session: Session) -> bool:
    """For long-lived streams: the session is still valid (user active, same version)."""
    return await _viewer(store, settings, session, clear=False) is not None


async def _viewer(
    store: Store, settings: Settings, session: Session, *, clear: bool = True
) -> Viewer | None:
    uid = session.get("uid")
    if not isinstance(uid, int):
        return None
    async with store.sessions() as db:
        user = await accounts.get_user(db, uid)
    expired = int(session.get("iat") or 0) + settings.session_hours * 3600 < time.time()
    if (
        user is None
        or not user.active
        or user.session_version != session.get("ver")
        or user.mediator is None
        or not user.mediator.active
        or expired
    ):
        if clear:  # (a stream's response is already sent: its cookie cannot change)
            for key in ("uid", "ver", "sid", "iat"):
                session.pop(key, None)
        return None
    return Viewer(user, user.mediator)


def viewer_of(request: web.Request) -> Viewer | None:
    value = request.get(VIEWER)
    return value if isinstance(value, Viewer) else None
