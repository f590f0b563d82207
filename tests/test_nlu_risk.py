"""The risk rule layer, alone: positives in every kind and language, and false friends."""

from __future__ import annotations

import pytest

from nlu.risk import RiskRules, RiskRulesError, load_risk_rules


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
