"""The aiohttp application: health check now, channels (webhooks, REST) added by them.

Built with an application factory and typed :class:`web.AppKey` s so handlers get the
store and settings without globals, and a cleanup context closes the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bot.runtime import Store
from bot.settings import Settings
from storage.db import DatabaseUnavailable, check_database, safe_url

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
#: Extra health reporters (the NLU backend adds one): name → coroutine returning a dict.
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


def create_app(settings: Settings, store: Store | None = None) -> web.Application:
    """Application factory; pass a ``store`` to share one (tests), else one is opened."""
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[HEALTH_CHECKS] = {}
    owned = store is None
    app[STORE] = store or Store.open(settings)

    async def close_store(app: web.Application) -> AsyncIterator[None]:
        yield
        if owned:
            await app[STORE].close()

    app.cleanup_ctx.append(close_store)
    app.router.add_get("/healthz", healthz)
    return app
