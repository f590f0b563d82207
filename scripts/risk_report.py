#!/usr/bin/env python3
"""How well the risk safety net catches danger, and how often it cries wolf.

Why: every change to ``nlu/rules/risk.yml`` trades missed emergencies (which can cost a
life) against false alarms (which cost a mediator a look and, during mediation, mark a
case urgent). This prints both, for the rules alone and for what the bot acts on
(rules, the classifier's doubt ``possible_emergency``, and an ``emergency`` intent), and
what it would act on if a classifier-only alarm were discounted when the rules read the
message as harmless (``Risk["benign"]``), on any number of files:

* Rasa NLU YAML (``tests/data/nlu_test.yml``): rows of intent ``emergency`` are danger,
  every other row is not;
* the risk case file ``tests/data/risk_cases.yml`` (``danger:`` rows with a ``kind``,
  ``lookalike:`` rows that must stay quiet): the kind is checked too.

Usage::

    .venv/bin/python scripts/risk_report.py tests/data/nlu_test.yml tests/data/risk_cases.yml
    .venv/bin/python scripts/risk_report.py --rules old_risk.yml FILE...   # compare rules
    .venv/bin/python scripts/risk_report.py --model models FILE...     # + a trained model
    .venv/bin/python scripts/risk_report.py --train FILE...            # + train one now
    .venv/bin/python scripts/risk_report.py --choose-threshold         # 5-fold CV, below
    .venv/bin/python scripts/risk_report.py -v FILE...                 # list every miss

``--choose-threshold`` re-chooses ``classifier_threshold`` the way the shipped value was
chosen: 5-fold stratified cross-validation of the TRAINING data (``nlu/data/``, never a
held-out file), and for each candidate the recall over ``emergency`` rows and the share
of other rows the classifier's doubt alone would flag. Pick the lowest threshold whose
false-alarm share stays under 1 %. Re-run it whenever the training data changes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nlu.config import load_config  # noqa: E402
from nlu.engine import EMERGENCY, BuiltinEngine, load_engine, train_engine  # noqa: E402
from nlu.interface import ParseResult  # noqa: E402
from nlu.risk import RULES_FILE, RiskRules, load_risk_rules  # noqa: E402
from nlu.training_data import read_training_data  # noqa: E402

DEFAULT_DATA = ROOT / "nlu" / "data"
DEFAULT_CONFIG = ROOT / "config.yml"
THRESHOLDS = (0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


@dataclass(frozen=True, slots=True)
class Case:
    """One message: is it danger, and (for risk case files) which kind it is."""

    text: str
    danger: bool
    kind: str | None = None
    label: str = ""


def read_cases(path: Path) -> list[Case]:
    """A risk case file (``danger``/``lookalike``) or any Rasa NLU YAML file."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if isinstance(raw, dict) and ("danger" in raw or "lookalike" in raw):
        return [
            *(Case(str(r["text"]), True, r.get("kind"), "danger") for r in raw.get("danger") or []),
            *(
                Case(str(r["text"]), False, None, str(r.get("why") or "lookalike"))
                for r in raw.get("lookalike") or []
            ),
        ]
    data = read_training_data([path])
    return [Case(e.text, e.intent == EMERGENCY, None, e.intent) for e in data.examples]


def bot_alarm(parse: ParseResult) -> bool:
    """What the dialogue engine acts on: the risk flag or a confident ``emergency`` intent."""
    return bool(parse["risk"]["flagged"]) or parse["intent"]["name"] == EMERGENCY


@dataclass(slots=True)
class Tally:
    danger: int = 0
    other: int = 0
    caught: int = 0
    alarms: int = 0
    right_kind: int = 0
    with_kind: int = 0
    misses: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    wrong_kinds: list[str] = field(default_factory=list)

    def add(self, case: Case, flagged: bool, kinds: Sequence[str], detail: str) -> None:
        if case.danger:
            self.danger += 1
            self.caught += flagged
            if not flagged:
                self.misses.append(f"{case.text}")
            if case.kind:
                self.with_kind += 1
                if case.kind in kinds:
                    self.right_kind += 1
                else:
                    self.wrong_kinds.append(f"{case.text}  want {case.kind}, got {list(kinds)}")
        else:
            self.other += 1
            self.alarms += flagged
            if flagged:
                self.false_alarms.append(f"{case.text}  [{case.label}] {detail}")

    def row(self, name: str) -> str:
        recall = f"{self.caught / self.danger:.3f}" if self.danger else "-"
        rate = f"{self.alarms / self.other:.1%}" if self.other else "-"
        kind = f"{self.right_kind}/{self.with_kind}" if self.with_kind else "-"
        return (
            f"| {name} | {self.danger} | {recall} ({self.caught}) | {self.other} "
            f"| {rate} ({self.alarms}) | {kind} |"
        )


def measure(
    cases: Sequence[Case], rules: RiskRules, engine: BuiltinEngine | None
) -> dict[str, Tally]:
    tallies = {"rules": Tally()}
    if engine is not None:
        tallies["rules + classifier"] = Tally()
        tallies["rules + classifier, benign veto"] = Tally()
    for case in cases:
        risk = rules.check(case.text)
        tallies["rules"].add(case, risk["flagged"], risk["kinds"], str(risk["matches"]))
        if engine is not None:
            parse = engine.parse_sync(case.text)
            detail = f"{parse['risk']['kinds']} {parse['risk']['matches']} {parse['intent']}"
            tallies["rules + classifier"].add(
                case, bot_alarm(parse), parse["risk"]["kinds"], detail
            )
            # What the bot would do if a classifier-only alarm were discounted on a
            # message the rules read as harmless (Risk["benign"]; needs the wiring).
            vetoed = risk["flagged"] or (bot_alarm(parse) and not risk.get("benign"))
            tallies["rules + classifier, benign veto"].add(
                case, vetoed, parse["risk"]["kinds"], f"{detail} benign={risk.get('benign')}"
            )
    return tallies


def report(
    files: Sequence[Path], rules: RiskRules, engine: BuiltinEngine | None, verbose: bool
) -> None:
    print("| file, layer | danger | recall (caught) | other | false alarms | right kind |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    details: list[str] = []
    for path in files:
        tallies = measure(read_cases(path), rules, engine)
        for name, tally in tallies.items():
            print(tally.row(f"`{path.name}`, {name}"))
            for title, items in (
                ("MISSED", tally.misses),
                ("FALSE ALARM", tally.false_alarms),
                ("WRONG KIND", tally.wrong_kinds),
            ):
                if items and (verbose or title == "MISSED"):
                    details.append(f"\n{path.name}, {name}, {title}:")
                    details.extend(f"  {item}" for item in items)
    print("\n".join(details))


def choose_threshold(data_paths: Sequence[Path], config_path: Path) -> None:
    """5-fold CV of the training data: recall and false alarms of the classifier's doubt."""
    from nlu.evaluation import cross_validate

    data = read_training_data(data_paths)
    predictions = cross_validate(data, load_config(config_path))
    probabilities: list[tuple[bool, float]] = []
    for example, parse in zip(predictions.examples, predictions.parses, strict=True):
        score = next(
            (s["confidence"] for s in parse["intent_ranking"] if s["name"] == EMERGENCY), 0.0
        )
        probabilities.append((example.intent == EMERGENCY, score))
    # The ranking is cut to its top entries; an absent emergency is below every threshold.
    danger = [p for is_danger, p in probabilities if is_danger]
    other = [p for is_danger, p in probabilities if not is_danger]
    print(f"5-fold CV of {len(probabilities)} training examples ({len(danger)} emergency)")
    print("| threshold | emergency recall (doubt alone) | false alarms on the rest |")
    print("| ---: | ---: | ---: |")
    for threshold in THRESHOLDS:
        recall = sum(p >= threshold for p in danger) / max(len(danger), 1)
        alarms = sum(p >= threshold for p in other) / max(len(other), 1)
        print(f"| {threshold} | {recall:.3f} | {alarms:.2%} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="Rasa NLU YAML or risk case files")
    parser.add_argument("--rules", type=Path, default=RULES_FILE, help="risk rules file")
    parser.add_argument("--model", type=Path, help="a trained model folder (or models/)")
    parser.add_argument("--train", action="store_true", help="train a model in memory first")
    parser.add_argument("--data", type=Path, action="append", help="training data (nlu/data)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--choose-threshold", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="list false alarms too")
    args = parser.parse_args(argv)
    data_paths = args.data or [DEFAULT_DATA]
    if args.choose_threshold:
        choose_threshold(data_paths, args.config)
        if not args.files:
            return 0
    if not args.files:
        parser.error("give at least one file")
    rules = load_risk_rules(args.rules)
    engine: BuiltinEngine | None = None
    if args.model:
        engine = load_engine(args.model, args.config, rules)
    elif args.train:
        engine = train_engine(read_training_data(data_paths), load_config(args.config))
        engine.risk_rules = rules
    print(f"Rules: {args.rules}  classifier_threshold: {rules.classifier_threshold}")
    report(args.files, rules, engine, args.verbose)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
