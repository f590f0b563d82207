"""``tiaojie user …`` run as a real process, then the account used in the workspace."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.workspace.passwords import verify_password
from storage import accounts
from storage.db import create_engine, session_factory
from storage.people import find_mediator

RUNNER = CliRunner()


def run(*args: str, env: dict[str, str], stdin: str = "") -> Result:
    """The command in-process (Typer's runner): the same code path, no interpreter start."""
    return RUNNER.invoke(app, list(args), input=stdin, env=env)


@pytest.fixture
def env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "TIAOJIE_DATABASE_URL": sqlite_url,
        "TIAOJIE_DATA_DIR": str(tmp_path / "var"),
        "TIAOJIE_LANGUAGE": "en",
        "TIAOJIE_PUBLIC_URL": "https://desk.example.org",
        "COLUMNS": "200",
    }


def _user(env: dict[str, str], username: str) -> accounts.WebUser | None:
    async def load() -> accounts.WebUser | None:
        engine = create_engine(env["TIAOJIE_DATABASE_URL"])
        try:
            async with session_factory(engine)() as session:
                user = await accounts.find_user(session, username)
                if user is not None and user.telegram_id:
                    assert await find_mediator(session, "telegram", str(user.telegram_id))
                return user
        finally:
            await engine.dispose()

    return asyncio.run(load())


def test_user_add_list_disable_and_reset(env: dict[str, str]) -> None:
    added = run(
        "user",
        "add",
        "--username",
        "li",
        "--name",
        "李调解员",
        "--centre",
        "xixiang",
        "--role",
        "supervisor",
        "--telegram-id",
        "4242",
        env=env,
        stdin="s3cret-pass\n",
    )
    assert added.exit_code == 0, added.output
    user = _user(env, "li")
    assert user is not None and user.mediator is not None
    # Linked to Telegram: the same mediator on both desks (one row, the Telegram one).
    assert user.mediator.channel == "telegram" and user.mediator.external_id == "4242"
    assert user.mediator.role.value == "supervisor" and user.telegram_id == 4242
    assert verify_password(user.password_hash, "s3cret-pass")
    assert "s3cret-pass" not in added.output
    again = run(
        "user",
        "add",
        "--username",
        "li",
        "--name",
        "x",
        "--centre",
        "xixiang",
        env=env,
        stdin="another-pass\n",
    )
    assert again.exit_code == 1 and "exists" in again.output
    short = run(
        "user",
        "add",
        "--username",
        "wu",
        "--name",
        "x",
        "--centre",
        "xixiang",
        env=env,
        stdin="short\n",
    )
    assert short.exit_code == 2 and "8" in short.output
    link = run(
        "user",
        "add",
        "--username",
        "wang",
        "--name",
        "王",
        "--centre",
        "fuyong",
        "--role",
        "department",
        "--link",
        env=env,
    )
    assert link.exit_code == 0 and "https://desk.example.org/desk/link/" in link.output
    listing = run("user", "list", env=env)
    assert "li" in listing.output and "wang" in listing.output and "department" in listing.output
    version = user.session_version
    assert run("user", "reset-password", "li", env=env, stdin="new-password-1\n").exit_code == 0
    assert _user(env, "li").session_version == version + 1  # type: ignore[union-attr]
    assert run("user", "disable", "li", env=env).exit_code == 0
    disabled = _user(env, "li")
    assert disabled is not None and not disabled.active
    assert run("user", "disable", "nobody", env=env).exit_code == 1
