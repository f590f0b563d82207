"""``tiaojie review …``: the NLU review inbox from the command line.

The same service functions as the workspace's review page (``actions.learning``): list
the inbox most-instructive first, label, skip, mark "not a real message", bulk-label a
search, import an administrator's labelled CSV and export the training slice as Rasa
YAML. Every label records who gave it (``cli:<login>`` unless ``--by`` says otherwise).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from actions import learning
from bot.i18n import normalise_language, t
from bot.runtime import Store
from bot.settings import SettingsError, load_settings
from storage.db import DatabaseUnavailable, check_database
from storage.review import CaptureStatus, InboxFilter

T = TypeVar("T")

review_app = typer.Typer(
    help="The NLU review inbox: label residents' messages the model may have got wrong.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)

ByOption = Annotated[str | None, typer.Option("--by", help="Who labels (default cli:<login>)")]


def _lang() -> str:
    return normalise_language(os.environ.get("TIAOJIE_LANGUAGE") or os.environ.get("LANG"))


def _by(by: str | None) -> str:
    return by or f"cli:{getpass.getuser()}"


def _fail(key: str, code: int = 1, **values: object) -> typer.Exit:
    err.print(t(key, _lang(), **values), markup=False, soft_wrap=True)
    return typer.Exit(code)


def in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction of the configured store; readable errors."""
    try:
        settings = load_settings()
    except SettingsError as error:
        raise _fail("cli.config_error", 2, error=error) from None

    async def runner() -> T:
        store = Store.open(settings)
        try:
            await check_database(store.engine)
            async with store.sessions.begin() as session:
                return await work(session)
        finally:
            await store.close()

    try:
        return asyncio.run(runner())
    except DatabaseUnavailable as error:
        raise _fail("cli.db_unreachable", error=error) from None
    except learning.LearningError as error:
        raise _fail(error.key, 1, **error.values) from None


@review_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 20,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    status: Annotated[str, typer.Option(help="open, labelled, skipped, not_real or all")] = "open",
    search: Annotated[str | None, typer.Option(help="Only messages containing this")] = None,
    signal: Annotated[str | None, typer.Option(help="Only items with this signal")] = None,
) -> None:
    """The inbox, most instructive first, with the model's top three."""
    try:
        filters = InboxFilter(
            status=None if status == "all" else CaptureStatus(status), search=search, signal=signal
        )
    except ValueError:
        raise _fail("review.bad_status", 2, status=status) from None
    items = in_session(lambda session: learning.inbox(session, filters, limit))
    if output == "json":
        out.print_json(json.dumps([i.as_json() for i in items], ensure_ascii=False))
        return
    lang = _lang()
    table = Table(title=t("review.inbox_title", lang, count=len(items)))
    for key in ("id", "text", "top", "signals", "status"):
        table.add_column(t(f"review.columns.{key}", lang))
    for item in items:
        top = ", ".join(f"{c['name']} {c['confidence']:.2f}" for c in item.top)
        status_shown = item.status + (f" → {item.label}" if item.label else "")
        table.add_row(str(item.id), item.text[:80], top, ", ".join(item.signals), status_shown)
    out.print(table)


@review_app.command("label")
def label_command(
    capture_id: Annotated[int, typer.Argument(metavar="ID")],
    intent: Annotated[str, typer.Argument(metavar="INTENT")],
    by: ByOption = None,
) -> None:
    """Label one item with an intent (see `tiaojie review list`)."""
    allowed = learning.known_intents()
    item = in_session(
        lambda session: learning.label(session, capture_id, intent, by=_by(by), allowed=allowed)
    )
    out.print(t("review.labelled", _lang(), id=item.id, intent=intent), markup=False)


@review_app.command("skip")
def skip_command(
    capture_id: Annotated[int, typer.Argument(metavar="ID")], by: ByOption = None
) -> None:
    """Skip an item (it leaves the inbox, is never trained on)."""
    in_session(
        lambda session: learning.set_status(session, capture_id, CaptureStatus.SKIPPED, by=_by(by))
    )
    out.print(t("review.skipped", _lang(), id=capture_id), markup=False)


@review_app.command("not-real")
def not_real_command(
    capture_id: Annotated[int, typer.Argument(metavar="ID")], by: ByOption = None
) -> None:
    """Mark an item as not a real message (tests, spam)."""
    in_session(
        lambda session: learning.set_status(session, capture_id, CaptureStatus.NOT_REAL, by=_by(by))
    )
    out.print(t("review.not_real", _lang(), id=capture_id), markup=False)


@review_app.command("bulk-label")
def bulk_label_command(
    search: Annotated[str, typer.Option(help="Label every open message containing this")],
    intent: Annotated[str, typer.Argument(metavar="INTENT")],
    by: ByOption = None,
) -> None:
    """Label every open item whose text contains SEARCH."""
    allowed = learning.known_intents()
    count = in_session(
        lambda session: learning.bulk_label(
            session, InboxFilter(search=search), intent, by=_by(by), allowed=allowed
        )
    )
    out.print(t("review.bulk_labelled", _lang(), count=count, intent=intent), markup=False)


@review_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv", help="CSV with columns text,label")],
    by: ByOption = None,
) -> None:
    """Import labelled messages; a bad row stops the import and nothing is imported."""
    try:
        source = file.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise _fail("review.cannot_read", 2, path=file, error=error) from None
    allowed = learning.known_intents()
    report = in_session(
        lambda session: learning.import_labelled(session, source, by=_by(by), allowed=allowed)
    )
    lang = _lang()
    if report.errors:
        for line, reason in report.errors:
            err.print(
                t("review.import_row_error", lang, path=file, line=line, reason=reason),
                markup=False,
                soft_wrap=True,
            )
        raise _fail("review.import_refused", 1, count=len(report.errors))
    out.print(t("review.imported", lang, count=report.imported), markup=False)


@review_app.command("export")
def export_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the Rasa YAML")],
) -> None:
    """Write the labelled training slice as Rasa NLU YAML (never the holdout slice)."""
    path, count = in_session(lambda session: learning.export_rasa(session, out_dir))
    out.print(t("review.exported", _lang(), count=count, path=path), markup=False)
