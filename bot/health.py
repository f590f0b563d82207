"""``GET /healthz``: can this process take a resident's message and file it right now?

A load balancer or systemd watchdog acts on the status code alone, so 503 means "do not
send people here": the database cannot be reached or written, or the centre directory
is empty (a case would be filed to nobody). The body says why, and what else is on:

- ``database``: a read and a real write on a short-lived connection of its own
  (:func:`storage.db.probe_database`: about 1 s at most, never the SQLite pool's single
  connection, so the check never hangs behind a long write; a lock held longer than
  that is reported as ``busy``, not as a failure);
- ``directory``: how many centres are loaded;
- ``channels``: whether REST and the callback channel are on and token-protected
  (they are off when the server listens beyond loopback without ``TIAOJIE_REST_TOKEN``);
- whatever other components registered in :data:`HEALTH_CHECKS` (NLU, Telegram …).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from bot.runtime import Store
from bot.settings import Settings
from storage.db import probe_database, safe_url
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


async def _database(health: Health) -> tuple[dict[str, object], dict[str, object]]:
    """The database and directory reports, from one probe on its own connection."""
    engine = health.store.engine
    probe = await probe_database(engine, count_table=Centre.__tablename__)
    database: dict[str, object] = {"url": safe_url(str(engine.url))}
    if probe.read_error is not None:
        database.update(status="unavailable", error=probe.read_error)
    elif probe.write_error is None:
        database.update(status="ok", writable=True)
    elif probe.busy:
        # Another writer held the lock past the probe's short wait: slow, not broken.
        database.update(status="busy", writable=True, note=probe.write_error)
    else:
        database.update(status="read_only", writable=False, error=probe.write_error)
    if probe.rows is None:
        directory: dict[str, object] = {"status": "unknown"}
    elif probe.rows == 0:
        directory = {
            "status": "empty",
            "centres": 0,
            "reason": "no centres loaded: run `tiaojie centers load`",
        }
    else:
        directory = {"status": "ok", "centres": probe.rows}
    return database, directory


async def healthz(request: web.Request) -> web.Response:
    """200 when a message can be taken and filed, else 503 with the reasons."""
    health = request.app[HEALTH]
    database, directory = await _database(health)
    body: dict[str, object] = {"status": "ok", "database": database, "directory": directory}
    ok = database["status"] in ("ok", "busy") and directory["status"] == "ok"
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
