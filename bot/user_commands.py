"""``tiaojie user …``: accounts of the web workspace.

The password is read from standard input (``echo … | tiaojie user add …`` or typed
twice at a terminal), never from the command line where ``ps`` and shell history would
keep it; ``--link`` prints a one-time sign-in link (24 h) where the person chooses it.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.i18n import t
from bot.runtime import Store
from bot.settings import Settings
from bot.workspace.passwords import MIN_LENGTH, acceptable, hash_password
from storage import accounts
from storage.errors import CentreNotFound
from storage.models import MediatorRole

user_app = typer.Typer(help="Accounts of the web workspace (/desk/).", no_args_is_help=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    from bot import cli  # bot.cli registers this app, so it cannot be imported first

    return cli.fail(message, code)


def settings_or_exit() -> Settings:
    from bot import cli

    return cli.settings_or_exit()


def with_store(settings: Settings, work: Callable[[Store], Awaitable[None]]) -> None:
    from bot import cli

    cli.with_store(settings, work)


out = Console()


def _read_password(lang: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(t("workspace.cli.password_prompt", lang))
        again = getpass.getpass(t("workspace.cli.password_again", lang))
        if first != again:
            raise fail(t("workspace.cli.password_mismatch", lang), 2)
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not acceptable(password):
        raise fail(t("workspace.cli.password_short", lang, min=MIN_LENGTH), 2)
    return password


def sign_in_url(settings: Settings, token: str) -> str:
    base = settings.public_url or f"http://{settings.http_host}:{settings.http_port}"
    return f"{base.rstrip('/')}/desk/link/{token}"


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Option(help="Sign-in name, e.g. li")],
    name: Annotated[str, typer.Option(help="Name shown to colleagues and residents")],
    centre: Annotated[str, typer.Option("--centre", "--center", help="Centre code")],
    role: Annotated[MediatorRole, typer.Option(help="Role")] = MediatorRole.MEDIATOR,
    telegram_id: Annotated[
        int | None, typer.Option(help="The same person's Telegram user id (both desks)")
    ] = None,
    link: Annotated[
        bool, typer.Option("--link", help="Print a one-time sign-in link instead of a password")
    ] = False,
) -> None:
    """Add a workspace user (password from stdin, or --link)."""
    settings = settings_or_exit()
    lang = settings.language
    password_hash = None if link else hash_password(_read_password(lang))

    async def work(store: Store) -> None:
        async with store.sessions.begin() as session:
            try:
                user = await accounts.add_user(
                    session,
                    username=username,
                    display_name=name,
                    centre_code=centre,
                    role=role,
                    password_hash=password_hash,
                    telegram_id=telegram_id,
                )
            except CentreNotFound as error:
                raise fail(t("cli.centre_not_found", lang, code=error.code)) from None
            except accounts.UserExists as error:
                raise fail(t("workspace.cli.user_exists", lang, username=error.username)) from None
            out.print(
                t("workspace.cli.user_added", lang, username=user.username, role=role.value),
                markup=False,
            )
            if link:
                token = await accounts.create_link(session, user)
                out.print(t("workspace.cli.link", lang, url=sign_in_url(settings, token)))

    with_store(settings, work)


@user_app.command("list")
def user_list() -> None:
    """List workspace users."""
    settings = settings_or_exit()
    lang = settings.language

    async def work(store: Store) -> None:
        async with store.sessions() as session:
            users = await accounts.list_users(session)
        if not users:
            out.print(t("workspace.cli.no_users", lang))
            return
        table = Table()
        for key in ("username", "name", "centre", "role", "telegram", "active"):
            table.add_column(t(f"workspace.cli.columns.{key}", lang))
        for user in users:
            mediator = user.mediator
            table.add_row(
                user.username,
                user.display_name,
                mediator.centre.code if mediator else "-",
                mediator.role.value if mediator else "-",
                str(user.telegram_id or "-"),
                t("cli.word_yes" if user.active else "cli.word_no", lang),
            )
        out.print(table)

    with_store(settings, work)


@user_app.command("disable")
def user_disable(username: Annotated[str, typer.Argument(help="Sign-in name")]) -> None:
    """Disable a user; their open sessions end at once."""
    settings = settings_or_exit()
    lang = settings.language

    async def work(store: Store) -> None:
        async with store.sessions.begin() as session:
            try:
                user = await accounts.disable_user(session, username)
            except accounts.UserNotFound:
                raise fail(t("workspace.cli.user_not_found", lang, username=username)) from None
            out.print(t("workspace.cli.user_disabled", lang, username=user.username))

    with_store(settings, work)


@user_app.command("reset-password")
def user_reset_password(
    username: Annotated[str, typer.Argument(help="Sign-in name")],
    link: Annotated[bool, typer.Option("--link", help="Print a one-time sign-in link")] = False,
) -> None:
    """Set a new password (from stdin) or print a sign-in link; other sessions end."""
    settings = settings_or_exit()
    lang = settings.language
    password_hash = None if link else hash_password(_read_password(lang))

    async def work(store: Store) -> None:
        async with store.sessions.begin() as session:
            user = await accounts.find_user(session, username)
            if user is None:
                raise fail(t("workspace.cli.user_not_found", lang, username=username))
            if password_hash is not None:
                await accounts.set_password(session, user, password_hash)
                out.print(t("workspace.cli.password_set", lang, username=user.username))
            else:
                token = await accounts.create_link(session, user)
                out.print(t("workspace.cli.link", lang, url=sign_in_url(settings, token)))

    with_store(settings, work)
