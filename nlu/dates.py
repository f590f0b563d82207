"""Dates and durations as residents write them → ISO 8601.

A case form needs "when did it happen" and "for how long"; people write 3月5号,
2024年3月, 上个月10号, 去年十月, 昨天晚上, 上周五, and 三个月, 半年, 两年多.

Dates become ISO 8601 calendar dates at the precision the resident gave: a day
(``2025-03-05``), a month (``2025-03``), a year (``2024``) or a week (``2025-W47``).
A date without a year is the most recent such day not in the future, because a dispute
is about something that has already happened. Vague words (前几天, 最近) keep the
resident's words as the value: there is no honest ISO form for them.

Durations become an ISO 8601 duration string (三个月 → ``P3M``, 半年 → ``P6M``, 两周 →
``P2W``, 十二个小时 → ``PT12H``), which a Rasa ``text``/``any`` slot stores as is, plus
Duckling's ``additional_info`` shape (``{"value": 3, "unit": "month", "normalized":
{"value": 7776000, "unit": "second"}}``) for code that wants numbers. 两年多 gives the
lower bound, ``P2Y``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from nlu.numbers import chinese_to_number

_NUM = r"(\d{1,4}|[零〇一二两三四五六七八九十]{1,4})"
_FULL = re.compile(rf"^{_NUM}\s*[-/.年]\s*{_NUM}\s*[-/.月]\s*{_NUM}\s*[日号]?$")
_YEAR_MONTH = re.compile(rf"^{_NUM}\s*[年-]\s*{_NUM}\s*月?$")
_MONTH_DAY = re.compile(rf"^{_NUM}\s*[月/.-]\s*{_NUM}\s*[日号]?$")
_RELATIVE_MONTH = re.compile(rf"^(上|这|下|本)个?月\s*{_NUM}\s*[日号]$")
_RELATIVE_DAYS = {"今天": 0, "今日": 0, "昨天": -1, "昨日": -1, "前天": -2, "大前天": -3,
                  "明天": 1, "后天": 2, "today": 0, "yesterday": -1, "琴日": -1,
                  "今日早上": 0}  # fmt: skip
_MONTHS_EN = {"january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6,
              "july": 7, "august": 8, "september": 9, "october": 10, "november": 11,
              "december": 12, "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7,
              "aug": 8, "sep": 9, "sept": 9, "oct": 10, "nov": 11, "dec": 12}  # fmt: skip
_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_DAY_PART = r"(?:早上|上午|中午|下午|傍晚|晚上|夜里|半夜|凌晨|夜晚|早晨)?"
_CN_DAY = r"(?:\d{1,2}|[一二三四五六七八九十]{1,3})"
_CN_MONTH = r"(?:1[0-2]|0?[1-9]|十[一二]?|[一二三四五六七八九])"
_EN_MONTH = "|".join(sorted(_MONTHS_EN, key=len, reverse=True))

_DATE = re.compile(
    "|".join(
        [
            # 2026年3月5日, 2026-03-15, 2026/3/5, 二〇二四年三月五日
            rf"(?P<full>(?:\d{{4}}|[零〇一二三四五六七八九]{{4}})\s?[-/.年]\s?{_CN_MONTH}\s?[-/.月]"
            rf"\s?{_CN_DAY}\s?[日号]?(?!\d)){_DAY_PART}",
            # 2025年8月, 2022年
            rf"(?P<year_month>(?:\d{{4}}|[零〇一二三四五六七八九]{{4}})年(?:{_CN_MONTH}月(?:份)?)?)",
            # 去年12月, 去年十月三号, 今年3月, 去年, 前年
            rf"(?P<rel_year>(?:去年|今年|前年|明年)(?:{_CN_MONTH}月(?:份)?(?:{_CN_DAY}[日号])?|底|初)?)",
            # 上个月10号, 上个月, 这个月底, 下个月
            rf"(?P<rel_month>(?:上|这|本|下)个?月(?:{_CN_DAY}[日号]|底|初)?){_DAY_PART}",
            # 3月15日, 11月3号, 12月, 3月份
            rf"(?P<month_day>(?<![\d个年])(?:{_CN_MONTH})月(?:{_CN_DAY}[日号]|份|底|初)?)(?!亮)",
            # 昨天晚上, 前天, 今天
            rf"(?P<rel_day>大前天|前天|昨天|昨日|今天|今日|明天|(?<![以之然最背])后天|琴日){_DAY_PART}",
            # 上周五, 上周, 上个星期, 这周
            r"(?P<rel_week>(?:上|这|本|下)个?(?:周|星期|礼拜)(?:[一二三四五六日天])?)",
            # 五号那天, 12号晚上
            rf"(?P<day>(?<![\d月第]){_CN_DAY}[号日](?=那天|那晚|晚上|早上|下午|凌晨|中午))",
            # 月底, 年底, 前几天
            r"(?P<vague>月底|月初|年底|年初|前几天|前两天|这几天|最近几天)",
            # yesterday, last month, last week, on march 5, march, in 2022
            r"(?P<en_day>\b(?:yesterday|today|the day before yesterday)\b)",
            r"(?P<en_rel>\b(?:last|this) (?:month|week|year)\b)",
            rf"(?P<en_month>\b(?:{_EN_MONTH})(?: \d{{1,2}}(?:st|nd|rd|th)?\b)?(?:,? \d{{4}})?)\b",
            r"(?P<en_year>(?<=\bin )(?:19|20)\d\d\b)",
        ]
    )
)


def _int(text: str) -> int | None:
    value = chinese_to_number(text) if not text.isdigit() else int(text)
    return int(value) if value is not None else None


def _safe(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _shift_month(today: date, months: int) -> tuple[int, int]:
    index = today.year * 12 + today.month - 1 + months
    return index // 12, index % 12 + 1


def _year(text: str) -> int | None:
    year = _int(text)
    if year is None:
        return None
    return year + 2000 if year < 100 else year


def _month_end(year: int, month: int) -> date:
    next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
    return date(next_year, next_month, 1) - timedelta(days=1)


def _recent(today: date, month: int, day: int | None = None) -> str | None:
    """The most recent ``month`` (and ``day``) not after ``today``, in ISO form."""
    year = today.year if (month, day or 1) <= (today.month, today.day) else today.year - 1
    if day is None:
        return f"{year:04d}-{month:02d}" if 1 <= month <= 12 else None
    found = _safe(year, month, day)
    return found.isoformat() if found else None


def _strip_day_part(text: str) -> str:
    return re.sub(_DAY_PART + "$", "", text) or text


def parse_date(text: str, today: date | None = None) -> str | None:
    """ISO form of a date expression, or ``None`` if it is not one we understand."""
    today = today or date.today()
    text = _strip_day_part(text.strip().lower())
    if text in _RELATIVE_DAYS:
        return (today + timedelta(days=_RELATIVE_DAYS[text])).isoformat()
    if match := _FULL.match(text):
        year, month, day = _year(match[1]), _int(match[2]), _int(match[3])
        found = (
            _safe(year, month, day)
            if year is not None and month is not None and day is not None
            else None
        )
        return found.isoformat() if found else None
    if match := _YEAR_MONTH.match(text.removesuffix("份")):
        year, month = _year(match[1]), _int(match[2])
        if year and month and 1 <= month <= 12 and year >= 1900:
            return f"{year:04d}-{month:02d}"
        return None
    year_only = re.fullmatch(r"(?:\d{4}|[零〇一二三四五六七八九]{4})年?", text)
    if year_only and (year := _year(text[:4])):
        return f"{year:04d}" if 1900 <= year <= 2100 else None
    if match := _RELATIVE_MONTH.match(text):
        offset = {"上": -1, "这": 0, "本": 0, "下": 1}[match[1]]
        year, month = _shift_month(today, offset)
        day = _int(match[2])
        found = _safe(year, month, day) if day else None
        return found.isoformat() if found else None
    if match := re.fullmatch(r"(上|这|本|下)个?月(底|初)?", text):
        year, month = _shift_month(today, {"上": -1, "这": 0, "本": 0, "下": 1}[match[1]])
        if match[2] == "底":
            return _month_end(year, month).isoformat()
        return f"{year:04d}-{month:02d}" + ("-01" if match[2] == "初" else "")
    relative_year = rf"(去年|今年|前年|明年)(?:({_CN_MONTH})月份?(?:({_CN_DAY})[日号])?|(底|初))?"
    if match := re.fullmatch(relative_year, text):
        year = today.year + {"去年": -1, "今年": 0, "前年": -2, "明年": 1}[match[1]]
        if match[2]:
            month = _int(match[2])
            if not month or not 1 <= month <= 12:
                return None
            if match[3]:
                found = _safe(year, month, _int(match[3]) or 0)
                return found.isoformat() if found else None
            return f"{year:04d}-{month:02d}"
        if match[4] == "底":
            return f"{year:04d}-12-31"
        return f"{year:04d}-01" if match[4] == "初" else f"{year:04d}"
    if match := re.fullmatch(r"(上|这|本|下)个?(?:周|星期|礼拜)([一二三四五六日天])?", text):
        monday = today - timedelta(days=today.weekday())
        monday += timedelta(weeks={"上": -1, "这": 0, "本": 0, "下": 1}[match[1]])
        if match[2]:
            return (monday + timedelta(days=_WEEKDAYS[match[2]])).isoformat()
        year, week, _ = monday.isocalendar()
        return f"{year:04d}-W{week:02d}"
    if match := re.fullmatch(rf"({_CN_MONTH})月(份|底|初)?", text):
        month = _int(match[1])
        if not month or not 1 <= month <= 12:
            return None
        iso = _recent(today, month)
        if iso and match[2] == "底":
            year = int(iso[:4])
            return _month_end(year, month).isoformat()
        return iso
    if match := _MONTH_DAY.match(text):
        month, day = _int(match[1]), _int(match[2])
        if not month or not day:
            return None
        return _recent(today, month, day)
    if match := re.fullmatch(rf"({_CN_DAY})[号日]", text):
        day = _int(match[1])
        if not day:
            return None
        year, month = (today.year, today.month) if day <= today.day else _shift_month(today, -1)
        found = _safe(year, month, day)
        return found.isoformat() if found else None
    if text in ("月底", "月初", "年底", "年初"):
        if text == "月底":
            return _month_end(today.year, today.month).isoformat()
        if text == "月初":
            return f"{today.year:04d}-{today.month:02d}-01"
        return f"{today.year:04d}-12-31" if text == "年底" else f"{today.year:04d}-01"
    return _parse_english(text, today)


def _parse_english(text: str, today: date) -> str | None:
    if text == "the day before yesterday":
        return (today - timedelta(days=2)).isoformat()
    if match := re.fullmatch(r"(last|this) (month|week|year)", text):
        offset = -1 if match[1] == "last" else 0
        if match[2] == "month":
            year, month = _shift_month(today, offset)
            return f"{year:04d}-{month:02d}"
        if match[2] == "year":
            return f"{today.year + offset:04d}"
        year, week, _ = (today + timedelta(weeks=offset)).isocalendar()
        return f"{year:04d}-W{week:02d}"
    month_day = rf"({_EN_MONTH})(?: (\d{{1,2}})(?:st|nd|rd|th)?)?(?:,? (\d{{4}}))?"
    if match := re.fullmatch(month_day, text):
        month = _MONTHS_EN[match[1]]
        day = int(match[2]) if match[2] else None
        if match[3]:
            if day is None:
                return f"{int(match[3]):04d}-{month:02d}"
            found = _safe(int(match[3]), month, day)
            return found.isoformat() if found else None
        return _recent(today, month, day)
    if re.fullmatch(r"(19|20)\d\d", text):
        return text
    return None


def find_dates(text: str, today: date | None = None) -> Iterator[tuple[int, int, str]]:
    """``(start, end, value)`` of every date in normalised ``text``; the value is ISO,
    or the resident's words for a vague date (前几天)."""
    for match in _DATE.finditer(text):
        start, end = match.span()
        surface = match.group()
        kind = match.lastgroup
        if kind == "en_month" and surface in ("may", "mar", "jan", "dec", "oct", "sep", "jun"):
            continue  # "may" is a verb far more often than a month
        if kind == "month_day" and text[end : end + 1] in ("个", "份", "薪"):
            continue
        if kind == "vague":
            yield start, end, surface
            continue
        value = parse_date(surface, today)
        if value is not None:
            yield start, end, value


_DURATION_NUM = r"(?:好(?=几)|大)?(?:[零一二两三四五六七八九十百几]+|\d+(?:\.\d+)?)"
_DURATION = re.compile(
    "|".join(
        [
            # 三个月, 两年多, 一个多月, 十二个小时, 好几天, 15天, 一年半, 两个半月
            rf"(?P<cn>{_DURATION_NUM}(?:个)?(?:多|半)?(?:个)?"
            r"(?:年|个月|(?<=[个多半])月|星期|礼拜|周|天|小时|钟头|分钟)(?:多|半)?)",
            # 半年, 半个月, 大半年, 半天
            r"(?P<half>(?:大)?半(?:个)?(?:年|月|天|小时|星期))",
            # 3 months, two weeks, a month, one year, months
            r"(?P<en>\b(?:\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|"
            r"twelve|several|a few|few) (?:years?|months?|weeks?|days?|hours?)\b)",
            r"(?P<en_bare>(?<=\bfor )(?:years|months|weeks|days)\b)",
        ]
    )
)
_UNITS = {"年": "year", "个月": "month", "月": "month", "星期": "week", "礼拜": "week",
          "周": "week", "天": "day", "小时": "hour", "钟头": "hour", "分钟": "minute",
          "year": "year", "month": "month", "week": "week", "day": "day",
          "hour": "hour"}  # fmt: skip
_SECONDS = {"year": 31_536_000, "month": 2_592_000, "week": 604_800, "day": 86_400,
            "hour": 3_600, "minute": 60}  # fmt: skip
_ISO_LETTER = {"year": "Y", "month": "M", "week": "W", "day": "D", "hour": "H", "minute": "M"}
#: Half a unit in the next unit down: 半年 = 6 months, 半个月 = 15 days.
_HALF = {"year": (6, "month"), "month": (15, "day"), "week": (3, "day"), "day": (12, "hour"),
         "hour": (30, "minute")}  # fmt: skip
_EN_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
               "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
               "several": 3, "a few": 2, "few": 2}  # fmt: skip


def iso_duration(parts: list[tuple[float, str]]) -> str:
    """``[(2, "month"), (15, "day")]`` → ``"P2M15D"`` (ISO 8601)."""
    date_units = ("year", "month", "week", "day")
    date_part = "".join(f"{_number(n)}{_ISO_LETTER[u]}" for n, u in parts if u in date_units)
    time_part = "".join(f"{_number(n)}{_ISO_LETTER[u]}" for n, u in parts if u not in date_units)
    return "P" + date_part + (f"T{time_part}" if time_part else "")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_duration(text: str) -> tuple[str, dict[str, Any]] | None:
    """ISO 8601 duration and Duckling-style details for one duration span, else ``None``."""
    text = text.strip().lower()
    approximate = bool(re.search(r"多|几|大半|好|several|few|^(?:years|months|weeks|days)$", text))
    if match := re.fullmatch(r"(?:(?:\d+|[a-z ]+?) ?)?(year|month|week|day|hour)s?", text):
        head = text[: match.start(1)].strip()
        count: float | None = float(head) if head.isdigit() else _EN_NUMBERS.get(head)
        if not head:
            count = 2  # "for months": at least two
        unit = match[1]
        half = False
    else:
        found = re.fullmatch(
            r"(大)?(半)?(.*?)(?:个)?(多|半)?(?:个)?"
            r"(年|个月|月|星期|礼拜|周|天|小时|钟头|分钟)(多|半)?",
            text,
        )
        if not found:
            return None
        unit = _UNITS[found[5]]
        half = found[4] == "半" or found[6] == "半"
        numeral = found[3].removeprefix("好")
        if found[2] and not numeral:
            count, half = 0, True
        else:
            count = _int(numeral) if numeral and not numeral.replace(".", "").isdigit() else None
            if numeral.replace(".", "").isdigit():
                count = float(numeral)
            if numeral == "几":
                count = 2
    if count is None:
        return None
    parts: list[tuple[float, str]] = [(count, unit)] if count else []
    if half:
        amount, smaller = _HALF[unit]
        parts.append((amount, smaller))
    if not parts:
        return None
    seconds = sum(n * _SECONDS[u] for n, u in parts)
    value, unit_out = parts[0] if len(parts) == 1 else (seconds / _SECONDS[unit], unit)
    details: dict[str, Any] = {
        "value": _whole_number(value),
        "unit": unit_out,
        "normalized": {"value": int(seconds), "unit": "second"},
    }
    if approximate:
        details["approximate"] = True
    return iso_duration(parts), details


def _whole_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 2)


_RATE_AFTER = re.compile(r"\s?(?:\d|[一二两三四五六七八九十几]+[百千万块元])")


def find_durations(text: str) -> Iterator[tuple[int, int, str, dict[str, Any]]]:
    """``(start, end, iso, details)`` of every duration in normalised ``text``.

    Not durations: a rate (每个月, 一个月1500块), an ordinal (第三天), a year number
    (2022年 is a date), a date word (前几天 is a date).
    """
    for match in _DURATION.finditer(text):
        start, end = match.span()
        surface = match.group()
        before = text[max(0, start - 1) : start]
        if before in "每第前上这下本同几" and before and match.lastgroup != "en":
            continue
        if re.match(r"\d{3,}", surface):
            continue
        if match.lastgroup == "cn" and _RATE_AFTER.match(text[end:]):
            continue  # 一个月1500块, 一个月四千多: a rate, not how long
        if surface.startswith(("一年", "一个月", "一天")) and before == "一":
            continue
        parsed = parse_duration(surface)
        if parsed is None:
            continue
        yield start, end, parsed[0], parsed[1]
