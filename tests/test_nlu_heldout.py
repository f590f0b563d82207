"""Regression guard: the model trained from nlu/data on both held-out files (issue 11).

Not a tuning target: the bars are what the issue requires, and a change to the training
data or the engine that falls below them fails ``make test``.

- tests/data/nlu_test.yml, our own held-out file: macro-F1 ≥ 0.95, every emergency
  caught (classifier or rules), false alarms ≤ 2 %.
- tests/data/nlu_test_questions.yml, written apart from the training data in the
  residents' question register: macro-F1 ≥ 0.85, referral F1 ≥ 0.85, every emergency
  caught, false alarms ≤ 2 %. Skipped only while the file is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.evaluation import held_out_summary, predict
from nlu.training_data import read_training_data

ROOT = Path(__file__).resolve().parent.parent
OWN = ROOT / "tests" / "data" / "nlu_test.yml"
QUESTIONS = ROOT / "tests" / "data" / "nlu_test_questions.yml"


def _summary(nlu, path: Path) -> dict:
    examples = read_training_data([path]).examples
    return held_out_summary(predict(nlu, examples))


def test_own_held_out_file(nlu):
    summary = _summary(nlu, OWN)
    assert summary["macro_f1"] >= 0.95, summary
    assert summary["emergency_recall_combined"] == 1.0, summary
    assert summary["false_alarm_rate"] <= 0.02, summary


@pytest.mark.skipif(not QUESTIONS.is_file(), reason=f"{QUESTIONS.name} not written yet")
def test_question_register_held_out_file(nlu):
    summary = _summary(nlu, QUESTIONS)
    assert summary["macro_f1"] >= 0.85, summary
    assert summary["referral_f1"] is not None and summary["referral_f1"] >= 0.85, summary
    assert summary["emergency_recall_combined"] == 1.0, summary
    assert summary["false_alarm_rate"] <= 0.02, summary
