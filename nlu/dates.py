"""Dates as residents write them → ISO 8601 (``2025-03-05``, or ``2025-03`` for a month).

A case form needs "when did it happen"; people write 3月5号, 2024年3月, 上个月10号,
昨天. A date without a year is taken as the most recent such day not in the future,
because a dispute is about something that has already happened.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from nlu.numbers import chinese_to_number

_NUM = r"(\d{1,4}|[零〇一二两三四五六七八九十]{1,4})"
_FULL = re.compile(rf"^{_NUM}\s*[-/.年]\s*{_NUM}\s*[-/.月]\s*{_NUM}\s*[日号]?$")
_YEAR_MONTH = re.compile(rf"^{_NUM}\s*[年-]\s*{_NUM}\s*月?$")
_MONTH_DAY = re.compile(rf"^{_NUM}\s*[月/.-]\s*{_NUM}\s*[日号]?$")
_RELATIVE_MONTH = re.compile(rf"^(上|这|下|本)个?月\s*{_NUM}\s*[日号]$")
_RELATIVE_DAYS = {"今天": 0, "今日": 0, "昨天": -1, "昨日": -1, "前天": -2, "大前天": -3,
                  "明天": 1, "后天": 2, "today": 0, "yesterday": -1}  # fmt: skip


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


def parse_date(text: str, today: date | None = None) -> str | None:
    """ISO form of a date expression, or ``None`` if it is not one we understand."""
    today = today or date.today()
    text = text.strip().lower()
    if text in _RELATIVE_DAYS:
        return (today + timedelta(days=_RELATIVE_DAYS[text])).isoformat()
    if match := _FULL.match(text):
        year, month, day = _year(match[1]), _int(match[2]), _int(match[3])
        found = _safe(year, month, day) if None not in (year, month, day) else None
        return found.isoformat() if found else None
    if match := _YEAR_MONTH.match(text):
        year, month = _year(match[1]), _int(match[2])
        if year and month and 1 <= month <= 12 and year >= 1900:
            return f"{year:04d}-{month:02d}"
        return None
    if match := _RELATIVE_MONTH.match(text):
        offset = {"上": -1, "这": 0, "本": 0, "下": 1}[match[1]]
        year, month = _shift_month(today, offset)
        day = _int(match[2])
        found = _safe(year, month, day) if day else None
        return found.isoformat() if found else None
    if match := _MONTH_DAY.match(text):
        month, day = _int(match[1]), _int(match[2])
        if not month or not day:
            return None
        found = _safe(today.year, month, day)
        if found and found > today:
            found = _safe(today.year - 1, month, day)
        return found.isoformat() if found else None
    return None
