"""The case card: what a centre's people see of a case, built once for every target.

Cards go to Telegram groups, WeCom robots and the web workspace alike, so they are
built here from the store, already translated (Chinese: the centres' working
language) and masked: a phone number never reaches a group in the clear, not even one
typed inside the resident's story.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.dialogue.forms import default_forms
from bot.i18n import t
from storage.models import Case, CaseEvent, CaseStatus
from storage.phone import mask_phones_in_text

#: What a card shows of the resident's words.
CARD_SUMMARY_CHARS = 120
#: What a card quotes of the words that made a case urgent.
TRIGGER_CHARS = 200
STAFF_LANGUAGE = "zh"


def kind_title(category: str, language: str = STAFF_LANGUAGE) -> str:
    """A dispute kind's title from its form (data), never a raw code."""
    form = default_forms().by_category.get(category)
    if form is not None:
        return form.title.get(language)
    return t(f"desk.kinds.{category}", language) if category else "-"


def status_title(status: str, language: str = STAFF_LANGUAGE) -> str:
    return t(f"dialogue.status_names.{status}", language)


def place_of(case: Case, language: str = STAFF_LANGUAGE) -> str:
    """Street · community as far as known, else the centre it sits at."""
    known = " · ".join(x for x in (case.street, case.community) if x)
    return known or t("desk.place_unknown", language)


def latest_emergency(events: Sequence[CaseEvent]) -> CaseEvent | None:
    return next((e for e in reversed(events) if e.kind == "emergency"), None)


def acknowledged_by(events: Sequence[CaseEvent]) -> str | None:
    """Alias of who acknowledged the latest emergency, if anyone did since."""
    for event in reversed(events):
        if event.kind == "acknowledged":
            return str(event.data.get("alias") or "-")
        if event.kind == "emergency":
            return None
    return None


def build_card(
    case: Case, events: Sequence[CaseEvent], *, link_base: str | None = None
) -> tuple[str, dict[str, object]]:
    """The card's fields; returns (reference, kwargs for :class:`CaseCard`)."""
    words = " ".join(mask_phones_in_text(case.resident_words).split())
    summary = words[:CARD_SUMMARY_CHARS] + ("…" if len(words) > CARD_SUMMARY_CHARS else "")
    emergency = latest_emergency(events)
    trigger = None
    danger: tuple[str, ...] = ()
    if emergency is not None:
        said = " ".join(mask_phones_in_text(str(emergency.data.get("words") or "")).split())
        trigger = said[:TRIGGER_CHARS] + ("…" if len(said) > TRIGGER_CHARS else "") or None
        danger = tuple(str(k) for k in emergency.data.get("kinds") or [])
    holder = case.mediator.display_alias if case.mediator is not None else None
    open_unassigned = case.status == CaseStatus.NEW and case.mediator_id is None
    return case.reference, {
        "reference": case.reference,
        "kind_title": kind_title(case.category),
        "risk": case.risk_level.value,
        "risk_badge": t(f"desk.risk.{case.risk_level.value}", STAFF_LANGUAGE),
        "place": place_of(case),
        "phone_masked": case.phone_masked or "-",
        "summary": summary,
        "status": case.status.value,
        "holder": holder,
        "trigger": trigger,
        "danger": danger,
        "acknowledged_by": acknowledged_by(events),
        "claimable": open_unassigned,
        "link": f"{link_base.rstrip('/')}/desk/cases/{case.reference}" if link_base else None,
    }


def danger_names(kinds: Sequence[str], language: str = STAFF_LANGUAGE) -> str:
    """Readable danger kinds (violence now, threat …) for cards and notices."""
    names = [t(f"desk.danger.{kind.split(':')[0]}", language) for kind in kinds]
    return "、".join(dict.fromkeys(names)) if language == "zh" else ", ".join(dict.fromkeys(names))
