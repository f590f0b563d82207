"""Guards for the question-register held-out file (issue 11, part 4).

`tests/data/nlu_test_questions.yml` measures whether the language model generalises to
the way residents really write. It is only worth anything while it stays held out and
complete, so these tests check its shape (the minimum size per label the issue asks
for, no duplicates, no entity markup) and that no line of it has leaked into the
training data or the other held-out file. They never train or evaluate a model.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import pytest

from nlu.training_data import TrainingData, read_training_data

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "tests" / "data" / "nlu_test_questions.yml"

DISPUTE_KINDS = (
    "dispute_family",
    "dispute_neighbor",
    "dispute_labor",
    "dispute_gig_work",
    "dispute_tenancy",
    "dispute_property_mgmt",
    "dispute_consumer",
    "dispute_traffic",
    "dispute_medical",
    "dispute_debt",
    "dispute_contract",
    "dispute_construction",
    "dispute_land_housing",
    "dispute_injury",
    "dispute_environment",
    "dispute_other",
)

#: Minimum examples per label (the brief asks ≥ 22 per kind; the issue ≥ 20 / ≥ 60).
MINIMUM = {
    **{kind: 22 for kind in DISPUTE_KINDS},
    "referral": 65,
    "emergency": 20,
    "greet": 15,
    "out_of_scope": 15,
}

#: Lines shorter than this (bare greetings, "hi") may legitimately appear anywhere.
LEAK_MIN_CHARS = 8


def _normalise(text: str) -> str:
    return "".join(text.split()).casefold()


@pytest.fixture(scope="module")
def questions() -> TrainingData:
    return read_training_data([QUESTIONS])


def test_only_the_expected_labels(questions: TrainingData) -> None:
    assert set(questions.intents) == set(MINIMUM)


@pytest.mark.parametrize(("intent", "minimum"), sorted(MINIMUM.items()))
def test_each_label_has_enough_examples(questions: TrainingData, intent: str, minimum: int) -> None:
    count = sum(1 for example in questions.examples if example.intent == intent)
    assert count >= minimum


def test_no_duplicates_and_no_entity_markup(questions: TrainingData) -> None:
    counts = Counter(_normalise(example.text) for example in questions.examples)
    assert [text for text, n in counts.items() if n > 1] == []
    assert all(not example.entities for example in questions.examples)


def test_messages_are_resident_length(questions: TrainingData) -> None:
    """Real messages are 20–60 characters at the median, some over 100."""
    lengths = [
        len(example.text)
        for example in questions.examples
        if example.intent.startswith("dispute_") or example.intent == "referral"
    ]
    assert 20 <= statistics.median(lengths) <= 60
    assert sum(length >= 100 for length in lengths) >= 16


@pytest.mark.parametrize("other", ["nlu/data", "tests/data/nlu_test.yml"])
def test_no_line_leaked_into_other_data(questions: TrainingData, other: str) -> None:
    """A held-out line found in training data (or the other test file) is not held out.

    The failure names only this file's lines, so the check can run without anyone
    reading the training examples.
    """
    theirs = {_normalise(example.text) for example in read_training_data([ROOT / other]).examples}
    leaked = [
        example.text
        for example in questions.examples
        if len(example.text) >= LEAK_MIN_CHARS and _normalise(example.text) in theirs
    ]
    assert leaked == []
