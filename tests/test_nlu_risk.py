"""The risk rule layer: positives in every kind and language, and false friends.

The bulk of the cases are data (``tests/data/risk_cases.yml``): every danger row must be
flagged with its kind (recall 1.0), and the false-alarm rate over the look-alikes must
stay under a ceiling, both for the rules alone (``RiskRules.check``) and through the
trained engine (``parse_sync``), where the classifier's own doubt adds alarms.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nlu.interface import ParseResult, Risk
from nlu.risk import RiskRules, RiskRulesError, load_risk_rules
from nlu.training_data import read_training_data

CASES_FILE = Path(__file__).parent / "data" / "risk_cases.yml"
CASES: dict[str, list[dict[str, Any]]] = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
DANGER = CASES["danger"]
LOOKALIKES = CASES["lookalike"]
#: Look-alikes the rules alone may flag. Measured 0 of 128 on 2026-11-30 (15 of 128 =
#: 11.7 % with the rules of main; the second batch of cases, written after the rules were
#: changed, was measured before any rule was fitted to it: 1 of 40 flagged). 5 % leaves
#: room for a mediator's added pattern to catch a look-alike or two without hiding a
#: drift towards crying wolf (5 % is 6 of 128).
RULES_FALSE_ALARM_CEILING = 0.05
#: Through the engine, the classifier's doubt (``possible_emergency``, or ``emergency``
#: as the top intent) flags look-alikes the rules leave alone: 32 of 128 (25.0 %) with the
#: model trained from nlu/data/ on 2026-11-30, 42 of 128 (32.8 %) with the rules of main.
#: The ceiling guards against getting worse; discounting the classifier on a ``benign``
#: message (Risk["benign"], once wired) brings it to 7 of 128 (5.5 %). Both ceilings keep
#: a few messages of room: the model is retrained from nlu/data/, which changes.
ENGINE_FALSE_ALARM_CEILING = 0.30
BENIGN_VETO_FALSE_ALARM_CEILING = 0.10


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{i:03d}-{row.get('kind') or row.get('why')}" for i, row in enumerate(rows)]


def _engine_alarm(parse: ParseResult) -> bool:
    """What the dialogue engine acts on (bot.dialogue.engine._is_emergency)."""
    return parse["risk"]["flagged"] or parse["intent"]["name"] == "emergency"


def _rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


@pytest.fixture(scope="module")
def rules() -> RiskRules:
    return load_risk_rules()


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("他正在打我，快来", "violence_now"),
        ("老公拿着菜刀在砸门", "violence_now"),
        ("佢拎住把刀喺門口", "violence_now"),
        ("he is beating me right now", "violence_now"),
        ("他說要殺了我全家", "threat"),
        ("不还钱就打断你的腿", "threat"),
        ("he threatened to kill me", "threat"),
        ("我不想活了", "self_harm"),
        ("唔想活喇", "self_harm"),
        ("I want to kill myself", "self_harm"),
        ("工资要不到我就从楼顶跳下去", "self_harm"),
        ("他喝醉了就打孩子", "child_danger"),
        ("孩子不见了，找了一个小时", "child_danger"),
        ("my neighbour keeps beating his son", "child_danger"),
    ],
)
def test_flags(rules, text, kind):
    risk = rules.check(text)
    assert risk["flagged"] and kind in risk["kinds"], risk
    assert risk["matches"]


@pytest.mark.parametrize(
    "text",
    [
        "我要跟他打官司",
        "在工厂打工三年了",
        "给我打电话",
        "老板杀价杀得太狠",
        "气死我了",
        "热死了空调坏了",
        "打车回家",
        "this noise is killing me",
        "房东不退押金",
        "笑死我了",
        "欠条打好了",
        "I want to kill time before the meeting",
    ],
)
def test_false_friends_not_flagged(rules, text):
    assert rules.check(text)["flagged"] is False


def test_risk_at_end_of_long_story(rules):
    story = "我们是房租押金的纠纷，" * 300 + "他今天说要弄死我"
    assert rules.check(story)["kinds"] == ["threat"]


def test_bad_rules_file(tmp_path):
    path = tmp_path / "risk.yml"
    path.write_text("kinds:\n  threat:\n    - '(unclosed'\n", encoding="utf-8")
    with pytest.raises(RiskRulesError, match="threat"):
        RiskRules.from_file(path)


@pytest.mark.parametrize(
    "text",
    [
        "工地上有人拿钢管打我们的工友",
        "他爸拿着铁棍在楼下守着",
        "對面屋企的細路兩天沒吃飯,大人不見了,門鎖著",
        "she swallowed rat poison",
        "someone is dragging a little girl into a van",
        "he is trying to strangle her",
        "they set the warehouse on fire",
    ],
)
def test_more_danger_now_is_flagged(text: str) -> None:
    assert load_risk_rules().check(text)["flagged"], text


@pytest.mark.parametrize(
    "text",
    [
        "装修队用钢管搭脚手架",
        "孩子两天没去上学了",
        "the car was dragged away by the tow truck",
        "we drank tea with the landlord",
        "老板拿着合同等我签字",
        "my kid hasn't eaten lunch at school",
    ],
)
def test_everyday_words_are_not_flagged(text: str) -> None:
    assert not load_risk_rules().check(text)["flagged"], text


def test_classifier_doubt_flags_when_emergency_is_likely_enough(nlu, tmp_path) -> None:
    from nlu.engine import BuiltinEngine

    def engine(threshold: float | None) -> BuiltinEngine:
        rules = RiskRules({}, [], classifier_threshold=threshold)
        return BuiltinEngine(nlu.intent_model, nlu.entity_rules, nlu.config, rules)

    text = "楼上邻居装修太吵了"
    assert engine(None).parse_sync(text)["risk"]["flagged"] is False
    doubt = engine(1e-300).parse_sync(text)["risk"]
    assert doubt["flagged"] is True and doubt["kinds"] == ["possible_emergency"]
    assert engine(0.999).parse_sync(text)["risk"]["flagged"] is False
    bad = tmp_path / "risk.yml"
    bad.write_text("kinds: {x: [a]}\nclassifier_threshold: 7\n", encoding="utf-8")
    with pytest.raises(RiskRulesError, match="classifier_threshold"):
        RiskRules.from_file(bad)


def test_shipped_rules_use_the_classifier_threshold() -> None:
    threshold = load_risk_rules().classifier_threshold
    assert threshold is not None and 0 < threshold < 0.5


def test_case_file_is_big_and_varied_enough() -> None:
    assert len(DANGER) >= 70 and len(LOOKALIKES) >= 70
    kinds = {row["kind"] for row in DANGER}
    assert kinds == {"violence_now", "threat", "self_harm", "child_danger", "group_conflict"}
    assert {row["why"] for row in LOOKALIKES} >= {"game", "past", "idiom", "figure", "urgency"}
    texts = [row["text"] for row in DANGER + LOOKALIKES]
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize("row", DANGER, ids=_ids(DANGER))
def test_every_danger_case_is_flagged_with_its_kind(rules: RiskRules, row: dict[str, Any]) -> None:
    risk = rules.check(row["text"])
    assert risk["flagged"] is True, risk
    assert row["kind"] in risk["kinds"], risk
    assert risk["matches"] and all(m.strip() for m in risk["matches"])


def test_false_alarm_rate_of_the_rules_over_lookalikes(rules: RiskRules) -> None:
    flagged = {row["text"]: rules.check(row["text"]) for row in LOOKALIKES}
    alarms = {text: risk["matches"] for text, risk in flagged.items() if risk["flagged"]}
    rate = len(alarms) / len(LOOKALIKES)
    print(f"rules: {len(alarms)}/{len(LOOKALIKES)} look-alikes flagged ({rate:.1%})")
    assert rate <= RULES_FALSE_ALARM_CEILING, alarms


@pytest.mark.parametrize(
    "row", [r for r in LOOKALIKES if r.get("urgency") or r.get("past")], ids=lambda r: r["text"]
)
def test_urgency_and_past_are_signals_not_flags(rules: RiskRules, row: dict[str, Any]) -> None:
    risk = rules.check(row["text"])
    assert risk["flagged"] is False and risk["kinds"] == [], risk
    assert risk.get("urgency", False) is bool(row.get("urgency")), risk
    assert risk.get("past", False) is bool(row.get("past")), risk
    if row.get("past"):
        assert risk["past_matches"] and "past" in risk.get("benign", [])


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        # the issue's own words
        ("把我的脸毁容", "threat"),
        ("几十个工人堵门要打起来了", "group_conflict"),
        # "又在打" at night with no game named: ambiguous, so it flags
        ("他们今晚又在打,已经凌晨两点了", "violence_now"),
        # urgency plus danger is danger
        ("快点来人,他拿着刀", "violence_now"),
        ("快点来,他又开始打了", "violence_now"),
        # a past marker without the event being over, or with danger now, still flags
        ("去年他家暴过我,我想离婚", "violence_now"),
        ("以前他打过我,离婚了,可是最近他又来找我,我很害怕", "violence_now"),
        ("他以前打过我", "violence_now"),
        # past events never excuse threats, self-harm or a child in danger
        ("去年离婚了,他现在发短信说要弄死我", "threat"),
        ("离婚三年了,以前的事不提了,我现在不想活了", "self_harm"),
        # a game named does not excuse a strong danger word
        ("他们打麻将输了钱,拿刀砍人了", "violence_now"),
        ("打麻将吵起来,他说你给我等着", "threat"),
        # an emoji knife (was an unquoted YAML mapping, never a pattern)
        ("他在门口 🔪", "violence_now"),
    ],
)
def test_decided_borderlines(rules: RiskRules, text: str, kind: str) -> None:
    risk = rules.check(text)
    assert risk["flagged"] and kind in risk["kinds"], risk


@pytest.mark.parametrize(
    ("text", "reasons"),
    [
        ("他们今晚又在打,已经凌晨两点了,麻将声吵得我睡不着", ["game"]),
        ("我已经死心了,只想把押金拿回来", ["idiom"]),
        ("你们快点来人", ["urgency"]),
        ("以前他家暴过我,早就离婚了,现在想问孩子抚养费能不能涨", ["past"]),
        # a danger-adjacent word vetoes the benign reading
        ("打麻将输了钱,他说今晚过来找我算账", None),
        ("快点来人,我好害怕", None),
        # everyday 打 is no harmless reading of anything
        ("我在工厂打工三年了", None),
    ],
)
def test_benign_reasons(rules: RiskRules, text: str, reasons: list[str] | None) -> None:
    risk = rules.check(text)
    assert risk["flagged"] is False
    assert risk.get("benign") == reasons, risk


def test_no_signal_keys_on_a_plain_message(rules: RiskRules) -> None:
    # Backward compatible: the optional keys appear only when true.
    assert rules.check("房东不退押金") == Risk(flagged=False, kinds=[], matches=[])


def test_long_text_is_scanned_fast(rules: RiskRules) -> None:
    # CPU time, not wall time: a loaded build machine must not fail it (~0.1 s measured).
    for text in ("字" * 20000, "a " * 10000, "他打我" * 6000):
        started = time.process_time()
        rules.check(text)
        assert time.process_time() - started < 0.5


def test_unquoted_mapping_in_the_rules_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "risk.yml"
    path.write_text("kinds:\n  threat:\n    - :a:|:b:\n", encoding="utf-8")
    with pytest.raises(RiskRulesError, match="quote"):
        RiskRules.from_file(path)


def test_bad_weak_rule_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "risk.yml"
    path.write_text("kinds: {}\nweak:\n  - kind: threat\n    patterns: [x]\n", encoding="utf-8")
    with pytest.raises(RiskRulesError, match="unless"):
        RiskRules.from_file(path)


def test_through_the_engine_recall_is_one_and_false_alarms_are_measured(nlu) -> None:
    danger = [nlu.parse_sync(row["text"]) for row in DANGER]
    missed = [p["text"] for p in danger if not _engine_alarm(p)]
    assert missed == []
    wrong_kind = [
        (row["text"], p["risk"]["kinds"])
        for row, p in zip(DANGER, danger, strict=True)
        if row["kind"] not in p["risk"]["kinds"]
    ]
    assert wrong_kind == []
    parses = [nlu.parse_sync(row["text"]) for row in LOOKALIKES]
    alarms = [_engine_alarm(p) for p in parses]
    vetoed = [
        alarm and not load_risk_rules().check(p["text"]).get("benign")
        for alarm, p in zip(alarms, parses, strict=True)
    ]
    print(
        f"engine: {sum(alarms)}/{len(alarms)} look-alikes alarm ({_rate(alarms):.1%}); "
        f"discounting the classifier on benign ones: {sum(vetoed)} ({_rate(vetoed):.1%})"
    )
    assert _rate(alarms) <= ENGINE_FALSE_ALARM_CEILING
    assert _rate(vetoed) <= BENIGN_VETO_FALSE_ALARM_CEILING


def test_benign_veto_never_silences_a_held_out_emergency(nlu) -> None:
    """The veto must cost no recall on the held-out file (it is never tuned on)."""

    held_out = Path(__file__).parent / "data" / "nlu_test.yml"
    rules = load_risk_rules()
    emergencies = [
        e.text for e in read_training_data([held_out]).examples if e.intent == "emergency"
    ]
    assert len(emergencies) >= 20
    for text in emergencies:
        parse = nlu.parse_sync(text)
        assert rules.check(text)["flagged"] or (
            _engine_alarm(parse) and not rules.check(text).get("benign")
        ), text
