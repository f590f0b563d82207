"""The web workspace for mediators, supervisors, administrators and partner departments.

An aiohttp sub-application mounted under ``/desk/`` of the main app
(``app.add_subapp("/desk/", create_workspace(settings, store, ports))``): server-rendered
pages (aiohttp-jinja2, autoescape on), a little vendored JavaScript, Server-Sent Events
for the live queue and timeline, and nothing fetched from the internet.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import setup as setup_session

from actions.desk import DeskService
from actions.ports import ResidentPorts
from bot.dialogue.forms import default_forms
from bot.runtime import Store
from bot.settings import Settings
from bot.workspace import admin, desk, learning, reports, staff_intake
from bot.workspace.common import (
    CLOSING,
    DESK,
    FETCH_FILE,
    FORMS,
    PORTS,
    RISK_RULES,
    SETTINGS,
    STORE,
    FileFetcher,
    refuse,
)
from bot.workspace.security import auth_middleware, cookie_storage, headers_middleware
from nlu.risk import load_risk_rules

HERE = Path(__file__).resolve().parent


def create_workspace(
    settings: Settings,
    store: Store,
    ports: ResidentPorts | None = None,
    *,
    desk_service: DeskService | None = None,
    fetch_file: FileFetcher | None = None,
) -> web.Application:
    """The sub-application. ``fetch_file`` turns a channel's file id (Telegram) into bytes
    for the evidence route; without it only stored (``local:``/``wechat:``) files show."""
    app = web.Application(middlewares=[headers_middleware(settings)])
    app[SETTINGS] = settings
    app[STORE] = store
    app[PORTS] = ports or ResidentPorts()
    app[DESK] = desk_service or DeskService(
        store, ports=app[PORTS], timezone=settings.timezone, link_base=settings.public_url
    )
    app[FORMS] = default_forms()
    app[RISK_RULES] = load_risk_rules()
    if fetch_file is not None:
        app[FETCH_FILE] = fetch_file
    setup_session(app, cookie_storage(settings))
    app.middlewares.append(auth_middleware(store, settings, refuse))
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    )
    app[CLOSING] = asyncio.Event()

    async def closing(app: web.Application) -> None:
        app[CLOSING].set()

    app.on_shutdown.append(closing)
    app.router.add_routes(desk.routes)
    app.router.add_routes(reports.routes)
    app.router.add_routes(admin.routes)
    app.router.add_routes(staff_intake.routes)
    app.router.add_routes(learning.routes)
    app.router.add_static("/static/", HERE / "static", append_version=True)
    return app
