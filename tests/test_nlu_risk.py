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
