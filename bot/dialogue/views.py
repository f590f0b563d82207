"""How draft values read to a person: slot values, places, the review's lines."""

from __future__ import annotations

from typing import Any

from bot.dialogue.forms import Slot
from bot.dialogue.turn import Turn
from bot.i18n import t
from storage.phone import mask_phone


def format_value(turn: Turn, slot: Slot, value: Any) -> str:
    if slot.type == "choice":
        return next((c.label(turn.lang) for c in slot.choices if c.value == value), str(value))
    if slot.type == "amount":
        return t("dialogue.amount_value", turn.lang, amount=f"{value:,}")
    return str(value)


def location_text(turn: Turn, street_code: str | None, community: str | None) -> str:
    street = turn.ctx.geography.street(street_code)
    if street is None:
        return t("dialogue.location_unknown", turn.lang)
    return street.name(turn.lang) + (f" · {community}" if community else "")


def review_lines(turn: Turn) -> list[str]:
    """The draft as the resident checks it before submitting (phone masked)."""
    draft = turn.draft
    lang = turn.lang
    form = turn.form
    words = " ".join(draft["words"])
    lines = [
        f"{t('dialogue.field_category', lang)}: {form.title.get(lang)}",
        f"{t('dialogue.field_words', lang)}: {words[:300]}{'…' if len(words) > 300 else ''}",
    ]
    for slot in form.slots:
        if slot.name in draft["slots"]:
            shown = format_value(turn, slot, draft["slots"][slot.name])
        else:
            shown = t("dialogue.not_given", lang)
        lines.append(f"{slot.label.get(lang)}: {shown}")
    lines.append(
        f"{t('dialogue.field_location', lang)}: "
        f"{location_text(turn, draft['street'], draft['community'])}"
    )
    phone = mask_phone(draft["phone"]) if draft["phone"] else t("dialogue.not_given", lang)
    lines.append(f"{t('dialogue.field_phone', lang)}: {phone}")
    if draft["attachments"]:
        lines.append(t("dialogue.field_attachments", lang, count=len(draft["attachments"])))
    return lines
