"""How many messages a resident sends from the first message to a case number.

Runs the pure dialogue engine with the real built-in NLU (trained in memory from
``nlu/data``, or loaded with ``--model DIR``) on every dispute example of the held-out
file ``tests/data/nlu_test.yml`` as a first message. A scripted resident answers like a
cooperative person: presses the first sensible button, answers yes, gives a street
and a phone number, submits at the review with consent (the review asks it). The
runner's part is played by feeding ``CaseFiled`` back for a ``FileCase`` (a case
number ends the count).

    .venv/bin/python benchmarks/intake_turns.py [--model models/] [--verbose]

Prints the median and p90 of messages per case, the slowest openings, and as its last
line one JSON object: {"median": …, "p90": …, "cases": …}. Goal (issue 11): median ≤ 7.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.dialogue.engine import Context, Step, handle, initial_state  # noqa: E402
from bot.dialogue.forms import default_forms  # noqa: E402
from bot.dialogue.geography import default_geography  # noqa: E402
from bot.dialogue.model import (  # noqa: E402
    ButtonEvent,
    Event,
    FileCase,
    Outcome,
    TextEvent,
)
from nlu.config import load_config  # noqa: E402
from nlu.engine import BuiltinEngine, load_engine, train_engine  # noqa: E402
from nlu.training_data import read_training_data  # noqa: E402

HELD_OUT = ROOT / "tests/data/nlu_test.yml"
#: A conversation that has not reached a case number after this many messages failed.
MAX_MESSAGES = 40

#: Typed answers to questions without buttons, by slot type.
TYPED = {"amount": "5000", "integer": "3", "date": "上个月", "text": "对方是个人"}
TYPED_EN = {"amount": "5000", "integer": "3", "date": "last month", "text": "Mr Wang"}


def percentile(values: list[int], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return float(ordered[index])


def buttons(outcome: Outcome) -> list[str]:
    return [b.payload for r in outcome.replies for row in r.buttons for b in row]


def resident_answer(state: dict[str, Any], last: Outcome, ctx: Context) -> Event:
    """What a cooperative resident sends next."""
    step = Step.of(state.get("step"))
    draft = state.get("draft") or {}
    offered = buttons(last)
    english = state.get("lang") == "en"
    typed = TYPED_EN if english else TYPED
    if step == Step.CHOOSE_CATEGORY:
        return ButtonEvent(next(p for p in offered if p.startswith("cat:")))
    if step == Step.CONFIRM_CATEGORY and any(p.startswith("choice:") for p in offered):
        # The kind asked together with its first question: the first answer is the
        # first sensible button (it confirms the kind too).
        return ButtonEvent(next(p for p in offered if p.startswith("choice:")))
    if step == Step.SLOT:
        slot = ctx.forms.get(draft.get("category") or "dispute_other").slot(draft["slot"])
        if slot is not None and slot.choices:
            return ButtonEvent(f"choice:{slot.choices[0].value}")
        return TextEvent(typed[slot.type if slot else "text"])
    if step == Step.STREET:
        return ButtonEvent("street:xixiang")
    if step == Step.COMMUNITY:
        return ButtonEvent(next(p for p in offered if p.startswith("comm:")))
    if step == Step.PHONE:
        return TextEvent("13812345678")
    if step == Step.REVIEW:
        return ButtonEvent("submit")
    if step in (Step.DESCRIBE, Step.NEW, Step.EDIT_WORDS):
        return TextEvent("就是这个纠纷,想请调解员帮忙" if not english else "please help with it")
    return ButtonEvent("yes")


def run_one(first: str, nlu: BuiltinEngine, ctx: Context) -> tuple[int, list[str]]:
    """Messages sent until a case number, and the steps passed (for --verbose)."""
    state: dict[str, Any] = dict(initial_state())
    event: Event = TextEvent(first, nlu.parse_sync(first))
    steps: list[str] = []
    for sent in range(1, MAX_MESSAGES + 1):
        out = handle(state, event, ctx)
        state = out.state
        for action in out.actions:
            if isinstance(action, FileCase):
                return sent, steps
        steps.append(str(state.get("step")))
        event = resident_answer(state, out, ctx)
        if isinstance(event, TextEvent):
            event = TextEvent(event.text, nlu.parse_sync(event.text))
    return MAX_MESSAGES, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a trained model folder (default: train)")
    parser.add_argument("--verbose", action="store_true", help="print every conversation")
    args = parser.parse_args()
    if args.model:
        nlu = load_engine(args.model, ROOT / "config.yml")
    else:
        data = read_training_data([ROOT / "nlu/data"])
        nlu = train_engine(data, load_config(ROOT / "config.yml"))
    ctx = Context(forms=default_forms(), geography=default_geography())
    held_out = read_training_data([HELD_OUT])
    firsts = [e.text for e in held_out.examples if e.intent.startswith("dispute_")]
    counts: list[int] = []
    slowest: list[tuple[int, str, list[str]]] = []
    for text in firsts:
        count, steps = run_one(text, nlu, ctx)
        counts.append(count)
        slowest.append((count, text, steps))
        if args.verbose:
            print(f"{count:3d}  {text[:40]}  {' > '.join(steps)}")
    median = statistics.median(counts)
    p90 = percentile(counts, 0.9)
    print(f"first messages: {len(counts)} dispute examples of {HELD_OUT.name}")
    print(f"messages to a case number: median {median}, p90 {p90}, max {max(counts)}")
    for count, text, steps in sorted(slowest, reverse=True)[:5]:
        print(f"  {count:2d}  {text[:50]}\n      {' > '.join(steps)}")
    print(json.dumps({"median": median, "p90": p90, "cases": len(counts)}))


if __name__ == "__main__":
    main()
