"""The first-character index of the risk rules must never hide a match.

``nlu.regex_firsts`` lets the rules skip patterns that cannot start at any character of
a message; a set that is too small would be a missed emergency. So the promise is
checked on every rule against every message we have (training data, both held-out
files, the risk cases) and on patterns written to trip it, and the indexed rules must
give exactly the verdicts of the unindexed ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from nlu.normalise import normalise_text
from nlu.regex_firsts import first_characters
from nlu.risk import RULES_FILE, load_risk_rules
from nlu.training_data import read_training_data

ROOT = Path(__file__).resolve().parent.parent
RISK_CASES = ROOT / "tests/data/risk_cases.yml"


def _all_texts() -> list[str]:
    files = [ROOT / "tests/data/nlu_test.yml", ROOT / "tests/data/nlu_test_questions.yml"]
    texts = [e.text for e in read_training_data([ROOT / "nlu/data", *files]).examples]
    cases = yaml.safe_load(RISK_CASES.read_text(encoding="utf-8"))
    texts += [row["text"] for rows in cases.values() for row in rows]
    return [normalise_text(t) for t in texts]


def _rule_patterns() -> list[str]:
    raw = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    patterns = [str(p) for values in raw["kinds"].values() for p in values]
    patterns += [str(p) for entry in raw.get("weak") or [] for p in entry["patterns"]]
    return patterns


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("杀了?你", {"杀"}),
        ("(?:拿|持)刀", {"拿", "持"}),
        ("(?<!不)打我", {"打"}),  # a look-behind consumes nothing
        ("[砍捅]死", {"砍", "捅"}),
        ("(?:要)?跳楼", {"要", "跳"}),  # an optional start adds what follows
        ("a{0,2}b", {"a", "b"}),
        (r"\bkill\b", {"k"}),
    ],
)
def test_first_characters_of_simple_patterns(pattern: str, expected: set[str]) -> None:
    assert first_characters(pattern) == frozenset(expected)


@pytest.mark.parametrize(
    "pattern",
    [r"\s*救命", ".杀", "[^a]b", "(?i)kill", "(?:打)?", "x*", r"(a)?\1", "[一-龥]死"],
)
def test_unknown_starts_are_searched_always(pattern: str) -> None:
    assert first_characters(pattern) is None


def test_every_rule_match_starts_at_an_indexed_character() -> None:
    texts = _all_texts()
    checked = 0
    for pattern in _rule_patterns():
        firsts = first_characters(pattern)
        if firsts is None:
            continue
        regex = re.compile(pattern)
        for text in texts:
            for match in regex.finditer(text):
                if match.end() > match.start():
                    assert text[match.start()] in firsts, (pattern, text)
                    checked += 1
    assert checked > 500  # the rules do match the messages: the check checked something


def test_indexed_rules_give_the_verdicts_of_a_full_scan() -> None:
    rules = load_risk_rules()
    texts = _all_texts()
    indexed = [rules.check_normalised(t) for t in texts]
    rules._by_first = {}  # every pattern unindexed: the plain scan over all rules
    rules._unindexed = tuple(range(len(rules._flat)))
    plain = [rules.check_normalised(t) for t in texts]
    assert indexed == plain
    assert sum(1 for r in plain if r["flagged"]) > 100
