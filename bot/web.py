"""The aiohttp application: health check, the REST channel and Telegram's webhook.

Built with an application factory and typed :class:`web.AppKey` s so handlers get the
store and settings without globals; cleanup contexts open and close the database, the
NLU backend and the Telegram bot in the right order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from actions.ports import ResidentPorts
from bot.channels.rest import add_rest_channel
from bot.dialogue.engine import Context
from bot.dialogue.forms import default_forms
from bot.dialogue.geography import load_geography
from bot.intake_service import IntakeService
from bot.runtime import Store
from bot.settings import Settings
from bot.workspace.app import create_workspace
from nlu.interface import NLUBackend
from storage.db import DatabaseUnavailable, check_database, safe_url

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
NLU = web.AppKey("nlu", NLUBackend)
#: Extra health reporters: name → coroutine returning a dict.
HEALTH_CHECKS = web.AppKey("health_checks", dict[str, Callable[[], Awaitable[dict[str, object]]]])


async def healthz(request: web.Request) -> web.Response:
    """Database reachability plus whatever components registered a check.

    Answers 200 when the database is up and 503 when it is not, so a load balancer or
    systemd watchdog can act on the status code alone.
    """
    store = request.app[STORE]
    body: dict[str, object] = {"status": "ok"}
    try:
        await check_database(store.engine)
        body["database"] = {"status": "ok", "url": safe_url(str(store.engine.url))}
        status = 200
    except DatabaseUnavailable as error:
        body["status"] = "degraded"
        body["database"] = {"status": "unavailable", "error": str(error)}
        status = 503
    for name, check in request.app[HEALTH_CHECKS].items():
        body[name] = await check()
    return web.json_response(body, status=status)


def engine_context(settings: Settings, threshold: float) -> Context:
    """Forms and the district's streets, read once at start-up (bad files fail here)."""
    return Context(
        forms=default_forms(),
        geography=load_geography(settings.centres_file),
        threshold=threshold,
    )


def create_app(
    settings: Settings,
    nlu: NLUBackend,
    *,
    threshold: float = 0.3,
    store: Store | None = None,
    ports: ResidentPorts | None = None,
) -> web.Application:
    """Application factory; pass a ``store`` to share one (tests), else one is opened."""
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[NLU] = nlu
    app[HEALTH_CHECKS] = {"nlu": nlu.health}
    owned = store is None
    app[STORE] = store or Store.open(settings)

    async def close_store(app: web.Application) -> AsyncIterator[None]:
        yield
        if owned:
            await app[STORE].close()

    app.cleanup_ctx.append(close_store)
    app.router.add_get("/healthz", healthz)
    service = IntakeService(
        app[STORE],
        nlu,
        engine_context(settings, threshold),
        reference_prefix=settings.reference_prefix,
        timezone=settings.timezone,
    )
    add_rest_channel(app, service)
    app.add_subapp("/desk/", create_workspace(settings, app[STORE], ports))
    if settings.telegram_bot_token is not None:
        from bot.channels.telegram import add_telegram

        add_telegram(app, settings, service)
    return app
