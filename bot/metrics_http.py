"""``GET /metrics``: what the workers are doing, in Prometheus' text format.

Access follows the REST channel's rule (see :func:`bot.channels.rest.check_access`),
with a token of its own: with ``TIAOJIE_METRICS_TOKEN`` set every scrape needs
``Authorization: Bearer <token>`` (401 otherwise); without it ``/metrics`` answers only
while the server listens on loopback, and 403 with the reason on any other address.
Why not reuse ``TIAOJIE_REST_TOKEN``: whoever holds that can write into residents'
cases; a monitoring system should hold a key that only reads numbers. The numbers
carry no personal data (centre codes, channel names, counts), but queue depths and
case counts of a district are still not for everyone who can reach the port.

Before answering, the scrape refreshes two gauges that are cheaper to read than to
keep: queue depth per centre (one grouped query on the store, at most every
:data:`QUEUE_REFRESH_S` seconds and never longer than :data:`QUEUE_TIMEOUT_S`, on the
async engine so the event loop never waits on it) and the NLU model in use (from the
backend's own cheap health report). With ``PROMETHEUS_MULTIPROC_DIR`` set the answer
adds up every worker's files (:mod:`actions.metrics`), rendered in a thread.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from actions.metrics import QUEUE_DEPTH, multiprocess_dir, set_model_version
from bot.http_errors import BadBody
from bot.runtime import Store
from bot.settings import Settings
from nlu.interface import NLUBackend
from storage.queue_depth import queue_depths

log = logging.getLogger(__name__)

#: A scrape reads the queues from the store at most this often (per process).
QUEUE_REFRESH_S = 5.0
#: Longest a scrape waits for the queue query; the last values are shown after that.
QUEUE_TIMEOUT_S = 2.0


@dataclass(slots=True)
class Scrape:
    """What ``/metrics`` reads from: the store, the settings, the NLU backend."""

    store: Store
    settings: Settings
    nlu: NLUBackend
    queues_read_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: (centre, status) label pairs already shown, so a centre that goes away reads 0.
    shown: set[tuple[str, str]] = field(default_factory=set)


SCRAPE = web.AppKey("metrics_scrape", Scrape)


def check_metrics_access(request: web.Request) -> None:
    """Refuse unless the metrics token was given, or (no token set) the server is
    loopback-only. Raises :class:`BadBody` (401 or 403)."""
    settings = request.app[SCRAPE].settings
    token = settings.metrics_token
    if token is None:
        if settings.listens_on_loopback:
            return
        raise BadBody("metrics.closed", 403)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), token.get_secret_value().encode()
    ):
        raise BadBody("metrics.unauthorized", 401, {"WWW-Authenticate": 'Bearer realm="metrics"'})


async def refresh_queues(scrape: Scrape) -> None:
    """Queue depth per centre from the store (cached briefly; a slow store is skipped)."""
    async with scrape.lock:
        if time.monotonic() - scrape.queues_read_at < QUEUE_REFRESH_S:
            return
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT_S):
                async with scrape.store.sessions() as session:
                    depths = await queue_depths(session)
        except (SQLAlchemyError, OSError, TimeoutError) as error:
            log.warning("queue depth not read for /metrics: %s", type(error).__name__)
            return
        scrape.queues_read_at = time.monotonic()
        seen: set[tuple[str, str]] = set()
        for centre, statuses in depths.items():
            for status, count in statuses.items():
                QUEUE_DEPTH.labels(centre, status).set(count)
                seen.add((centre, status))
        for gone in scrape.shown - seen:
            QUEUE_DEPTH.labels(*gone).set(0)
        scrape.shown |= seen


async def refresh_model(nlu: NLUBackend) -> None:
    """The backend and model version this process parses with."""
    try:
        health = await nlu.health()
    except Exception as error:  # a broken backend must not break the scrape
        log.warning("NLU health not read for /metrics: %s", type(error).__name__)
        return
    backend = str(health.get("backend") or "unknown")
    version = health.get("version") or health.get("model")
    set_model_version(backend, str(version) if version else None)


def render() -> bytes:
    """The exposition: this process's registry, or every worker's in multiprocess mode."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


async def metrics_view(request: web.Request) -> web.Response:
    check_metrics_access(request)
    scrape = request.app[SCRAPE]
    await refresh_queues(scrape)
    await refresh_model(scrape.nlu)
    body = await asyncio.to_thread(render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_metrics(app: web.Application, store: Store, settings: Settings, nlu: NLUBackend) -> None:
    """Mount ``/metrics`` and show the model version from the start."""
    app[SCRAPE] = Scrape(store, settings, nlu)
    app.router.add_get("/metrics", metrics_view)

    async def on_startup(app: web.Application) -> None:
        await refresh_model(nlu)

    app.on_startup.append(on_startup)
    if settings.metrics_token is None and not settings.listens_on_loopback:
        log.warning(
            "/metrics is OFF: the server listens beyond this machine and "
            "TIAOJIE_METRICS_TOKEN is not set"
        )
