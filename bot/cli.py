"""The ``tiaojie`` command line, for the people who run a district's installation.

Typer gives every command ``--help``. Each command loads settings first, so a wrong
variable or an unreachable database ends with one readable line and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from actions.desk import DeskService
from bot.case_view import category_name, format_time
from bot.i18n import t
from bot.nlu_commands import nlu_app
from bot.privacy_commands import register as register_privacy_commands
from bot.review_commands import review_app
from bot.runtime import Store
from bot.settings import Settings, SettingsError, load_settings
from bot.user_commands import user_app
from bot.wechat_commands import wechat_app
from storage import cases as case_repo
from storage import people
from storage.db import DatabaseUnavailable, check_database
from storage.directory import (
    Directory,
    all_centres,
    load_directory,
    parse_directory,
    unheard_centres,
)
from storage.errors import CaseNotFound, CentreNotFound, DirectoryFileError, MediatorNotFound
from storage.migrate import head_revision, upgrade
from storage.models import CaseStatus, MediatorRole, RiskLevel

T = TypeVar("T")

app = typer.Typer(
    help="tiaojie: intake assistant for community dispute mediation.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
centres_app = typer.Typer(
    help="The centre directory (1+5+N network, partner departments).", no_args_is_help=True
)
mediator_app = typer.Typer(help="Register and manage mediators.", no_args_is_help=True)
case_app = typer.Typer(help="Look at cases.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(centres_app, name="centers")
app.add_typer(centres_app, name="centres", hidden=True)
app.add_typer(mediator_app, name="mediator")
app.add_typer(case_app, name="case")
app.add_typer(nlu_app, name="nlu")
app.add_typer(user_app, name="user")
register_privacy_commands(app, case_app)  # retention, resident, keys, case audit
app.add_typer(wechat_app, name="wechat")
app.add_typer(review_app, name="review")

out = Console()
err = Console(stderr=True)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        err.print(t("cli.config_error", "zh", error=error), markup=False)
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(message, markup=False)
    return typer.Exit(code)


def with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store, check it answers, run ``work``, close it."""

    async def runner() -> T:
        store = Store.open(settings)
        try:
            await check_database(store.engine)
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(runner())
    except DatabaseUnavailable as error:
        raise fail(t("cli.db_unreachable", settings.language, error=error)) from None


@asynccontextmanager
async def desk_for(settings: Settings, store: Store) -> AsyncIterator[DeskService]:
    """The desk service for a command: with Telegram's ports when a bot token is set, so
    what a command changes (a mediator removed, cases released) reaches people too."""
    desk = DeskService(store, timezone=settings.timezone, link_base=settings.public_url)
    if settings.telegram_bot_token is None:
        yield desk
        return
    from telegram import Bot

    from bot.channels.telegram_ports import (
        TelegramCardTarget,
        TelegramResidentPort,
        TelegramStaffPort,
    )

    bot = Bot(settings.telegram_bot_token.get_secret_value(), base_url=settings.telegram_base_url)
    async with bot:
        desk.ports.register(TelegramResidentPort(bot))
        desk.add_card_target(TelegramCardTarget(bot, store))
        desk.add_staff_port(TelegramStaffPort(bot))
        yield desk


def setup_logging(settings: Settings) -> None:
    from bot.log_format import configure_logging

    # Text, or one JSON object per line with TIAOJIE_LOG_FORMAT=json (issue 16).
    configure_logging(settings.log_level, settings.log_format)
    from bot.channels.sanitise import install_log_filter

    install_log_filter()  # one record, one line: untrusted values cannot forge lines
    # httpx logs every Bot API URL, which contains the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The escalation sweep runs every minute; APScheduler would log each run at INFO.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to the latest schema (safe to run again)."""
    settings = settings_or_exit()
    with_store(settings, lambda store: asyncio.sleep(0))
    upgrade(settings.database_url)
    out.print(t("cli.db_upgraded", settings.language, revision=head_revision()))


@centres_app.command("load")
def centres_load(
    file: Annotated[
        Path, typer.Argument(help="Directory YAML file, e.g. storage/data/baoan_centres.yml")
    ],
) -> None:
    """Load or update the centre directory from FILE (idempotent)."""
    settings = settings_or_exit()
    try:
        directory = parse_directory(file)
    except DirectoryFileError as error:
        raise fail(t("cli.directory_error", settings.language, error=error), 2) from None

    async def work(store: Store) -> dict[str, int]:
        async with store.sessions.begin() as session:
            return await load_directory(session, directory)

    counts = with_store(settings, work)
    out.print(t("cli.centres_loaded", settings.language, path=file, **counts))
    warn_unheard(directory, settings.language)


#: How many centre codes a warning names before "…".
SHOWN_CODES = 12


def warn_unheard(directory: Directory, language: str) -> None:
    """Say which centres' case cards reach no chat, and which go up the tree."""
    nowhere, above = unheard_centres(directory)
    if nowhere:
        codes = ", ".join(nowhere[:SHOWN_CODES]) + (" …" if len(nowhere) > SHOWN_CODES else "")
        text = t("cli.centres_unheard", language, count=len(nowhere), codes=codes)
        err.print(text, markup=False, soft_wrap=True)
    if above:
        text = t("cli.centres_heard_above", language, count=len(above))
        err.print(text, markup=False, soft_wrap=True)


@mediator_app.command("add")
def mediator_add(
    external_id: Annotated[str, typer.Option("--id", help="Telegram user id of the mediator")],
    alias: Annotated[str, typer.Option(help="Display alias residents see, e.g. 调解员小李")],
    centre: Annotated[str, typer.Option("--centre", "--center", help="Centre code")],
    role: Annotated[MediatorRole, typer.Option(help="Role")] = MediatorRole.MEDIATOR,
    channel: Annotated[str, typer.Option(help="Channel")] = "telegram",
) -> None:
    """Register a mediator (or update and re-activate one)."""
    settings = settings_or_exit()
    lang = settings.language

    async def work(store: Store) -> None:
        async with store.sessions.begin() as session:
            try:
                mediator = await people.add_mediator(
                    session,
                    channel=channel,
                    external_id=external_id,
                    display_alias=alias,
                    centre_code=centre,
                    role=role,
                )
            except CentreNotFound as error:
                raise fail(t("cli.centre_not_found", lang, code=error.code)) from None
            out.print(
                t(
                    "cli.mediator_added",
                    lang,
                    alias=mediator.display_alias,
                    channel=channel,
                    external_id=external_id,
                    centre=mediator.centre.name_zh if lang == "zh" else mediator.centre.name_en,
                    role=mediator.role.value,
                )
            )

    with_store(settings, work)


@mediator_app.command("list")
def mediator_list() -> None:
    """List registered mediators."""
    settings = settings_or_exit()
    lang = settings.language

    async def work(store: Store) -> None:
        async with store.sessions() as session:
            mediators = await people.list_mediators(session)
        if not mediators:
            out.print(t("cli.no_mediators", lang))
            return
        table = Table()
        for key in ("alias", "channel", "external_id", "centre", "role", "active"):
            table.add_column(t(f"cli.columns.{key}", lang))
        for m in mediators:
            table.add_row(
                m.display_alias,
                m.channel,
                m.external_id,
                m.centre.code,
                m.role.value,
                t("cli.word_yes" if m.active else "cli.word_no", lang),
            )
        out.print(table)

    with_store(settings, work)


@mediator_app.command("deactivate")
def mediator_deactivate(
    external_id: Annotated[str, typer.Argument(help="Telegram user id")],
    channel: Annotated[str, typer.Option(help="Channel")] = "telegram",
) -> None:
    """Take away a mediator's access; their history stays."""
    settings = settings_or_exit()
    lang = settings.language

    async def work(store: Store) -> None:
        async with store.sessions.begin() as session:
            try:
                mediator = await people.deactivate_mediator(session, channel, external_id)
            except MediatorNotFound as error:
                raise fail(t("cli.mediator_not_found", lang, key=error.key)) from None
        # Their open cases go back to the queue, announced, and the resident is told:
        # nobody's messages may keep going to a person who left.
        async with desk_for(settings, store) as desk:
            released = await desk.deactivate(mediator)
        out.print(t("cli.mediator_deactivated", lang, alias=mediator.display_alias))
        if released:
            out.print(
                t("cli.cases_released", lang, count=len(released), references=", ".join(released))
            )

    with_store(settings, work)


@case_app.command("list")
def case_list(
    centre: Annotated[str | None, typer.Option("--centre", "--center", help="Centre code")] = None,
    status: Annotated[CaseStatus | None, typer.Option(help="Status")] = None,
    category: Annotated[str | None, typer.Option(help="Category, e.g. dispute_labor")] = None,
    risk: Annotated[RiskLevel | None, typer.Option(help="Risk level")] = None,
    page: Annotated[int, typer.Option(min=1, help="Page number")] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=200, help="Cases per page")] = 20,
) -> None:
    """List cases, urgent first, oldest first."""
    settings = settings_or_exit()
    lang = settings.language

    async def work(store: Store) -> None:
        from storage.directory import get_centre

        async with store.sessions() as session:
            centre_ids = None
            if centre:
                found = await get_centre(session, centre)
                if found is None:
                    raise fail(t("cli.centre_not_found", lang, code=centre))
                centre_ids = [found.id]
            listing = await case_repo.list_cases(
                session,
                centre_ids=centre_ids,
                statuses=[status] if status else None,
                category=category,
                risk=risk,
                page=page,
                page_size=page_size,
            )
        if not listing.items:
            out.print(t("cli.no_cases", lang))
            return
        table = Table(
            caption=t(
                "cli.page_info", lang, page=listing.page, pages=listing.pages, total=listing.total
            )
        )
        for key in ("reference", "category", "status", "risk", "centre", "street", "created"):
            # A reference must never be cut, however narrow the terminal.
            table.add_column(
                t(f"cli.columns.{key}", lang),
                no_wrap=key == "reference",
                min_width=len(listing.items[0].reference) if key == "reference" else None,
            )
        for c in listing.items:
            table.add_row(
                c.reference,
                f"{category_name(c.category, lang)} ({c.category})",
                t(f"dialogue.status_names.{c.status.value}", lang),
                t(f"desk.risk.{c.risk_level.value}", lang),
                c.centre.code if c.centre else "-",
                c.street or "-",
                format_time(c.created_at, settings.timezone),
            )
        out.print(table)

    with_store(settings, work)


@case_app.command("show")
def case_show(
    reference: Annotated[str, typer.Argument(help="Reference, e.g. BA-20261125-0042")],
) -> None:
    """Show one case with its timeline. Phone, ID and bank card numbers and e-mails stay
    masked here (the store keeps them masked; only the case's own mediator reveals)."""
    settings = settings_or_exit()
    lang = settings.language

    async def work(store: Store) -> None:
        from bot.case_view import render_case_text

        async with store.sessions.begin() as session:
            try:
                case = await case_repo.get_case(session, reference)
            except CaseNotFound:
                raise fail(t("cli.case_not_found", lang, reference=reference)) from None
            events = await case_repo.case_events(session, case)
            # Who looked at a case is part of its audit trail.
            await case_repo.add_event(
                session, case, "view", case_repo.Actor("admin", f"cli:{getpass.getuser()}")
            )
        out.print(render_case_text(case, events, lang, settings.timezone), markup=False)

    with_store(settings, work)


@app.command("report")
def report(
    output: Annotated[
        str, typer.Option("--format", help="table (default) or csv for spreadsheets")
    ] = "table",
) -> None:
    """Per centre and category: filed, claimed, resolved, closure rate, times, rating."""
    import csv
    import sys

    from actions.casework import referrals_given
    from actions.casework import report as build_report

    settings = settings_or_exit()
    lang = settings.language
    if output not in ("table", "csv"):
        raise fail(
            t("cli.invalid_choice", lang, name="--format", value=output, choices="table, csv"), 2
        )

    async def work(store: Store) -> None:
        async with store.sessions() as session:
            rows = await build_report(session)
            referrals = await referrals_given(session)
        keys = (
            "centre",
            "category",
            "filed",
            "claimed",
            "resolved",
            "closure_rate",
            "median_claim_minutes",
            "median_resolution_hours",
            "mean_rating",
        )
        if output == "csv":
            writer = csv.writer(sys.stdout)
            writer.writerow(keys)
            for row in rows:
                writer.writerow(["" if getattr(row, k) is None else getattr(row, k) for k in keys])
            for topic, count in sorted(referrals.items()):
                writer.writerow(["-", f"referral:{topic}", count] + [""] * (len(keys) - 3))
            return
        if referrals:
            listed = ", ".join(f"{topic} {count}" for topic, count in sorted(referrals.items()))
            out.print(t("cli.report.referrals", lang, total=sum(referrals.values()), topics=listed))
        if not rows:
            out.print(t("cli.no_cases", lang))
            return
        table = Table()
        for key in keys:
            table.add_column(t(f"cli.report.{key}", lang))
        for row in rows:
            table.add_row(*["-" if getattr(row, k) is None else str(getattr(row, k)) for k in keys])
        out.print(table)

    with_store(settings, work)


def _nlu_errors() -> tuple[type[Exception], ...]:
    from nlu.config import ConfigError
    from nlu.model_store import ModelError
    from nlu.training_data import TrainingDataError

    return (ConfigError, ModelError, TrainingDataError)


def ensure_directory(settings: Settings) -> None:
    """An empty centre directory would file every case to nobody: load the configured
    file (``TIAOJIE_CENTRES_FILE``) then, or refuse to start with one clear line."""

    async def empty(store: Store) -> bool:
        async with store.sessions() as session:
            return not await all_centres(session)

    if not with_store(settings, empty):
        return
    path = settings.centres_file
    try:
        directory = parse_directory(path) if path.is_file() else None
    except DirectoryFileError as error:
        text = t("cli.directory_error", settings.language, error=error)
        err.print(text, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if directory is None or not directory.centres:
        err.print(
            t("cli.directory_missing", settings.language, path=path), markup=False, soft_wrap=True
        )
        raise typer.Exit(2)

    async def work(store: Store) -> dict[str, int]:
        async with store.sessions.begin() as session:
            return await load_directory(session, directory)

    counts = with_store(settings, work)
    message = t("cli.directory_loaded_at_start", settings.language, path=path, **counts)
    logging.getLogger(__name__).warning("%s", message)
    warn_unheard(directory, settings.language)


@app.command("run")
def run(
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes sharing the port (PostgreSQL only for more than one)",
        ),
    ] = 1,
    worker: Annotated[bool, typer.Option("--worker", hidden=True)] = False,
    grace: Annotated[
        float, typer.Option(min=1, max=600, help="Seconds to finish requests on SIGTERM")
    ] = 30.0,
) -> None:
    """Start the assistant: health check, REST channel and, with a bot token, Telegram."""
    import signal

    from aiohttp import web

    from bot.nlu_setup import open_nlu
    from bot.web import create_app

    settings = settings_or_exit()
    setup_logging(settings)
    several = workers > 1 or worker
    if several and settings.database_url.startswith("sqlite"):
        # SQLite allows one writer at a time and its file lives on one machine: a second
        # process would only queue behind the first (and a network share corrupts it).
        raise fail(t("cli.workers_need_postgres", settings.language, workers=workers), 2)
    if not worker:
        with_store(settings, lambda store: asyncio.sleep(0))
        ensure_directory(settings)
    if workers > 1:
        from bot.nlu_setup import ensure_builtin
        from bot.workers import Supervisor, worker_command

        try:  # once here, not N times at once in the workers
            ensure_builtin(settings.model_dir)
        except _nlu_errors() as error:
            raise fail(t("cli.nlu_error", settings.language, error=error), 2) from None

        command = [*worker_command(), "--grace", str(grace)]
        out.print(
            t(
                "cli.serving_workers",
                settings.language,
                host=settings.http_host,
                port=settings.http_port,
                workers=workers,
            )
        )
        raise typer.Exit(Supervisor(command, workers, grace=grace + 5).run())

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_nlu(settings) as (nlu, threshold):
            app = create_app(settings, nlu, threshold=threshold)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(
                    runner,
                    settings.http_host,
                    settings.http_port,
                    reuse_port=several or None,
                    shutdown_timeout=grace,
                )
                await site.start()
                if not worker:
                    out.print(
                        t(
                            "cli.serving",
                            settings.language,
                            host=settings.http_host,
                            port=settings.http_port,
                        )
                    )
                await stop.wait()
            finally:
                # Stops listening, lets requests in flight finish (up to ``grace``),
                # then closes Telegram, the scheduler, the leases and the store.
                await runner.cleanup()

    from telegram.error import TelegramError

    try:
        asyncio.run(serve())
    except _nlu_errors() as error:
        raise fail(t("cli.nlu_error", settings.language, error=error), 2) from None
    except TelegramError as error:  # a wrong token, or the Bot API unreachable at start
        raise fail(t("cli.telegram_error", settings.language, error=error), 2) from None
    except OSError as error:
        raise fail(t("cli.cannot_listen", settings.language, error=error), 2) from None


@app.command("chat")
def chat(
    user: Annotated[str | None, typer.Option(help="Who you are in this chat")] = None,
) -> None:
    """Talk to the assistant in this terminal (same engine and store as the bots)."""
    from bot.console_chat import chat as console_chat
    from bot.intake_service import IntakeService
    from bot.nlu_setup import open_nlu
    from bot.web import engine_context

    settings = settings_or_exit()
    logging.basicConfig(level=logging.WARNING)

    async def work(store: Store) -> None:
        async with open_nlu(settings) as (nlu, threshold):
            service = IntakeService(
                store,
                nlu,
                engine_context(settings, threshold),
                reference_prefix=settings.reference_prefix,
                timezone=settings.timezone,
            )
            await console_chat(service, user=user, language=settings.language)

    try:
        with_store(settings, work)
    except _nlu_errors() as error:
        raise fail(t("cli.nlu_error", settings.language, error=error), 2) from None


def main() -> None:
    app()
