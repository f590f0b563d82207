"""Pure pieces of the NLU engine: Rasa-format reading, normalisation, numbers, dates."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from nlu.dates import parse_date
from nlu.normalise import normalise
from nlu.numbers import parse_money
from nlu.training_data import TrainingDataError, parse_annotated, read_file

TODAY = date(2026, 11, 25)


def test_annotations_plain_json_and_value_forms():
    text, entities, synonyms = parse_annotated(
        '在[新安](location)[灵芝社区]{"entity": "location", "value": "灵芝"}欠我[8000元](amount)'
    )
    assert text == "在新安灵芝社区欠我8000元"
    assert [(e.entity, e.value, text[e.start : e.end]) for e in entities] == [
        ("location", "新安", "新安"),
        ("location", "灵芝", "灵芝社区"),
        ("amount", "8000元", "8000元"),
    ]
    assert synonyms == [("灵芝社区", "灵芝")]
    _, entities, _ = parse_annotated("跑[美团众包](platform:美团)的")
    assert entities[0].value == "美团"


@pytest.mark.parametrize(
    "bad", ["欠我[8000元(amount)", "欠我[8000元](amount", "欠我8000元](amount)"]
)
def test_broken_annotation_is_refused(bad):
    with pytest.raises(ValueError, match="annotation"):
        parse_annotated(bad)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "nlu.yml"
    path.write_text(body, encoding="utf-8")
    return path


def test_reads_sections(tmp_path):
    data = read_file(
        write(
            tmp_path,
            'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - 你好\n    - hi\n'
            "- synonym: 美团\n  examples: |\n    - meituan\n"
            "- regex: phone\n  examples: |\n    - 1[3-9]\\d{9}\n"
            "- lookup: location\n  examples: |\n    - 西乡\n",
        )
    )
    assert [(e.text, e.intent) for e in data.examples] == [("你好", "greet"), ("hi", "greet")]
    assert data.synonyms == {"meituan": "美团"}
    assert data.regexes == {"phone": [r"1[3-9]\d{9}"]}
    assert data.lookups == {"location": ["西乡"]}


def test_errors_name_file_and_line(tmp_path):
    path = write(
        tmp_path,
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - ok\n'
        "    - 欠我[8000元(amount)\n",
    )
    with pytest.raises(TrainingDataError) as caught:
        read_file(path)
    assert caught.value.line == 6 and str(path) in str(caught.value)
    with pytest.raises(TrainingDataError, match="no 'examples'") as caught:
        read_file(write(tmp_path, 'version: "3.1"\nnlu:\n- intent: greet\n'))
    assert caught.value.line == 3
    with pytest.raises(TrainingDataError, match="YAML error") as caught:
        read_file(write(tmp_path, "nlu:\n- intent: greet\n  examples: [unclosed\n"))
    assert caught.value.line is not None


def test_project_training_data_meets_counts():
    import re

    from nlu.training_data import read_training_data

    data = read_training_data([Path(__file__).parent.parent / "nlu" / "data"])
    for intent in data.intents:
        texts = [e.text for e in data.examples if e.intent == intent]
        english = [t for t in texts if not re.search(r"[\u4e00-\u9fff]", t)]
        chinese = len(texts) - len(english)
        assert chinese >= (60 if intent.startswith("dispute_") else 25), intent
        assert len(english) >= 20, intent


def test_normalise_keeps_offsets():
    original = "我喺西鄉，欠我８０００元😭"
    result = normalise(original)
    assert result.text.startswith("我喺西乡,欠我8000元")
    start = result.text.index("8000元")
    s, e = result.span(start, start + 5)
    assert original[s:e] == "８０００元"


def test_normalise_odd_input():
    assert normalise("").text == ""
    assert normalise("  \t\n ").text == ""
    assert normalise("a\x00\x07b\ufeff").text == "a b"
    assert normalise("👍").text == ":thumbs_up:"
    assert len(normalise("字" * 50000).text) == 20000


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("三千块", 3000),
        ("8000元", 8000),
        ("1.5万", 15000),
        ("八万八", 88000),
        ("两千五", 2500),
        ("¥300", 300),
        ("一万二千元", 12000),
        ("5k", 5000),
        ("12,000元", 12000),
        ("十五块", 15),
        ("两千多", 2000),
        ("三块五", 3.5),
        ("四五万", 40000),
        ("RMB 7000", 7000),
    ],
)
def test_money(text, value):
    assert parse_money(text) == value


def test_money_rejects_words():
    assert parse_money("abc") is None


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2024年3月5日", "2024-03-05"),
        ("2024/03/05", "2024-03-05"),
        ("2024年3月", "2024-03"),
        ("3月5号", "2026-03-05"),
        ("12月1日", "2025-12-01"),
        ("上个月5号", "2026-10-05"),
        ("昨天", "2026-11-24"),
        ("二〇二四年三月五日", "2024-03-05"),
        ("13月40日", None),
    ],
)
def test_dates(text, iso):
    assert parse_date(text, TODAY) == iso


# --- entity grammars: money, dates, durations, head counts, the other party ---------

from nlu.dates import find_dates, find_durations, parse_duration  # noqa: E402
from nlu.entities import EntityExtractor, build_rules  # noqa: E402
from nlu.training_data import TrainingData  # noqa: E402


def extract(text: str) -> list[dict]:
    """Entities from the engine's own rules (no training data, no model)."""
    return EntityExtractor(build_rules(TrainingData())).extract(normalise(text), text)


def spans(text: str, entity: str) -> list[tuple[str, object]]:
    found = extract(text)
    return [(text[e["start"] : e["end"]], e["value"]) for e in found if e["entity"] == entity]


@pytest.mark.parametrize(
    ("text", "surface", "value"),
    [
        ("押金三千块不退", "三千块", 3000),
        ("老板欠我8000元工资", "8000元", 8000),
        ("差不多1.5万", "1.5万", 15000),
        ("彩礼八万八不肯退", "八万八", 88000),
        ("my friend borrowed 3k", "3k", 3000),
        ("付了¥500定金", "¥500", 500),
        ("医药费花了两千多", "两千多", 2000),
        ("物业费三块五一平", "三块五", 3.5),
        ("要我赔5000", "5000", 5000),
        ("the owner owe me RMB 7000", "RMB 7000", 7000),
        ("借出去十几万", "十几万", 100000),
        ("周边房价都四五万", "四五万", 40000),
    ],
)
def test_amount_forms(text, surface, value):
    assert spans(text, "amount") == [(surface, value)]


@pytest.mark.parametrize(
    "text", ["墙皮一块一块往下掉", "我们12个人", "2023年12月离职", "做了三个月", "打110报警"]
)
def test_not_money(text):
    assert spans(text, "amount") == []


@pytest.mark.parametrize(
    ("text", "surface", "iso"),
    [
        ("2026年3月5日出的事", "2026年3月5日", "2026-03-05"),
        ("3月5号那天", "3月5号", "2026-03-05"),
        ("上个月被辞退了", "上个月", "2026-10"),
        ("去年十月借的", "去年十月", "2025-10"),
        ("去年开始就没给过", "去年", "2025"),
        ("it happened yesterday", "yesterday", "2026-11-24"),
        ("昨天晚上被打了", "昨天晚上", "2026-11-24"),
        ("上周五被人打了", "上周五", "2026-11-20"),
        ("上周提交的", "上周", "2026-W47"),
        ("on march 5", "march 5", "2026-03-05"),
    ],
)
def test_date_forms(text, surface, iso):
    found = [(text[s:e], v) for s, e, v in find_dates(normalise(text).text, TODAY)]
    assert found == [(surface, iso)]


@pytest.mark.parametrize(
    ("text", "surface", "iso", "value", "unit"),
    [
        ("拖了三个月", "三个月", "P3M", 3, "month"),
        ("大概半年了", "半年", "P6M", 6, "month"),
        ("做了两年多", "两年多", "P2Y", 2, "year"),
        ("冷战一个多月了", "一个多月", "P1M", 1, "month"),
        ("每天在线十二个小时", "十二个小时", "PT12H", 12, "hour"),
        ("still no reply after 3 days", "3 days", "P3D", 3, "day"),
        ("欠了三個月", "三個月", "P3M", 3, "month"),
    ],
)
def test_duration_forms(text, surface, iso, value, unit):
    entities = [e for e in extract(text) if e["entity"] == "duration"]
    assert [(text[e["start"] : e["end"]], e["value"]) for e in entities] == [(surface, iso)]
    info = entities[0]["additional_info"]
    assert (info["value"], info["unit"]) == (value, unit)


def test_duration_is_not_a_rate_or_a_date():
    assert list(find_durations("每个月1500块")) == []
    assert list(find_durations("说好一个月1500块")) == []
    assert list(find_durations("前几天登记的")) == []
    assert parse_duration("半个月") == (
        "P15D",
        {"value": 15, "unit": "day", "normalized": {"value": 1296000, "unit": "second"}},
    )


@pytest.mark.parametrize(
    ("text", "surface", "people"),
    [
        ("我们二十多个工友都没拿到工资", "二十多个工友", 20),
        ("我们十几个人都没拿到", "十几个人", 10),
        ("我们5个人一起去的", "5个人", 5),
        ("我们三十多个建筑工人", "三十多个", 30),
        ("我们这栋楼40多户租客", "40多户", 40),
        ("就我一个人", "一个人", 1),
        ("We are about 20 riders at the same station", "about 20 riders", 20),
    ],
)
def test_headcount_forms(text, surface, people):
    assert spans(text, "headcount") == [(surface, people)]


def test_one_person_is_usually_not_a_headcount():
    assert spans("借给同一个人", "headcount") == []
    assert spans("我一个人住", "headcount") == []


@pytest.mark.parametrize(
    ("text", "surface"),
    [
        ("房东不退押金", "房东"),
        ("二房东跑路了", "二房东"),
        ("老板拖欠工资", "老板"),
        ("物业不处理", "物业"),
        ("宏达电子厂突然说要搬厂", "宏达电子厂"),
        ("公司叫深圳市宏达五金制品有限公司", "深圳市宏达五金制品有限公司"),
        ("包工头跑了", "包工头"),
        ("房东陈姐不退钱", "陈姐"),
        ("对方叫李建国", "李建国"),
        ("landlord won't return my deposit", "landlord"),
        ("my boss Mr Zhang", "Mr Zhang"),
    ],
)
def test_counterparty_forms(text, surface):
    assert surface in [s for s, _ in spans(text, "counterparty")]


def test_counterparty_beside_platform():
    entities = EntityExtractor(build_rules(TrainingData(lookups={"platform": ["美团"]}))).extract(
        normalise("美团站长扣钱"), "美团站长扣钱"
    )
    assert [(e["entity"], e["start"], e["end"]) for e in entities] == [
        ("platform", 0, 2),
        ("counterparty", 2, 4),
    ]


def test_fee_is_not_the_management_company():
    assert spans("物业费太贵了", "counterparty") == []


def test_offsets_point_into_traditional_and_full_width_text():
    text = "房東欠我８０００元，拖了三個月，我們１２個人"
    by_type = {e["entity"]: e for e in extract(text)}
    assert text[by_type["amount"]["start"] : by_type["amount"]["end"]] == "８０００元"
    assert by_type["amount"]["value"] == 8000 and isinstance(by_type["amount"]["value"], int)
    assert text[by_type["duration"]["start"] : by_type["duration"]["end"]] == "三個月"
    assert text[by_type["headcount"]["start"] : by_type["headcount"]["end"]] == "１２個人"
    assert by_type["headcount"]["value"] == 12
    party = by_type["counterparty"]
    assert text[party["start"] : party["end"]] == "房東"
    assert all(e["extractor"] == "RegexEntityExtractor" for e in by_type.values())


def test_counterparty_marks_role_words_and_names(nlu) -> None:
    parse = nlu.parse_sync("老板不发工资,宏达电子厂的人也不管")
    kinds = {
        e["value"]: e.get("additional_info", {}).get("kind")
        for e in parse["entities"]
        if e["entity"] == "counterparty"
    }
    assert kinds.get("老板") == "role"
