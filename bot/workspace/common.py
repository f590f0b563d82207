"""What every workspace handler shares: app keys, rendering, refusals, role checks, time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import wraps
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from actions.desk import DeskService
from actions.ports import ResidentPorts
from bot.dialogue.forms import Forms
from bot.i18n import normalise_language, t
from bot.runtime import Store
from bot.settings import Settings
from bot.workspace.security import Viewer, csrf_token, viewer_of
from storage.models import MediatorRole

SETTINGS = web.AppKey("workspace_settings", Settings)
STORE = web.AppKey("workspace_store", Store)
PORTS = web.AppKey("workspace_ports", ResidentPorts)
#: The channel-agnostic desk service: the same claim, reply, status and transfer the
#: Telegram desk and the CLI use (cards updated, the resident told, all on the timeline).
DESK = web.AppKey("workspace_desk", DeskService)
FORMS = web.AppKey("workspace_forms", Forms)
FileFetcher = Callable[[str], Awaitable[bytes | None]]
FETCH_FILE = web.AppKey("workspace_fetch_file", object)
RISK_RULES = web.AppKey("workspace_risk_rules", object)
#: Set when the server shuts down, so live streams end instead of holding it up.
CLOSING = web.AppKey("workspace_closing", asyncio.Event)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STAFF = (MediatorRole.MEDIATOR, MediatorRole.SUPERVISOR, MediatorRole.ADMIN)
ALL_ROLES = (*STAFF, MediatorRole.DEPARTMENT)


async def language(request: web.Request) -> str:
    session = await get_session(request)
    return normalise_language(str(session.get("lang") or "zh"))


def local_time(settings: Settings, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return "-"
    return value.astimezone(ZoneInfo(settings.timezone)).strftime(fmt)


async def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    lang = await language(request)
    session = await get_session(request)
    settings = request.app[SETTINGS]
    base: dict[str, Any] = {
        "request": request,
        "lang": lang,
        "tr": lambda key, **values: t(f"workspace.{key}", lang, **values),
        "tg": lambda key, **values: t(key, lang, **values),
        "csrf": csrf_token(session),
        "viewer": viewer_of(request),
        "when": lambda value, fmt="%Y-%m-%d %H:%M": local_time(settings, value, fmt),
        "flash": session.pop("flash", None),
        "roles": MediatorRole,
        "prefix": "/desk",
    }
    base.update(context)
    response = aiohttp_jinja2.render_template(template, request, base, status=status)
    return response


async def flash(request: web.Request, key: str, kind: str = "ok", **values: Any) -> None:
    """A message shown once on the next page (translated when it is shown)."""
    lang = await language(request)
    session = await get_session(request)
    session["flash"] = {"kind": kind, "text": t(f"workspace.{key}", lang, **values)}


async def refuse(request: web.Request, status: int, key: str) -> web.Response:
    """A polite error page (403, 404, 400 …) in the viewer's language."""
    return await render(request, "error.html", {"status": status, "message_key": key}, status)


def requires(*roles: MediatorRole) -> Callable[[Handler], Handler]:
    """Signed in with one of ``roles``; else the sign-in page (or 403 for a wrong role)."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            viewer = viewer_of(request)
            if viewer is None:
                if request.method == "GET" and "text/event-stream" not in request.headers.get(
                    "Accept", ""
                ):
                    raise web.HTTPSeeOther(f"/desk/signin?next={request.path_qs}")
                return await refuse(request, 401, "workspace.errors.signed_out")
            if viewer.role not in roles:
                return await refuse(request, 403, "workspace.errors.forbidden")
            return await handler(request)

        return wrapper

    return decorate


def viewer(request: web.Request) -> Viewer:
    found = viewer_of(request)
    assert found is not None  # guarded by @requires
    return found


def safe_next(target: str | None) -> str:
    """Only paths inside the workspace: no open redirect."""
    if target and target.startswith("/desk/") and not target.startswith("//"):
        return target
    return "/desk/"
