"""Money as residents write it → a number: 三千块, 8000元, 1.5万, 八万八, 两千五, ¥300.

A mediator needs the amount in dispute as a number (to route by value, to fill the
case form); the resident's wording stays in the original text.
"""

from __future__ import annotations

import re

DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5,
          "六": 6, "七": 7, "八": 8, "九": 9, "壹": 1, "贰": 2, "叁": 3, "肆": 4, "伍": 5,
          "陆": 6, "柒": 7, "捌": 8, "玖": 9}  # fmt: skip
SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
BIG_UNITS = {"万": 10_000, "萬": 10_000, "亿": 100_000_000, "w": 10_000, "k": 1000}
_CURRENCY = re.compile(
    r"(块钱|块|元整|元|圆|蚊|人民币|rmb|yuan|cny|dollars?|bucks?|¥|￥|多|左右|来|余|\s)",
    re.IGNORECASE,
)
_ARABIC = re.compile(r"^(\d+(?:,\d{3})*(?:\.\d+)?)(.*)$")


def _small(text: str) -> float | None:
    """A number below 10,000 in Chinese numerals (一千二百三十, 三十五, 十二)."""
    if not text:
        return 0
    total = 0.0
    current: float | None = None
    last_unit = 1
    for char in text:
        if char in DIGITS:
            current = DIGITS[char]
        elif char in SMALL_UNITS:
            unit = SMALL_UNITS[char]
            total += (current if current is not None else 1) * unit
            current = None
            last_unit = unit
        else:
            return None
    if current is not None:
        # 两千五 = 2500: a trailing digit after a unit means the next unit down.
        total += current * (last_unit // 10 if last_unit >= 10 and text[-2] in SMALL_UNITS else 1)
    return total


def chinese_to_number(text: str) -> float | None:
    """Chinese (or mixed: 1.5万, 3千) numerals → number; ``None`` if it is not one."""
    text = text.strip()
    if not text:
        return None
    total = 0.0
    rest = text
    for unit_char, unit in (("亿", 100_000_000), ("万", 10_000), ("萬", 10_000)):
        if unit_char in rest:
            head, _, rest = rest.partition(unit_char)
            value = _part(head)
            if value is None:
                return None
            total += (value if head else 1) * unit
            if rest and all(c in DIGITS for c in rest) and len(rest) == 1:
                # 八万八 = 88,000; 三万五 = 35,000
                return total + DIGITS[rest] * unit / 10
    tail = _part(rest)
    if tail is None:
        return None
    return total + tail


def _part(text: str) -> float | None:
    if not text:
        return 0
    match = _ARABIC.match(text)
    if match:
        number = float(match.group(1).replace(",", ""))
        suffix = match.group(2)
        if not suffix:
            return number
        if suffix in SMALL_UNITS and len(suffix) == 1:
            return number * SMALL_UNITS[suffix]
        return None
    if len(text) > 1 and all(char in DIGITS for char in text):
        # 二〇二四 is read digit by digit.
        return float("".join(str(DIGITS[char]) for char in text))
    if text.startswith("十"):
        text = "一" + text
    return _small(text)


def parse_money(text: str) -> int | float | None:
    """The amount in ``text`` (``"八万八"`` → 88000, ``"1.5万元"`` → 15000), else ``None``."""
    cleaned = _CURRENCY.sub("", text.lower()).replace("，", ",")
    if not cleaned:
        return None
    multiplier = 1
    if cleaned[-1] in "wk" and cleaned[:-1]:
        multiplier = BIG_UNITS[cleaned[-1]]
        cleaned = cleaned[:-1]
    value = chinese_to_number(cleaned)
    if value is None:
        return None
    value *= multiplier
    return int(value) if float(value).is_integer() else round(value, 2)
