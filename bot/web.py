"""The aiohttp application: health check, the REST and callback channels, Telegram's webhook.

Built with an application factory and typed :class:`web.AppKey` s so handlers get the
store and settings without globals; cleanup contexts open and close the database, the
NLU backend and the Telegram bot in the right order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from actions.desk import DeskService
from actions.learning import Thresholds
from actions.ports import ResidentPorts
from actions.retention import retention_job
from actions.scheduler import Job, Scheduler
from bot.channels.callback import add_callback_channel
from bot.channels.rest import RestPort, add_rest_channel
from bot.console_chat import CHANNEL as CONSOLE_CHANNEL
from bot.dialogue.engine import Context
from bot.dialogue.forms import default_forms
from bot.dialogue.geography import load_geography
from bot.health import CALLBACK_ON, HEALTH_CHECKS, HealthCheck, add_health
from bot.http_errors import error_middleware
from bot.intake_service import IntakeService
from bot.runtime import Store
from bot.settings import Settings
from bot.workspace.app import create_workspace
from nlu.interface import NLUBackend

SETTINGS = web.AppKey("settings", Settings)
RESIDENT_PORTS = web.AppKey("resident_ports", ResidentPorts)
DESK_SERVICE = web.AppKey("desk_service", DeskService)
SCHEDULER = web.AppKey("scheduler", Scheduler)
STORE = web.AppKey("store", Store)
NLU = web.AppKey("nlu", NLUBackend)


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
) -> web.Application:
    """Application factory; pass a ``store`` to share one (tests), else one is opened."""
    app = web.Application(client_max_size=1024 * 1024, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[NLU] = nlu
    app[HEALTH_CHECKS] = dict[str, HealthCheck](nlu=nlu.health)
    owned = store is None
    app[STORE] = store or Store.open(settings)

    async def close_store(app: web.Application) -> AsyncIterator[None]:
        yield
        if owned:
            await app[STORE].close()

    app.cleanup_ctx.append(close_store)
    add_health(app, app[STORE], settings)
    ports = ResidentPorts()
    app[RESIDENT_PORTS] = ports
    desk = DeskService(
        app[STORE], ports=ports, timezone=settings.timezone, link_base=settings.public_url
    )
    app[DESK_SERVICE] = desk
    service = IntakeService(
        app[STORE],
        nlu,
        engine_context(settings, threshold),
        reference_prefix=settings.reference_prefix,
        timezone=settings.timezone,
        notifier=desk,
        data_dir=settings.data_dir,
        review_thresholds=Thresholds(settings.review_low_confidence, settings.review_small_margin),
    )
    # --- HTTP channels (REST outbox, Rasa callback) and their ports to residents
    ports.register(add_rest_channel(app, service, settings))
    ports.register(RestPort(app[STORE], CONSOLE_CHANNEL))  # `tiaojie chat` reads it
    callback_port = add_callback_channel(app, service, settings)
    if callback_port is not None:
        ports.register(callback_port)
    app[CALLBACK_ON] = callback_port is not None
    # ---
    fetch_file = None
    if settings.telegram_bot_token is not None:
        from bot.channels.telegram import TELEGRAM, add_telegram
        from bot.channels.telegram_ports import telegram_file_fetcher

        add_telegram(app, settings, service, desk, ports)
        fetch_file = telegram_file_fetcher(app[TELEGRAM].bot)
    workspace = create_workspace(
        settings, app[STORE], ports, desk_service=desk, fetch_file=fetch_file
    )
    app.add_subapp("/desk/", workspace)
    # --- WeChat Official Account (residents) and WeCom group robots (centres' cards).
    if settings.wechat_enabled:
        from bot.channels.wechat import add_wechat

        add_wechat(app, settings, service, ports)
    from bot.channels.wecom import add_wecom

    add_wecom(app, settings, desk)
    add_scheduler(app, settings, desk)
    return app


def add_scheduler(app: web.Application, settings: Settings, desk: DeskService) -> None:
    """The periodic jobs as a background task of the app, whatever channels are on."""
    jobs = []
    if settings.sweep_seconds > 0:
        jobs.append(Job("sweep", settings.sweep_seconds, desk.sweep))
    jobs.append(retention_job(app[STORE], settings))  # daily; issue 14 (privacy)
    scheduler = Scheduler(app[STORE], jobs)
    app[SCHEDULER] = scheduler

    async def run_jobs(app: web.Application) -> AsyncIterator[None]:
        scheduler.start()
        yield
        await scheduler.stop()

    app.cleanup_ctx.append(run_jobs)

    async def health() -> dict[str, object]:
        return scheduler.health()

    app[HEALTH_CHECKS]["scheduler"] = health
