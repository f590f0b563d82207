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
