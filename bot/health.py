"""``GET /healthz``: can this process take a resident's message and file it right now?

A load balancer or systemd watchdog acts on the status code alone, so 503 means "do not
send people here": the database cannot be reached or written, or the centre directory
is empty (a case would be filed to nobody). The body says why, and what else is on:

- ``database``: reachability (``SELECT 1`` through the pool) and a real write probe on
  its own short-lived connection (:func:`storage.db.probe_write`, about 1 s at most, so
  the check never hangs behind another process's write lock; a lock held longer is
  reported as ``busy``, not as a failure);
- ``directory``: how many centres are loaded;
- ``channels``: whether REST and the callback channel are on and token-protected
  (they are off when the server listens beyond loopback without ``TIAOJIE_REST_TOKEN``);
- whatever other components registered in :data:`HEALTH_CHECKS` (NLU, Telegram …).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import func, select

from bot.runtime import Store
from bot.settings import Settings
from storage.db import (
    PROBE_TIMEOUT_S,
    DatabaseUnavailable,
    check_database,
    is_lock_timeout,
    probe_write,
    safe_url,
)
from storage.models import Centre

HealthCheck = Callable[[], Awaitable[dict[str, object]]]
#: Extra health reporters: name → coroutine returning a JSON-able dict.
HEALTH_CHECKS = web.AppKey("health_checks", dict[str, HealthCheck])


@dataclass(slots=True)
class Health:
    """What ``/healthz`` looks at."""

    store: Store
    settings: Settings


HEALTH = web.AppKey("health", Health)


def channel_report(settings: Settings, *, callback_on: bool) -> dict[str, object]:
    """REST and callback: on or off, and whether a token guards them."""
    open_ = settings.http_channels_open
    protected = settings.rest_token is not None
    report: dict[str, object] = {
        "rest": {"enabled": open_, "token": protected},
        "callback": {
            "enabled": open_ and callback_on,
            "token": protected,
            "url_set": settings.callback_url is not None,
        },
    }
    if not open_:
        report["reason"] = "listening on a non-loopback address without TIAOJIE_REST_TOKEN"
    return report


async def _database(health: Health) -> tuple[dict[str, object], bool]:
    engine = health.store.engine
    report: dict[str, object] = {"url": safe_url(str(engine.url))}
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S * 3):
            await check_database(engine)
    except (DatabaseUnavailable, TimeoutError) as error:
        report.update(status="unavailable", error=str(error) or "timed out")
        return report, False
    reason = await probe_write(engine)
    if reason is None:
        report.update(status="ok", writable=True)
        return report, True
    if is_lock_timeout(reason):
        report.update(status="busy", writable=True, note=reason)
        return report, True
    report.update(status="read_only", writable=False, error=reason)
    return report, False


async def _directory(health: Health) -> tuple[dict[str, object], bool]:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S * 3), health.store.sessions() as session:
            count = int(
                (await session.execute(select(func.count()).select_from(Centre))).scalar_one()
            )
    except Exception as error:  # the database report already says why
        return {"status": "unknown", "error": type(error).__name__}, False
    if count == 0:
        return {
            "status": "empty",
            "centres": 0,
            "reason": "no centres loaded: run `tiaojie centers load`",
        }, False
    return {"status": "ok", "centres": count}, True


async def healthz(request: web.Request) -> web.Response:
    """200 when a message can be taken and filed, else 503 with the reasons."""
    health = request.app[HEALTH]
    database, db_ok = await _database(health)
    body: dict[str, object] = {"status": "ok", "database": database}
    ok = db_ok
    if db_ok:
        directory, dir_ok = await _directory(health)
        body["directory"] = directory
        ok = ok and dir_ok
    body["channels"] = channel_report(
        health.settings, callback_on=request.app.get(CALLBACK_ON, False)
    )
    for name, check in request.app[HEALTH_CHECKS].items():
        body[name] = await check()
    if not ok:
        body["status"] = "degraded"
    return web.json_response(body, status=200 if ok else 503)


#: Set by the callback channel when it is mounted.
CALLBACK_ON = web.AppKey("callback_on", bool)


def add_health(app: web.Application, store: Store, settings: Settings) -> None:
    """Mount ``/healthz``; components add their reporters to ``app[HEALTH_CHECKS]``."""
    app[HEALTH] = Health(store, settings)
    app.setdefault(HEALTH_CHECKS, {})  # type: ignore[arg-type]
    app.router.add_get("/healthz", healthz)
