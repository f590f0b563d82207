"""The evaluation gate: may a candidate model replace the active one?

Pure: two engines and labelled data sets in, a JSON-able comparison out. On *every*
data set (the held-out files in ``tests/data/`` and the holdout slice of labelled real
messages) the candidate must:

- not lose more than :data:`MAX_MACRO_F1_DROP` of macro-F1 against the active model;
- not lose more than :data:`MAX_KIND_F1_DROP` of F1 on any dispute kind;
- keep emergency recall (classifier *or* rules) at 1.0.

The comparison keeps, per data set, each intent's F1 side by side and the messages
whose answer changed, so an administrator sees *why* a gate failed before deciding to
override it with a written reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nlu.evaluation import Predictions, intent_report, risk_report
from nlu.interface import ParseResult
from nlu.training_data import Example

MAX_MACRO_F1_DROP = 0.005
MAX_KIND_F1_DROP = 0.05
#: Changed answers kept per data set (a page shows them; the rest is counted).
MAX_CHANGED = 200
DISPUTE_PREFIX = "dispute_"

Parser = Callable[[str], ParseResult]


@dataclass(frozen=True, slots=True)
class DataSet:
    name: str
    examples: Sequence[Example]


def _predict(parse: Parser, examples: Sequence[Example]) -> Predictions:
    result = Predictions()
    result.extend(examples, [parse(example.text) for example in examples])
    return result


def _f1s(report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    return {
        name: {"f1": round(float(row["f1-score"]), 4), "support": int(row["support"])}
        for name, row in report.items()
        if isinstance(row, dict) and name not in ("macro avg", "weighted avg")
    }


def compare_on(active: Parser, candidate: Parser, data: DataSet) -> dict[str, Any]:
    """One data set: metrics of both models, per-intent F1, changed answers, failures."""
    if not data.examples:
        return {"name": data.name, "messages": 0, "passed": True, "failures": [], "skipped": True}
    before = _predict(active, data.examples)
    after = _predict(candidate, data.examples)
    report_before, report_after = intent_report(before), intent_report(after)
    risk_after = risk_report(after)
    risk_before = risk_report(before)
    f1_before, f1_after = _f1s(report_before), _f1s(report_after)
    macro_before = round(float(report_before["macro avg"]["f1-score"]), 4)
    macro_after = round(float(report_after["macro avg"]["f1-score"]), 4)
    failures: list[dict[str, Any]] = []
    fell: list[str] = []
    if macro_after < macro_before - MAX_MACRO_F1_DROP:
        failures.append({"rule": "macro_f1", "before": macro_before, "after": macro_after})
    intents = sorted(set(f1_before) | set(f1_after))
    per_intent = []
    for intent in intents:
        old = f1_before.get(intent, {"f1": 0.0, "support": 0})
        new = f1_after.get(intent, {"f1": 0.0, "support": 0})
        delta = round(new["f1"] - old["f1"], 4)
        per_intent.append(
            {
                "intent": intent,
                "active": old["f1"],
                "candidate": new["f1"],
                "delta": delta,
                "support": max(old["support"], new["support"]),
            }
        )
        if intent.startswith(DISPUTE_PREFIX) and delta < -MAX_KIND_F1_DROP:
            fell.append(intent)
            failures.append(
                {"rule": "kind_f1", "intent": intent, "before": old["f1"], "after": new["f1"]}
            )
    recall = risk_after["emergency_recall_combined"]
    if recall is not None and recall < 1.0:
        failures.append(
            {
                "rule": "emergency_recall",
                "after": recall,
                "missed": risk_after["missed_emergencies"][:20],
            }
        )
    changed = []
    for example, old_parse, new_parse in zip(
        data.examples, before.parses, after.parses, strict=True
    ):
        old_name, new_name = old_parse["intent"]["name"], new_parse["intent"]["name"]
        if old_name != new_name:
            changed.append(
                {
                    "text": example.text,
                    "gold": example.intent,
                    "active": old_name,
                    "candidate": new_name,
                    "fixed": new_name == example.intent,
                    "broken": old_name == example.intent,
                }
            )
    return {
        "name": data.name,
        "messages": len(data.examples),
        "macro_f1": {"active": macro_before, "candidate": macro_after},
        "accuracy": {
            "active": round(float(report_before["accuracy"]), 4),
            "candidate": round(float(report_after["accuracy"]), 4),
        },
        "emergency_recall": {
            "active": risk_before["emergency_recall_combined"],
            "candidate": recall,
        },
        "per_intent": per_intent,
        "fell": fell,
        "changed": changed[:MAX_CHANGED],
        "changed_total": len(changed),
        "failures": failures,
        "passed": not failures,
    }


def compare(active: Parser, candidate: Parser, datasets: Sequence[DataSet]) -> dict[str, Any]:
    """The gate's verdict over every data set (stored with the model as JSON)."""
    results = [compare_on(active, candidate, data) for data in datasets]
    fell = sorted({intent for result in results for intent in result.get("fell", [])})
    return {
        "passed": all(result["passed"] for result in results),
        "fell": fell,
        "rules": {
            "max_macro_f1_drop": MAX_MACRO_F1_DROP,
            "max_kind_f1_drop": MAX_KIND_F1_DROP,
            "emergency_recall": 1.0,
        },
        "datasets": results,
    }


def failed_rules(result: Mapping[str, Any]) -> list[str]:
    """Short, readable reasons of a failed gate (``dataset: rule intent``)."""
    reasons = []
    for data in result.get("datasets", []):
        for failure in data.get("failures", []):
            what = failure["rule"] + (f" {failure['intent']}" if "intent" in failure else "")
            before = failure.get("before")
            shown = (
                f"{before} → {failure['after']}" if before is not None else f"{failure['after']}"
            )
            reasons.append(f"{data['name']}: {what} {shown}")
    return reasons
