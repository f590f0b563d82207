"""Plain-text rendering of a case for the CLI and for mediators' chats."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from bot.i18n import t
from storage.models import Case, CaseEvent


def category_name(category: str, language: str) -> str:
    return t(f"categories.{category}", language) if category else "-"


def render_case_text(
    case: Case,
    events: Sequence[CaseEvent],
    language: str,
    timezone: str,
    *,
    phone: str | None = None,
) -> str:
    """Details and timeline; ``phone`` is the full number only for the case's mediator."""
    zone = ZoneInfo(timezone)
    label = lambda key: t(f"cli.case_detail.{key}", language)  # noqa: E731
    centre = (
        (case.centre.name_zh if language == "zh" else case.centre.name_en) if case.centre else "-"
    )
    department = "-"
    if case.department:
        department = case.department.name_zh if language == "zh" else case.department.name_en
    consent = "cli.word_yes" if case.contact_consent else "cli.word_no"
    lines = [
        t("cli.case_detail.title", language, reference=case.reference),
        f"{label('category')}: {category_name(case.category, language)}",
        f"{label('status')}: {case.status.value}",
        f"{label('risk')}: {case.risk_level.value}",
        f"{label('location')}: {case.street or '-'} {case.community or ''}".rstrip(),
        f"{label('centre')}: {centre}",
        f"{label('department')}: {department}",
        f"{label('mediator')}: {case.mediator.display_alias if case.mediator else '-'}",
        f"{label('phone')}: {phone or case.phone_masked or '-'}",
        f"{label('consent')}: {t(consent, language)}",
        f"{label('outcome')}: {case.outcome.value if case.outcome else '-'}",
        f"{label('rating')}: {case.rating if case.rating is not None else '-'}",
        f"{label('summary')}: {case.summary or '-'}",
        f"{label('words')}: {case.resident_words}",
    ]
    if case.fields:
        lines.append(f"{label('fields')}:")
        lines.extend(f"  - {key}: {value}" for key, value in case.fields.items())
    lines.append(f"{label('timeline')}:")
    for event in events:
        when = event.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        who = event.actor_type + (f":{event.actor_id}" if event.actor_id else "")
        detail = ", ".join(f"{k}={v}" for k, v in (event.data or {}).items() if k != "text")
        lines.append(f"  {when}  {event.kind:<14} {who}  {detail}".rstrip())
    return "\n".join(lines)
