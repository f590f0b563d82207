"""The evaluation gate refuses a model trained on wrong labels and names what fell."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nlu.config import load_config
from nlu.engine import train_engine
from nlu.gate import DataSet, compare, failed_rules
from nlu.training_data import read_training_data

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def held_out() -> list[DataSet]:
    return [
        DataSet("nlu_test.yml", read_training_data([ROOT / "tests/data/nlu_test.yml"]).examples)
    ]


def test_gate_refuses_wrong_labels_and_names_the_intents(nlu, held_out) -> None:
    data = read_training_data([ROOT / "nlu" / "data"])
    # Deliberately wrong: every tenancy example labelled as a debt.
    data.examples = [
        replace(e, intent="dispute_debt") if e.intent == "dispute_tenancy" else e
        for e in data.examples
    ]
    wrong = train_engine(data, load_config(ROOT / "config.yml"))
    result = compare(nlu.parse_sync, wrong.parse_sync, held_out)
    assert result["passed"] is False
    assert "dispute_tenancy" in result["fell"]
    report = result["datasets"][0]
    assert any(f["rule"] == "macro_f1" for f in report["failures"])
    row = next(r for r in report["per_intent"] if r["intent"] == "dispute_tenancy")
    assert row["active"] > 0.8 and row["candidate"] < row["active"] - 0.05
    assert any(c["gold"] == "dispute_tenancy" and c["broken"] for c in report["changed"])
    assert any("dispute_tenancy" in reason for reason in failed_rules(result))


def test_gate_passes_the_same_model_and_checks_emergency_recall(nlu, held_out) -> None:
    same = compare(nlu.parse_sync, nlu.parse_sync, held_out)
    assert same["passed"] is True and same["fell"] == []
    assert same["datasets"][0]["changed_total"] == 0

    def deaf(text: str):
        parse = dict(nlu.parse_sync(text))
        if parse["intent"]["name"] == "emergency":
            parse["intent"] = {"name": "dispute_family", "confidence": 0.9}
        parse["risk"] = {"flagged": False, "kinds": [], "matches": []}
        return parse

    result = compare(nlu.parse_sync, deaf, held_out)
    assert result["passed"] is False
    rules = {f["rule"] for f in result["datasets"][0]["failures"]}
    assert "emergency_recall" in rules


def test_empty_holdout_slice_is_skipped(nlu) -> None:
    result = compare(nlu.parse_sync, nlu.parse_sync, [DataSet("holdout_slice", [])])
    assert result["passed"] is True and result["datasets"][0]["skipped"] is True
