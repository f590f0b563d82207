"""A resident's rights under PIPL (articles 44-47): see a copy of everything held, and
have it deleted. Used by the chat (``/mydata``, ``/forget``), the CLI
(``tiaojie resident export|forget``) and the retention job.

Deletion keeps what the district reports upwards and loses who the person is:

* open cases are first **withdrawn** (their mediator is told after the commit: the
  caller gets the references and mediators back in :class:`Forgotten` and sends);
* every case, closed or just withdrawn, keeps its kind, street, community, centre,
  dates, status, outcome and rating (so :func:`actions.casework.report` gives the same
  figures) and loses the resident's words, summary, free-text answers, phone, chat id
  and rating comment;
* the timeline is append-only: rather than deleting entries, the personal keys of each
  entry's data (message texts, file ids and names, captions) are erased through the one
  audited bypass in :func:`storage.retention.erase_case`, which appends a
  ``data_erased`` entry (who, when, why, how many entries). The timeline so still shows
  *that* messages were exchanged and that a deletion happened, by whom, when.
  Storing texts apart from events (so they could be dropped without touching the log)
  would have meant a new table and a change to every writer of messages; a Core
  update limited to known keys is smaller and keeps the log's shape;
* stored evidence files (``local:<sha256>`` under ``data_dir/evidence/``) are deleted
  after the commit (:func:`delete_files`); files held by Telegram or WeChat are gone
  from our side once their ids are erased;
* the resident's row (channel id, phone) and the chat's conversation state go.

Exports show phones, ID and bank card numbers and e-mails masked (:mod:`storage.redact`):
the resident knows their own numbers, and the file sits on
disk under ``data_dir/exports/`` until the retention job removes it a day later.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from actions.desk import DeskService
from bot.case_view import category_name
from bot.i18n import t
from bot.notices import RelayNotice
from storage import cases as case_repo
from storage import retention as queries
from storage.cases import OPEN_STATUSES, Actor
from storage.conversations import load_conversation
from storage.models import Case, CaseEvent, CaseStatus
from storage.redact import redact_text

log = logging.getLogger(__name__)

EXPORT_DIR = "exports"
EVIDENCE_DIR = "evidence"
MESSAGE_KINDS = ("message_in", "message_out", "emergency")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _message(event: CaseEvent) -> dict[str, Any]:
    data = event.data or {}
    return {
        "at": _iso(event.created_at),
        "direction": "out" if event.kind == "message_out" else "in",
        "text": redact_text(str(data.get("text") or data.get("words") or "")),
        "file": data.get("file_name") or data.get("kind") if data.get("file_id") else None,
    }


async def export_resident(
    session: AsyncSession, channel: str, external_id: str, language: str = "zh"
) -> dict[str, Any]:
    """Everything held about the resident of ``(channel, external_id)``, as JSON-able data.

    Phones appear masked (see the module docstring); ``language`` is recorded for the
    rendering.
    """
    resident = await queries.find_resident(session, channel, external_id)
    cases = await queries.cases_of(session, channel, external_id)
    state, _ = await load_conversation(session, channel, str(external_id))
    draft = state.get("draft") if isinstance(state.get("draft"), dict) else None
    exported_cases = []
    for case in cases:
        events = await case_repo.case_events(session, case)
        exported_cases.append(
            {
                "reference": case.reference,
                "category": case.category,
                "status": case.status.value,
                "outcome": case.outcome.value if case.outcome else None,
                "rating": case.rating,
                "rating_comment": redact_text(case.rating_comment or "") or None,
                "street": case.street,
                "community": case.community,
                "words": redact_text(case.resident_words),
                "summary": redact_text(case.summary),
                "fields": {k: redact_text(str(v)) for k, v in (case.fields or {}).items()},
                "phone": case.phone_masked,
                "filed_at": _iso(case.created_at),
                "closed_at": _iso(case.closed_at),
                "messages": [_message(e) for e in events if e.kind in MESSAGE_KINDS],
                "evidence": [
                    {
                        "at": _iso(e.created_at),
                        "kind": e.data.get("kind"),
                        "name": e.data.get("file_name"),
                    }
                    for e in events
                    if e.data.get("file_id")
                ],
            }
        )
    return {
        "channel": channel,
        "id": str(external_id),
        "language": language,
        "resident": None
        if resident is None
        else {
            "language": resident.language,
            "phone": resident.phone_masked,
            "first_seen": _iso(resident.created_at),
        },
        "draft": None
        if draft is None
        else {"words": [redact_text(str(w)) for w in draft.get("words") or []]},
        "cases": exported_cases,
        "ratings": [
            {"reference": c["reference"], "rating": c["rating"]}
            for c in exported_cases
            if c["rating"] is not None
        ],
    }


def _when(value: str | None, timezone: str) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def render_export(export: dict[str, Any], timezone: str) -> str:
    """The export as a readable text in the resident's language (catalog ``privacy``)."""
    lang = str(export.get("language") or "zh")
    label = lambda key, **v: t(f"privacy.export.{key}", lang, **v)  # noqa: E731
    lines = [label("title"), label("intro"), ""]
    resident = export.get("resident") or {}
    lines.append(f"{label('channel')}: {export['channel']} / {export['id']}")
    lines.append(f"{label('phone')}: {resident.get('phone') or '-'}")
    lines.append(f"{label('first_seen')}: {_when(resident.get('first_seen'), timezone)}")
    draft = export.get("draft")
    if draft:
        lines += ["", label("draft"), *(f"  {w}" for w in draft["words"])]
    if not export["cases"]:
        lines += ["", label("no_cases")]
    for case in export["cases"]:
        status = t(f"dialogue.status_names.{case['status']}", lang)
        outcome = t(f"desk.outcomes.{case['outcome']}", lang) if case["outcome"] else "-"
        lines += [
            "",
            label("case", reference=case["reference"]),
            f"  {label('category')}: {category_name(case['category'], lang)}",
            f"  {label('status')}: {status}",
            f"  {label('outcome')}: {outcome}",
            f"  {label('rating')}: {case['rating'] if case['rating'] is not None else '-'}",
            f"  {label('place')}: {case['street'] or '-'} {case['community'] or ''}".rstrip(),
            f"  {label('filed_at')}: {_when(case['filed_at'], timezone)}",
            f"  {label('closed_at')}: {_when(case['closed_at'], timezone)}",
            f"  {label('phone')}: {case['phone'] or '-'}",
            f"  {label('words')}: {case['words'] or '-'}",
        ]
        for key, value in case["fields"].items():
            lines.append(f"  {key}: {value}")
        if case["rating_comment"]:
            lines.append(f"  {label('comment')}: {case['rating_comment']}")
        lines.append(f"  {label('messages')}:")
        for message in case["messages"]:
            arrow = label("from_you") if message["direction"] == "in" else label("to_you")
            said = message["text"] or message["file"] or ""
            lines.append(f"    {_when(message['at'], timezone)} {arrow}: {said}")
        if case["evidence"]:
            lines.append(f"  {label('evidence')}:")
            for item in case["evidence"]:
                lines.append(
                    f"    {_when(item['at'], timezone)} {item['kind'] or ''} {item['name'] or ''}"
                )
    return "\n".join(lines).rstrip() + "\n"


def write_export(data_dir: Path | str, text: str) -> dict[str, Any]:
    """Store the rendered export under ``data_dir/exports/`` by its digest; the returned
    dict is a :class:`~bot.dialogue.model.Reply` attachment."""
    body = text.encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()
    folder = Path(data_dir) / EXPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / digest).write_bytes(body)
    return {
        "kind": "document",
        "file_id": f"local:{digest}",
        "file_name": "tiaojie-mydata.txt",
        "mime_type": "text/plain",
    }


def export_json(export: dict[str, Any]) -> str:
    return json.dumps(export, ensure_ascii=False, indent=2)


# ------------------------------------------------------------------------ forgetting


@dataclass(slots=True)
class Withdrawn:
    """An open case withdrawn by the erasure, and who worked it (to be told)."""

    reference: str
    mediator_id: int | None
    mediator_channel: str | None
    mediator_external_id: str | None


@dataclass(slots=True)
class Forgotten:
    """What a deletion did (counts and references only), for the caller to report."""

    withdrawn: list[Withdrawn] = field(default_factory=list)
    erased_cases: list[str] = field(default_factory=list)
    erased_events: int = 0
    files: list[str] = field(default_factory=list)
    resident_deleted: bool = False
    conversation_deleted: bool = False
    #: Captured NLU messages of the erased cases, deleted with them.
    captures: int = 0
    #: Messages kept for the resident's chat (a REST bridge), deleted.
    outbox: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "withdrawn": len(self.withdrawn),
            "cases": len(self.erased_cases),
            "events": self.erased_events,
            "files": len(self.files),
            "resident": int(self.resident_deleted),
        }


async def anonymise_case(
    session: AsyncSession, case: Case, actor: Actor, reason: str, result: Forgotten
) -> None:
    if await queries.is_erased(session, case):
        return
    erased = await queries.erase_case(session, case, actor, reason)
    result.erased_cases.append(case.reference)
    result.erased_events += erased.events
    result.files += erased.files
    result.captures += erased.captures


async def forget_resident(
    session: AsyncSession,
    channel: str,
    external_id: str,
    actor: Actor,
    *,
    keep_conversation: bool = False,
) -> Forgotten:
    """Withdraw the resident's open cases, anonymise all of them, delete the resident and
    (unless ``keep_conversation``) the chat's state. The caller commits, then tells the
    mediators of ``withdrawn`` and deletes ``files`` (:func:`delete_files`)."""
    result = Forgotten()
    for case in await queries.cases_of(session, channel, external_id):
        if case.status in OPEN_STATUSES:
            mediator = case.mediator
            case = await case_repo.change_status(
                session, case.reference, CaseStatus.WITHDRAWN, actor, reason="resident_erasure"
            )
            result.withdrawn.append(
                Withdrawn(
                    case.reference,
                    mediator.id if mediator else None,
                    mediator.channel if mediator else None,
                    mediator.external_id if mediator else None,
                )
            )
        await anonymise_case(session, case, actor, "resident_request", result)
    resident = await queries.find_resident(session, channel, external_id)
    if resident is not None:
        await queries.forget_resident_row(session, resident)
        result.resident_deleted = True
    if not keep_conversation:
        result.conversation_deleted = await queries.drop_conversation(session, channel, external_id)
    result.outbox = await queries.drop_outbox(session, channel, external_id)
    log.info("resident data erased on %s: %s", channel, result.counts())
    return result


def stored_files(data_dir: Path | str, digests: list[str]) -> list[Path]:
    """Stored evidence files (``<sha256>`` or ``<sha256>.<ext>``) named by ``digests``."""
    folder = Path(data_dir) / EVIDENCE_DIR
    found: list[Path] = []
    for digest in digests:
        if not digest.isalnum():
            continue  # never a path: only our own hex digests name files here
        found += [p for p in (folder / digest, *folder.glob(digest + ".*")) if p.is_file()]
    return found


def delete_files(data_dir: Path | str, digests: list[str]) -> int:
    """Delete stored evidence files; returns how many."""
    found = stored_files(data_dir, digests)
    for path in found:
        path.unlink(missing_ok=True)
    return len(found)


# ------------------------------------------------------- staff, on a verified request


async def export_on_request(
    session: AsyncSession,
    channel: str,
    external_id: str,
    actor: Actor,
    *,
    default_language: str = "zh",
    basis: str | None = None,
) -> dict[str, Any] | None:
    """A resident's export made by staff (CLI, workspace), or None when nothing is held.

    Every case it covers gets a ``data_exported`` entry naming the operator (and, from
    the workspace, the request it answers), in the caller's transaction.
    """
    cases = await queries.cases_of(session, channel, external_id)
    resident = await queries.find_resident(session, channel, external_id)
    if not cases and resident is None:
        return None
    language = resident.language if resident else cases[0].language or default_language
    export = await export_resident(session, channel, external_id, language)
    data = {"basis": basis[:500]} if basis else {}
    for case in cases:
        await case_repo.add_event(session, case, "data_exported", actor, data)
    return export


@dataclass(frozen=True, slots=True)
class ForgetPreview:
    """What :func:`forget_resident` would do, shown before staff confirm it."""

    open_cases: list[str]
    cases: list[str]
    resident_known: bool

    @property
    def anything(self) -> bool:
        return bool(self.cases) or self.resident_known


async def preview_forget(session: AsyncSession, channel: str, external_id: str) -> ForgetPreview:
    cases = await queries.cases_of(session, channel, external_id)
    resident = await queries.find_resident(session, channel, external_id)
    return ForgetPreview(
        open_cases=[c.reference for c in cases if c.status in OPEN_STATUSES],
        cases=[c.reference for c in cases],
        resident_known=resident is not None,
    )


async def tell_mediators(desk: DeskService, result: Forgotten) -> None:
    """After the commit: each withdrawn case's mediator is told, every card updated."""
    for item in result.withdrawn:
        if item.mediator_external_id:
            await desk.relay_to_mediator(
                RelayNotice(
                    item.reference,
                    item.mediator_external_id,
                    t("privacy.mediator_told", "zh", reference=item.reference),
                )
            )
        await desk.refresh_cards(item.reference)


async def open_cases_of(session: AsyncSession, channel: str, external_id: str) -> list[Case]:
    return [
        c
        for c in await queries.cases_of(session, channel, external_id)
        if c.status in OPEN_STATUSES
    ]
