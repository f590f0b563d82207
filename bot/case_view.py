"""Plain-text rendering of a case for the CLI and for mediators' chats.

One renderer for both, so a mediator on Telegram and an administrator at the command
line read the same thing: kinds, statuses, outcomes and form fields by their names in
the catalogs and forms (never a raw code), every time in the district's time zone, the
transcript with its words (whoever may see the case may read what was said), and the
phone number masked unless the caller passes the full one (the case's own mediator).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from actions.cards import kind_title
from actions.reveal import Revealed
from bot.dialogue.forms import default_forms
from bot.i18n import t
from storage.models import Case, CaseEvent
from storage.phone import mask_phones_in_text

#: How much of one message a timeline line shows.
TIMELINE_TEXT_CHARS = 300


def category_name(category: str, language: str) -> str:
    return kind_title(category, language) if category else "-"


def format_time(value: Any, timezone: str) -> str:
    """A stored (UTC) time as the district reads it."""
    return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def field_lines(case: Case, language: str, fields: dict[str, Any] | None = None) -> list[str]:
    """The form's answers by their labels, choices by their titles (``fields``: the
    answers as given, for the case's own mediator; else the stored, masked ones)."""
    form = default_forms().by_category.get(case.category)
    lines = []
    for key, value in (case.fields if fields is None else fields).items():
        slot = form.slot(key) if form is not None else None
        if slot is None:
            lines.append(f"{key}: {value}")
            continue
        shown = str(value)
        if slot.type == "choice":
            shown = next((c.label(language) for c in slot.choices if c.value == value), shown)
        lines.append(f"{slot.label.get(language)}: {shown}")
    return lines


def event_line(
    event: CaseEvent, language: str, timezone: str, data: dict[str, Any] | None = None
) -> str:
    """One timeline entry: when, what (translated), who, and what was said (``data``:
    the entry as written, for the case's own mediator; else its stored, masked data)."""
    name = t(f"desk.events.{event.kind}", language)
    if name.startswith("desk.events."):
        name = event.kind
    who = event.actor_type + (f":{event.actor_id}" if event.actor_id else "")
    revealed = data is not None
    data = (event.data or {}) if data is None else data
    said = data.get("text") or data.get("words")
    detail = ""
    if said:
        text = " ".join((str(said) if revealed else mask_phones_in_text(str(said))).split())
        detail = (
            "「"
            + text[:TIMELINE_TEXT_CHARS]
            + ("…" if len(text) > TIMELINE_TEXT_CHARS else "")
            + "」"
        )
    elif event.kind == "status_change":
        detail = "{} → {}".format(
            t(f"dialogue.status_names.{data.get('from')}", language),
            t(f"dialogue.status_names.{data.get('to')}", language),
        )
    elif event.kind == "outcome":
        detail = t(f"desk.outcomes.{data.get('outcome')}", language)
    elif event.kind == "recategorised":
        detail = f"{category_name(str(data.get('from')), language)} → " + category_name(
            str(data.get("to")), language
        )
    elif data.get("file_id"):
        detail = str(data.get("file_name") or data.get("kind") or "")
    else:
        keep = {k: v for k, v in data.items() if k not in ("chat_id", "message_id", "file_id")}
        detail = ", ".join(f"{k}={v}" for k, v in keep.items())
    when = format_time(event.created_at, timezone)
    return f"{when}  {name}  {who}  {detail}".rstrip()


def render_case_text(
    case: Case,
    events: Sequence[CaseEvent],
    language: str,
    timezone: str,
    *,
    phone: str | None = None,
    last_events: int | None = None,
    revealed: Revealed | None = None,
) -> str:
    """Details and timeline; ``phone`` is the full number only for the case's mediator,
    ``revealed`` the case as said, for them only."""
    label = lambda key: t(f"cli.case_detail.{key}", language)  # noqa: E731
    centre = (
        (case.centre.name_zh if language == "zh" else case.centre.name_en) if case.centre else "-"
    )
    department = "-"
    if case.department:
        department = case.department.name_zh if language == "zh" else case.department.name_en
    consent = "cli.word_yes" if case.contact_consent else "cli.word_no"
    outcome = t(f"desk.outcomes.{case.outcome.value}", language) if case.outcome else "-"
    lines = [
        t("cli.case_detail.title", language, reference=case.reference),
        f"{label('category')}: {category_name(case.category, language)}",
        f"{label('status')}: {t(f'dialogue.status_names.{case.status.value}', language)}",
        f"{label('risk')}: {t(f'desk.risk.{case.risk_level.value}', language)}",
        f"{label('location')}: {case.street or '-'} {case.community or ''}".rstrip(),
        f"{label('centre')}: {centre}",
        f"{label('department')}: {department}",
        f"{label('mediator')}: {case.mediator.display_alias if case.mediator else '-'}",
        f"{label('phone')}: {phone or case.phone_masked or '-'}",
        f"{label('consent')}: {t(consent, language)}",
        f"{label('outcome')}: {outcome}",
        f"{label('rating')}: {case.rating if case.rating is not None else '-'}",
        f"{label('filed_at')}: {format_time(case.created_at, timezone)}",
        f"{label('summary')}: {_shown(case.summary, revealed.summary if revealed else None)}",
        f"{label('words')}: {_shown(case.resident_words, revealed.words if revealed else None)}",
    ]
    fields = field_lines(case, language, revealed.fields if revealed else None)
    if fields:
        lines.append(f"{label('fields')}:")
        lines.extend(f"  - {line}" for line in fields)
    shown = list(events)[-last_events:] if last_events else list(events)
    lines.append(f"{label('timeline')}:")
    lines.extend(
        "  "
        + event_line(
            event, language, timezone, revealed.data_of(event) if revealed is not None else None
        )
        for event in shown
    )
    return "\n".join(lines)


def _shown(stored: str, original: str | None) -> str:
    """The text as said when revealed, else the stored copy (masked again, in case a
    row predates sealing)."""
    return (original if original else mask_phones_in_text(stored)) or "-"
