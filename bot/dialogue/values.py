"""Turn a resident's answer into a slot value, preferring what the NLU already found.

Pure functions: the parse's entities (money normalised to a number, dates to ISO) come
first; a plain reading of the text is the fallback, so an answer still counts when the
NLU missed the entity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.dialogue.forms import Slot
from nlu.numbers import chinese_to_number

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
#: A run of Chinese numerals inside an answer ("大概五千块" → 五千).
_CN_RUN = re.compile(r"[零〇一二两三四五六七八九十百千万]+")


def entity_value(parse: Mapping[str, Any], entity: str) -> Any:
    """The first value of ``entity`` in the parse, or None."""
    for item in parse.get("entities") or []:
        if item.get("entity") == entity and item.get("value") not in (None, ""):
            return item["value"]
    return None


def _number(text: str) -> float | None:
    """A number in a free answer: digits (with 万) first, else Chinese numerals."""
    cleaned = text.replace(",", "").replace(",", "")
    match = _NUMBER.search(cleaned)
    if match:
        value = float(match.group())
        if "万" in cleaned[match.end() : match.end() + 2]:
            value *= 10000
        return value
    for run in _CN_RUN.findall(cleaned):
        spelled = chinese_to_number(run)
        if spelled is not None:
            return spelled
    return None


def read_slot(slot: Slot, text: str, parse: Mapping[str, Any]) -> Any | None:
    """The value for ``slot`` in this answer, or None when it is not a valid answer."""
    text = text.strip()
    if slot.type == "choice":
        for choice in slot.choices:
            if text in (choice.value, choice.zh, choice.en) or text.lower() == choice.en.lower():
                return choice.value
        return None
    if slot.type in ("amount", "integer"):
        found = entity_value(parse, "amount" if slot.type == "amount" else "headcount")
        value = _as_float(found) if found is not None else _number(text)
        if value is None:
            return None
        if (slot.min is not None and value < slot.min) or (
            slot.max is not None and value > slot.max
        ):
            return None
        return int(value) if slot.type == "integer" or value.is_integer() else value
    if slot.type == "date":
        found = entity_value(parse, "date")
        if found is not None:
            return str(found)
        return text[:100] if text else None
    if not text or len(text) > slot.max_length:
        return None
    return text


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return _number(str(value))


def _bare_role(parse: Mapping[str, Any], entity: str) -> bool:
    """The NLU found only a role word ("the boss"), not who it is: ask, don't assume."""
    for item in parse.get("entities") or []:
        if item.get("entity") == entity:
            return (item.get("additional_info") or {}).get("kind") == "role"
    return False


def prefill(slots: list[Slot], parse: Mapping[str, Any]) -> dict[str, Any]:
    """Slot values the first message already answers (entities only, validated)."""
    values: dict[str, Any] = {}
    for slot in slots:
        if slot.entity is None:
            continue
        found = entity_value(parse, slot.entity)
        if found is None or _bare_role(parse, slot.entity):
            continue
        value = read_slot(
            slot,
            str(found),
            {"entities": [{"entity": slot.entity, "value": found}]}
            if slot.type in ("amount", "integer", "date")
            else {},
        )
        if slot.type == "integer" and slot.entity != "headcount":
            value = read_slot(slot, str(found), {})
        if value is not None:
            values[slot.name] = value
    return values
