"""Money and head counts as residents write them → numbers.

A mediator needs the amount in dispute as a number (to route by value, to fill the
case form) and the number of people affected as an integer (a group dispute is
urgent); the resident's wording stays in the original text.

Spans follow the training data's annotations: the currency word belongs to the amount
(``[8000元](amount)``, ``[三千块](amount)``, ``[RMB 7000](amount)``, ``[两千多](amount)``),
and a head count keeps 人/户 but not an occupation (``[三十多个](headcount)工人``,
``[12个人](headcount)``, ``[40多户](headcount)租客``).

Approximate words give the smallest value they allow: 两千多 → 2000, 四五万 → 40000,
十几个 → 10, 几百块 → 200 (几 alone counts as two). "At least this much" is what a
mediator can safely act on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5,
          "六": 6, "七": 7, "八": 8, "九": 9, "壹": 1, "贰": 2, "叁": 3, "肆": 4, "伍": 5,
          "陆": 6, "柒": 7, "捌": 8, "玖": 9}  # fmt: skip
SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
BIG_UNITS = {"万": 10_000, "萬": 10_000, "亿": 100_000_000, "w": 10_000, "k": 1000}
_CURRENCY = re.compile(
    r"(块钱|块|元整|元|圆|蚊|人民币|rmb|yuan|cny|dollars?|bucks?|¥|￥|\$|多|左右|来|余|\s)",
    re.IGNORECASE,
)
_ARABIC = re.compile(r"^(\d+(?:,\d{3})*(?:\.\d+)?)(.*)$")
#: 四五万, 七八个: two neighbouring digits are a range; the lower one stands for it.
_RANGE = re.compile(r"([一二三四五六七八])([二三四五六七八九])")
#: 三块五 = 3.5, 两块五毛 = 2.5: a digit after 块/元 is tenths.
_YUAN_JIAO = re.compile(r"^(.+?)(?:块|元)([一二三四五六七八九\d])(?:毛|角)?$")

_CN = "零〇一二两三四五六七八九十百千万亿几"
_NUM_CN = rf"(?:好)?[{_CN}]*[一二两三四五六七八九十几][{_CN}多]*"
_ARABIC_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_CURRENCY_WORD = r"(?:块钱|块|元|蚊|yuan|rmb|cny|dollars?|bucks?)"

#: Words after a number that make it something other than money (a count, a time, a
#: measure, an ordinal).
_NOT_MONEY_AFTER = re.compile(
    r"^\s?(?:多)?(?:个|人|户|名|位|口|年|月|天|日|号|次|平|米|公里|度|件|单|斤|倍|分|岁|间|套|"
    r"栋|层|楼|台|辆|条|张|家|周|小时|钟|点|里|字|页|公斤|克|吨|份|场|把|只|头|座|所|本|遍|"
    r"趟|顿|餐|步|股|成|针|节|瓶|盒|包|箱|对|双|副|颗|粒|根|块块|寸|尺|亩|%|％|:|：|"
    r"\s?(?:people|persons?|workers?|riders?|drivers?|households?|families|of us|years?|"
    r"months?|weeks?|days?|hours?|minutes?|times|floors?|km|kg|m2|sqm|pm|am|%))",
)
_HOTLINES = {"110", "119", "120", "122", "12345", "12315", "12333", "12348", "12110"}

_AMOUNT = re.compile(
    "|".join(
        [
            # ¥500, RMB 7000, 人民币5万
            rf"(?P<prefixed>(?:¥|￥|\$|rmb|cny|人民币)\s?{_ARABIC_NUM}(?:\s?(?:万|千|k|w))?"
            r"(?:\s?(?:元|块))?)",
            # 8000元, 1500块, 5000 yuan, 1.5万, 3万多, 3000多块, 30k
            rf"(?P<arabic>(?<![\d.]){_ARABIC_NUM}\s?(?:(?:万|千|百)多?\s?{_CURRENCY_WORD}?|"
            rf"多?\s?{_CURRENCY_WORD}|k(?![a-z])|w(?![a-z])))",
            # 三千块, 两百块, 五千多块, 三块五, 十块
            rf"(?P<chinese>{_NUM_CN}(?:块钱|块|元|蚊)(?:[一二三四五六七八九](?:毛|角)?)?)",
            # 六千多, 二十多万, 两万五, 四五万 (a magnitude makes a bare numeral money)
            rf"(?P<magnitude>(?:好)?[{_CN}]*[一二两三四五六七八九十几]多?[百千万亿][{_CN}多]*)",
            # 赔5000, from 6000 to 4000 (a bare number of two or more digits)
            r"(?P<bare>(?<![\d.:/\-a-z])\d{2,9}(?:\.\d+)?多?(?![\d.:/\-a-z%]))",
        ]
    ),
    re.IGNORECASE,
)
_YEAR_CONTEXT = re.compile(r"(?:in|since|until|before|after|from|于|在|到)\s?$")


def _small(text: str) -> float | None:
    """A number below 10,000 in Chinese numerals (一千二百三十, 三十五, 十二, 两千五)."""
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


def _approximate(text: str) -> str:
    """Replace the words of approximation by the lower bound they allow."""
    text = text.removeprefix("好")
    text = text.replace("多", "").replace("余", "").replace("来", "")
    text = _RANGE.sub(lambda m: m[1] if int(DIGITS[m[2]]) == DIGITS[m[1]] + 1 else m[0], text)
    # 十几 / 二十几 → 十 / 二十; 几十 / 几百 / 几 → 二十 / 二百 / 二.
    text = re.sub(r"(?<=[十拾])几", "", text)
    return text.replace("几", "二")


def chinese_to_number(text: str) -> float | None:
    """Chinese (or mixed: 1.5万, 3千) numerals → number; ``None`` if it is not one."""
    text = _approximate(text.strip())
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
    if text.startswith(("十", "拾")):
        text = "一" + text
    return _small(text)


def _whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 2)


def parse_money(text: str) -> int | float | None:
    """The amount in ``text`` (``"八万八"`` → 88000, ``"1.5万元"`` → 15000), else ``None``."""
    lowered = text.lower().replace("，", ",").strip()
    if tenths := _YUAN_JIAO.match(lowered.replace(" ", "")):
        whole, jiao = parse_money(tenths[1]), tenths[2]
        digit = int(jiao) if jiao.isdigit() else DIGITS[jiao]
        return _whole(whole + digit / 10) if whole is not None else None
    cleaned = _CURRENCY.sub("", lowered)
    if not cleaned:
        return None
    multiplier = 1
    if cleaned[-1] in "wk" and cleaned[:-1]:
        multiplier = BIG_UNITS[cleaned[-1]]
        cleaned = cleaned[:-1]
    value = chinese_to_number(cleaned)
    if value is None:
        return None
    return _whole(value * multiplier)


def find_amounts(text: str) -> Iterator[tuple[int, int, int | float]]:
    """``(start, end, value)`` of every amount of money in normalised ``text``.

    A number with a currency word or a magnitude (万, 千) is money; a bare number of two
    or more digits is money unless what follows makes it a count, a date, a time or a
    measure (3个月, 2023年, 12个人, 300度) or it is a hotline (110). 一块 / 一蚊 alone
    are not money: in our messages they are "a piece" and "not a cent".
    """
    for match in _AMOUNT.finditer(text):
        kind = match.lastgroup
        start, end = match.span()
        surface = match.group()
        if kind in ("magnitude", "bare", "chinese") and _NOT_MONEY_AFTER.match(text[end:]):
            continue
        if kind in ("magnitude", "bare") and text[max(0, start - 1) : start] == "第":
            continue
        if kind == "magnitude" and (text[end : end + 1] == "分" or surface.startswith("百分")):
            continue
        if kind == "bare":
            digits = surface.rstrip("多")
            if digits in _HOTLINES:
                continue
            if (
                len(digits) == 4
                and 1950 <= int(digits.split(".")[0]) <= 2099
                and _YEAR_CONTEXT.search(text[max(0, start - 7) : start])
            ):
                continue
        if kind == "chinese" and re.match(r"一(?:块|蚊|元)(?!钱)", surface):
            continue
        if kind == "chinese" and text[end : end + 1] in "块钱" and surface.endswith("块"):
            continue  # 一块块 (piece by piece)
        value = parse_money(surface)
        if value is None or value <= 0:
            continue
        while end > start and text[end - 1].isspace():
            end -= 1
        yield start, end, value


_PEOPLE_COUNT = rf"(?:好)?(?:[{_CN}]*[一二两三四五六七八九十几][{_CN}]*|\d+)"
#: Nouns a count of people may end in. Relations (工友, 老乡) belong to the span in the
#: training data; occupations (工人, 骑手) do not.
_RELATION_NOUNS = "工友|老乡|股东|租客|同事|室友|朋友|亲戚|兄弟|姐妹|家属"
_OCCUPATION_NOUNS = (
    "工人|建筑工人|员工|骑手|司机|会员|业主|住户|村民|居民|快递员|外卖员|保安|学员|家长|学生|"
    "客户|租户|商户|师傅|阿姨|农民工|临时工|女工|男工|工人们|人员|会友|小伙伴"
)
_EN_NUMBER = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|"
    "forty|fifty|sixty|hundred|dozens?|several|a few"
)
_HEADCOUNT = re.compile(
    "|".join(
        [
            rf"(?P<people>{_PEOPLE_COUNT}(?:多|几)?(?:个|名|位)?(?:口人|人|户))(?!民|员|家)",
            rf"(?P<relation>{_PEOPLE_COUNT}(?:多|几)?(?:个|名|位)(?:{_RELATION_NOUNS}))",
            rf"(?P<occupation>{_PEOPLE_COUNT}(?:多|几)?(?:个|名|位))(?=(?:{_OCCUPATION_NOUNS}))",
            rf"(?P<english>(?:a group of |about |around |over |more than |almost )?"
            rf"(?:\d+|{_EN_NUMBER}) (?:of us|people|persons|person|workers|riders|drivers|"
            r"households|families|tenants|residents|partners|owners|employees|colleagues|"
            r"couriers|members)\b)",
        ]
    )
)
_EN_VALUES = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
              "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
              "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
              "hundred": 100, "dozen": 12, "dozens": 24, "several": 3, "a few": 2}  # fmt: skip


def parse_headcount(text: str) -> int | None:
    """The number of people in a head-count span (``"三十多个"`` → 30), else ``None``."""
    lowered = text.lower()
    if match := re.search(rf"\d+|{_EN_NUMBER}", lowered):
        word = match.group()
        return int(word) if word.isdigit() else _EN_VALUES.get(word)
    numeral = re.match(rf"(?:好)?[{_CN}多]+", lowered.replace("个", "").replace("口", ""))
    if not numeral:
        return None
    value = chinese_to_number(numeral.group())
    return int(value) if value is not None and value >= 1 else None


def find_headcounts(text: str) -> Iterator[tuple[int, int, int]]:
    """``(start, end, people)`` of every head count in normalised ``text``.

    一个人 is a head count only after "just me" (就我一个人, 只有我一个人): otherwise
    it is "alone" or "the same person" (我一个人住, 借给同一个人).
    """
    for match in _HEADCOUNT.finditer(text):
        start, end = match.span()
        before = text[max(0, start - 3) : start]
        if before.endswith(("同", "每", "哪", "某", "这", "那", "第", "上", "下", "个", "整")):
            continue
        value = parse_headcount(match.group())
        if value is None:
            continue
        if (
            value == 1
            and not re.search(r"(就|只有|只)我$", before)
            and not text[max(0, start - 5) : start].endswith(("only ", "just "))
        ):
            continue
        yield start, end, value
