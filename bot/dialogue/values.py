"""Turn a resident's answer into a slot value, preferring what the NLU already found.

Pure functions: the parse's entities (money normalised to a number, dates to ISO) come
first; a plain reading of the text is the fallback, so an answer still counts when the
NLU missed the entity. An answer that is not what the question asks ("小车司机" for a
date, "三个月前" for a number of people, a date still to come for something that
happened) is refused with the reason, so the resident is asked again politely.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.dialogue.forms import Choice, Slot
from nlu.dates import find_dates, find_durations, parse_date
from nlu.numbers import chinese_to_number

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
#: A run of Chinese numerals inside an answer ("大概五千块" → 五千).
_CN_RUN = re.compile(r"[零〇一二两三四五六七八九十百千万]+")
#: A number that counts time, not money or people ("三个月前", "3 days").
_TIME_AFTER_NUMBER = re.compile(
    r"([\d零〇一二两三四五六七八九十百千几半]+)\s*"
    r"(个?月|个?星期|周|天|日|号|年|个?小时|分钟|点|days?|weeks?|months?|years?|hours?)",
    re.IGNORECASE,
)
#: Words that put a date in the future (simplified, traditional, Cantonese, English).
_FUTURE = re.compile(
    r"下个?月|下個?月|下周|下星期|下禮拜|下礼拜|明天|后天|後天|明年|聽日|听日|"
    r"\bnext (week|month|year)\b|\btomorrow\b|\bin \d+ (days?|weeks?|months?)\b",
    re.IGNORECASE,
)
#: "… ago" / "…前": a past moment given as a distance from now.
_AGO = re.compile(r"(前|以前|之前|\bago\b)", re.IGNORECASE)
#: "I don't remember" is an honest answer to a date question.
_UNKNOWN_DATE = re.compile(
    r"不记得|不清楚|忘了|记不清|不知道|唔记得|don'?t (know|remember)|not sure"
)


@dataclass(frozen=True, slots=True)
class Answer:
    """A slot value, or the catalog key of why the answer was refused."""

    value: Any = None
    problem: str | None = None


def normalise_answer(text: str) -> str:
    """Width-folded, lower-cased, without spaces, punctuation or symbols (emoji)."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] not in "PSZC")


def entity_value(parse: Mapping[str, Any], entity: str) -> Any:
    """The first value of ``entity`` in the parse, or None."""
    for item in parse.get("entities") or []:
        if item.get("entity") == entity and item.get("value") not in (None, ""):
            return item["value"]
    return None


def _number(text: str) -> float | None:
    """A number in a free answer: digits (with 万) first, else Chinese numerals."""
    cleaned = unicodedata.normalize("NFKC", text).replace(",", "")
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


def _has_words(text: str) -> bool:
    """At least one letter or Chinese character (not only digits, emoji, punctuation)."""
    return any(unicodedata.category(ch).startswith("L") for ch in text)


def choice_for(slot: Slot, text: str) -> Choice | None:
    """The choice an answer names: its title or value, else the earliest keyword."""
    wanted = normalise_answer(text)
    if not wanted:
        return None
    for choice in slot.choices:
        names = (choice.value, choice.zh, choice.en)
        if wanted in {normalise_answer(name) for name in names}:
            return choice
    return keyword_choice(slot, text)


def keyword_choice(slot: Slot, text: str) -> Choice | None:
    """The choice whose keyword comes first in ``text`` (the longer one on a tie)."""
    lowered = text.lower()
    best: tuple[int, int, Choice] | None = None
    for choice in slot.choices:
        for keyword in choice.keywords:
            at = lowered.find(keyword.lower())
            if at >= 0 and (best is None or (at, -len(keyword)) < (best[0], best[1])):
                best = (at, -len(keyword), choice)
    return best[2] if best else None


def _in_future(value: str, today: date | None) -> bool:
    """An ISO date (day, month or year precision) that starts after ``today``."""
    if today is None:
        return False
    match = re.match(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$", value)
    if not match:
        return False
    year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
    try:
        return date(year, month, day) > today
    except ValueError:
        return False


def _date_answer(slot: Slot, text: str, parse: Mapping[str, Any], today: date | None) -> Answer:
    past = slot.when == "past"
    if past and _FUTURE.search(text):
        return Answer(problem="future_date")
    found = entity_value(parse, "date")
    value = str(found) if found is not None else None
    if value is None:
        value = parse_date(text, today) if today else parse_date(text)
    if value is None:
        spans = list(find_dates(text, today) if today else find_dates(text))
        if spans:
            value = spans[0][2]
    if value is not None:
        if past and _in_future(value, today):
            return Answer(problem="future_date")
        return Answer(value)
    if _AGO.search(text) and (list(find_durations(text)) or _TIME_AFTER_NUMBER.search(text)):
        return Answer(text[:100])  # "三个月前", "3 months ago": kept as the resident said
    if _UNKNOWN_DATE.search(text.lower()):
        return Answer(text[:100])
    return Answer(problem="invalid_date")


def _count_answer(slot: Slot, text: str, parse: Mapping[str, Any]) -> Answer:
    problem = "invalid_amount" if slot.type == "amount" else "invalid_headcount"
    if _TIME_AFTER_NUMBER.search(text) and not entity_value(
        parse, "amount" if slot.type == "amount" else "headcount"
    ):
        return Answer(problem=problem)  # "三个月前" is neither money nor people
    found = entity_value(parse, "amount" if slot.type == "amount" else "headcount")
    value = _as_float(found) if found is not None else _number(text)
    if value is None:
        return Answer(problem=problem)
    if (slot.min is not None and value < slot.min) or (slot.max is not None and value > slot.max):
        return Answer(problem=problem)
    return Answer(int(value) if slot.type == "integer" or value.is_integer() else value)


def check_answer(
    slot: Slot, text: str, parse: Mapping[str, Any], today: date | None = None
) -> Answer:
    """The value for ``slot`` in this answer, or why it is not a valid answer."""
    text = text.strip()
    if slot.type == "choice":
        choice = choice_for(slot, text)
        return Answer(choice.value) if choice else Answer(problem="invalid_answer")
    if slot.type in ("amount", "integer"):
        return _count_answer(slot, text, parse)
    if slot.type == "date":
        return _date_answer(slot, text, parse, today)
    if not text or len(text) > slot.max_length or not _has_words(text):
        return Answer(problem="invalid_answer")
    return Answer(text)


def read_slot(slot: Slot, text: str, parse: Mapping[str, Any]) -> Any | None:
    """The value for ``slot`` in this answer, or None when it is not a valid answer."""
    return check_answer(slot, text, parse).value


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


def prefill(
    slots: list[Slot], parse: Mapping[str, Any], text: str = "", today: date | None = None
) -> dict[str, Any]:
    """Slot values the first message already answers: its entities, and for a choice
    the form's own keywords in ``text`` (validated like a typed answer)."""
    values: dict[str, Any] = {}
    for slot in slots:
        if slot.choices and text:
            choice = keyword_choice(slot, text)
            if choice is not None:
                values[slot.name] = choice.value
            continue
        for entity in (slot.entity, slot.fallback_entity):
            if entity is None:
                continue
            found = entity_value(parse, entity)
            if found is None or _bare_role(parse, entity):
                continue
            if slot.type == "integer" and entity != "headcount":
                answer = check_answer(slot, str(found), {}, today)
            elif slot.type in ("amount", "integer", "date"):
                entities = {"entities": [{"entity": entity, "value": found}]}
                answer = check_answer(slot, str(found), entities, today)
            else:
                answer = check_answer(slot, str(found), {}, today)
            if answer.value is not None:
                values[slot.name] = answer.value
                break
    return values
