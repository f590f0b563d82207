"""The aiohttp application: health check, the REST and callback channels, Telegram's webhook.

Built with an application factory and typed :class:`web.AppKey` s so handlers get the
store and settings without globals; cleanup contexts open and close the database, the
NLU backend and the Telegram bot in the right order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from actions.desk import DeskService
from actions.leadership import Leadership
from actions.learning import Thresholds
from actions.ports import ResidentPorts
from actions.retention import retention_job
from actions.scheduler import Job, Scheduler, holder_name
from bot.channels.callback import add_callback_channel
from bot.channels.rest import RestPort, add_rest_channel
from bot.console_chat import CHANNEL as CONSOLE_CHANNEL
from bot.db_metrics import instrument_engine
from bot.dialogue.engine import Context
from bot.dialogue.forms import default_forms
from bot.dialogue.geography import load_geography
from bot.health import CALLBACK_ON, HEALTH_CHECKS, HealthCheck, add_health
from bot.http_errors import error_middleware
from bot.intake_metrics import MeteredNLU
from bot.intake_service import IntakeService
from bot.metrics_http import add_metrics
from bot.runtime import Store
from bot.settings import Settings
from bot.workspace.app import create_workspace
from nlu.interface import NLUBackend

SETTINGS = web.AppKey("settings", Settings)
RESIDENT_PORTS = web.AppKey("resident_ports", ResidentPorts)
DESK_SERVICE = web.AppKey("desk_service", DeskService)
SCHEDULER = web.AppKey("scheduler", Scheduler)
LEADERSHIP = web.AppKey("leadership", Leadership)
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
    leadership = Leadership(app[STORE], holder_name(), ttl=settings.leader_ttl)
    app[LEADERSHIP] = leadership
    # --- metrics (issue 16): database hooks on the store's engine, /metrics
    instrument_engine(app[STORE].engine)
    add_metrics(app, app[STORE], settings, nlu)
    # ---
    ports = ResidentPorts()
    app[RESIDENT_PORTS] = ports
    desk = DeskService(
        app[STORE], ports=ports, timezone=settings.timezone, link_base=settings.public_url
    )
    app[DESK_SERVICE] = desk
    service = IntakeService(
        app[STORE],
        MeteredNLU(nlu),  # times each parse (issue 16)
        engine_context(settings, threshold),
        reference_prefix=settings.reference_prefix,
        timezone=settings.timezone,
        notifier=desk,
        data_dir=settings.data_dir,
        review_thresholds=Thresholds(settings.review_low_confidence, settings.review_small_margin),
        chat_wait=settings.chat_wait_seconds,
        chat_lock=settings.chat_lock,
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

        add_telegram(app, settings, service, desk, ports, leadership)
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
    add_leadership(app)
    return app


def add_leadership(app: web.Application) -> None:
    """Elect a leader among the workers; appended last, so it starts after everything
    it starts (Telegram, the scheduler) is set up and stops first, stopping them."""
    leadership = app[LEADERSHIP]

    async def lead(app: web.Application) -> AsyncIterator[None]:
        leadership.start()
        yield
        await leadership.stop()

    app.cleanup_ctx.append(lead)

    async def health() -> dict[str, object]:
        return leadership.health()

    app[HEALTH_CHECKS]["leader"] = health


def add_scheduler(app: web.Application, settings: Settings, desk: DeskService) -> None:
    """The periodic jobs as a background task of the app, whatever channels are on."""
    jobs = []
    if settings.sweep_seconds > 0:
        jobs.append(Job("sweep", settings.sweep_seconds, desk.sweep))
    jobs.append(retention_job(app[STORE], settings))  # daily; issue 14 (privacy)
    leadership = app[LEADERSHIP]
    scheduler = Scheduler(app[STORE], jobs, holder=leadership.holder, leader=leadership)
    app[SCHEDULER] = scheduler

    async def start_jobs() -> None:
        scheduler.start()

    # Started when this worker is elected, stopped when it is not (and at shutdown, by
    # the leadership's own clean-up, which deposes it).
    leadership.on_elected(start_jobs)
    leadership.on_deposed(scheduler.stop)

    async def health() -> dict[str, object]:
        return scheduler.health()

    app[HEALTH_CHECKS]["scheduler"] = health
