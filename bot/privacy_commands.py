"""Staff commands for residents' data (issue 14): ``tiaojie retention run``,
``tiaojie resident export|forget``, ``tiaojie keys rotate`` and ``tiaojie case audit``.

Registered from ``bot.cli`` with one call (:func:`register`). Each command that reads
or changes a resident's data puts an ``admin`` actor (``cli:<os user>``) on the
timelines it touches; output carries counts and references, never message text.
"""

from __future__ import annotations

import csv
import getpass
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.table import Table

from actions import privacy
from actions.retention import policy_from, run_retention
from bot.case_view import format_time
from bot.i18n import raw, t
from bot.runtime import Store
from storage import cases as case_repo
from storage.cases import Actor
from storage.errors import CaseNotFound
from storage.keys import RotationReport, rotate_keys, seal_clear_text
from storage.models import CaseEvent

retention_app = typer.Typer(help="Delete what is kept longer than needed.", no_args_is_help=True)
resident_app = typer.Typer(help="A resident's data: export or delete.", no_args_is_help=True)
keys_app = typer.Typer(help="Encryption keys (TIAOJIE_SECRET_KEY).", no_args_is_help=True)

#: Timeline kinds shown only by kind in the audit (their data is what people said).
SAID = frozenset({"message_in", "message_out", "note", "emergency", "evidence"})


def _admin() -> Actor:
    return Actor("admin", f"cli:{getpass.getuser()}")


def register(app: typer.Typer, case_app: typer.Typer) -> None:
    """Add the privacy commands to the ``tiaojie`` app (one call in bot/cli.py)."""
    app.add_typer(retention_app, name="retention")
    app.add_typer(resident_app, name="resident")
    app.add_typer(keys_app, name="keys")
    case_app.command("audit")(case_audit)


def _cli() -> ModuleType:
    from bot import cli  # imported late: bot.cli imports this module

    return cli


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would go")] = False,
) -> None:
    """Clear stale drafts, old update ids, anonymise cases closed long ago (counts only)."""
    cli = _cli()
    settings = cli.settings_or_exit()
    lang = settings.language

    async def work(store: Store) -> dict[str, int]:
        return await run_retention(store, policy_from(settings), settings.data_dir, dry_run=dry_run)

    counts = cli.with_store(settings, work)
    cli.out.print(t("privacy.cli.retention_dry" if dry_run else "privacy.cli.retention_done", lang))
    for what, count in counts.items():
        cli.out.print(t("privacy.cli.retention_line", lang, what=what, count=count), markup=False)


@resident_app.command("export")
def resident_export(
    channel: Annotated[str, typer.Option("--channel", help="telegram, rest, wechat …")],
    ident: Annotated[str, typer.Option("--id", help="The resident's id on that channel")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the files")] = Path("."),
) -> None:
    """Write everything held about one resident as JSON and readable text (audited)."""
    cli = _cli()
    settings = cli.settings_or_exit()
    lang = settings.language

    async def work(store: Store) -> dict[str, object] | None:
        async with store.sessions.begin() as session:
            return await privacy.export_on_request(
                session, channel, ident, _admin(), default_language=lang
            )

    export = cli.with_store(settings, work)
    if export is None:
        raise cli.fail(t("privacy.cli.resident_none", lang, channel=channel, id=ident))
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"tiaojie-{channel}-{ident}.json"
    text_path = out_dir / f"tiaojie-{channel}-{ident}.txt"
    json_path.write_text(privacy.export_json(export), encoding="utf-8")
    text_path.write_text(privacy.render_export(export, settings.timezone), encoding="utf-8")
    cli.out.print(
        t("privacy.cli.export_written", lang, json=json_path, text=text_path), markup=False
    )


@resident_app.command("forget")
def resident_forget(
    channel: Annotated[str, typer.Option("--channel", help="telegram, rest, wechat …")],
    ident: Annotated[str, typer.Option("--id", help="The resident's id on that channel")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Withdraw the resident's open cases and erase their personal data (audited)."""
    cli = _cli()
    settings = cli.settings_or_exit()
    lang = settings.language

    async def count(store: Store) -> tuple[int, int, bool]:
        async with store.sessions() as session:
            cases = await privacy.queries.cases_of(session, channel, ident)
            open_ = await privacy.open_cases_of(session, channel, ident)
            resident = await privacy.queries.find_resident(session, channel, ident)
        return len(open_), len(cases), resident is not None

    open_count, total, known = cli.with_store(settings, count)
    if not total and not known:
        raise cli.fail(t("privacy.cli.resident_none", lang, channel=channel, id=ident))
    if not yes and not typer.confirm(
        t(
            "privacy.cli.confirm_forget",
            lang,
            open=open_count,
            total=total,
            channel=channel,
            id=ident,
        )
    ):
        raise typer.Exit(1)

    async def work(store: Store) -> privacy.Forgotten:
        async with store.sessions.begin() as session:
            result = await privacy.forget_resident(session, channel, ident, _admin())
        privacy.delete_files(settings.data_dir, result.files)
        async with cli.desk_for(settings, store) as desk:
            await privacy.tell_mediators(desk, result)
        return result

    result = cli.with_store(settings, work)
    counts = result.counts()
    cli.out.print(t("privacy.cli.forgotten", lang, **counts), markup=False)


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per batch")] = 500,
) -> None:
    """Re-encrypt every encrypted value with the first key of TIAOJIE_SECRET_KEY."""
    cli = _cli()
    settings = cli.settings_or_exit()
    lang = settings.language

    async def work(store: Store) -> RotationReport:
        # Rows from before sealing first (their originals get sealed under the new
        # key), then everything re-encrypted under the first key.
        sealed = await seal_clear_text(store.sessions, store.vault, batch_size=batch_size)
        report = await rotate_keys(store.sessions, store.vault, batch_size=batch_size)
        report.sealed = sealed.sealed
        return report

    report = cli.with_store(settings, work)
    cli.out.print(
        t(
            "privacy.cli.keys_done",
            lang,
            rows=report.rotated,
            batches=report.batches,
            unreadable=report.unreadable,
        ),
        markup=False,
    )
    cli.out.print(t("privacy.sealed.keys_sealed", lang, rows=report.sealed), markup=False)


def audit_rows(events: list[CaseEvent], timezone: str) -> list[tuple[str, str, str, str]]:
    """Time (district zone), who, what, details — never what was said."""
    rows = []
    for event in events:
        who = event.actor_type + (f":{event.actor_id}" if event.actor_id else "")
        data = event.data or {}
        if event.kind in SAID or "text" in data:
            detail = ""
        else:
            detail = ", ".join(
                f"{k}={v}" for k, v in data.items() if k not in ("chat_id", "message_id", "file_id")
            )
        rows.append((format_time(event.created_at, timezone), who, event.kind, detail))
    return rows


def case_audit(
    reference: Annotated[str, typer.Argument(help="Reference, e.g. BA-20261125-0042")],
    fmt: Annotated[str, typer.Option("--format", help="table or csv")] = "table",
) -> None:
    """Who viewed or changed the case and who revealed its phone, in time order."""
    cli = _cli()
    settings = cli.settings_or_exit()
    lang = settings.language
    if fmt not in ("table", "csv"):
        raise cli.fail("--format: table | csv", 2)

    async def work(store: Store) -> list[tuple[str, str, str, str]]:
        async with store.sessions.begin() as session:
            try:
                case = await case_repo.get_case(session, reference)
            except CaseNotFound:
                raise cli.fail(t("cli.case_not_found", lang, reference=reference)) from None
            events = await case_repo.case_events(session, case)
            await case_repo.add_event(session, case, "audit_viewed", _admin())
        return audit_rows(events, settings.timezone)

    rows = cli.with_store(settings, work)
    head = [str(x) for x in raw("privacy.cli.audit_head", lang)]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(head)
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
        return
    table = Table(title=t("privacy.cli.audit_title", lang, reference=reference.upper()))
    for name in head:
        table.add_column(str(name))
    for row in rows:
        table.add_row(*row)
    cli.out.print(table)
