"""Benchmark of the built-in NLU engine: prints figures, asserts nothing.

Run: ``.venv/bin/python benchmarks/nlu_bench.py`` from the repository root.
Targets on the reference 2-core machine: train ≤ 10 s, p50 ≤ 0.5 ms, p99 ≤ 1.5 ms
(issue 11), peak RSS ≤ 250 MB.

``--quality`` adds the held-out figures of both held-out files (the second only when
present) and ``--cv`` those of 5-fold cross-validation on the training data (minutes):
macro-F1, dispute-kind macro-F1, referral F1, emergency recall with the rules and the
false-alarm rate, so a change to the engine is judged on generalisation and speed at once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from nlu.engine import load_engine, train
from nlu.training_data import read_training_data

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT = (ROOT / "tests/data/nlu_test.yml", ROOT / "tests/data/nlu_test_questions.yml")


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--test", type=Path, default=ROOT / "tests/data/nlu_test.yml")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the test set")
    parser.add_argument("--quality", action="store_true", help="held-out figures too")
    parser.add_argument("--cv", action="store_true", help="5-fold cross-validation too")
    parser.add_argument("--train-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_only:
        started = time.perf_counter()
        folder = train([ROOT / "nlu/data"], ROOT / "config.yml", args.train_only)
        seconds = time.perf_counter() - started
        print(json.dumps({"folder": str(folder), "seconds": seconds, "peak": _peak_rss_linux()}))
        return
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        # Training runs in its own process, as `tiaojie nlu train` does: the bot that
        # parses never holds scikit-learn's training memory.
        done = subprocess.run(
            [sys.executable, __file__, "--train-only", tmp],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        trained = json.loads(done.stdout.strip().splitlines()[-1])
        folder, train_seconds = Path(trained["folder"]), trained["seconds"]
        started = time.perf_counter()
        engine = load_engine(folder, ROOT / "config.yml")
        load_seconds = time.perf_counter() - started
        texts = [e.text for e in read_training_data([args.test]).examples]
        for text in texts[:50]:  # warm caches (jieba, OpenCC)
            engine.parse_sync(text)
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(args.rounds):
            for text in texts:
                t0 = time.perf_counter()
                engine.parse_sync(text)
                latencies.append(time.perf_counter() - t0)
        wall = time.perf_counter() - started
        size = folder_size(folder)
        quality: list[tuple[str, dict[str, object]]] = []
        if args.quality:
            # Imported only here: scikit-learn and matplotlib would otherwise count in
            # the parsing process's peak RSS above.
            from nlu.evaluation import held_out_summary, predict

            for path in HELD_OUT:
                if path.is_file():
                    examples = read_training_data([path]).examples
                    quality.append((path.name, held_out_summary(predict(engine, examples))))
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    info = process.memory_info()
    peak = getattr(info, "peak_wset", None) or _peak_rss_linux() or info.rss
    rows = [
        ("train time", f"{train_seconds:.2f} s", "≤ 10 s"),
        ("load time", f"{load_seconds:.2f} s", ""),
        ("parse p50", f"{p50:.3f} ms", "≤ 0.5 ms"),
        ("parse p99", f"{p99:.3f} ms", "≤ 1.5 ms"),
        ("parses/s", f"{len(latencies) / wall:.0f}", ""),
        ("peak RSS", f"{peak / 2**20:.0f} MB", "≤ 250 MB (parsing process)"),
        ("train RSS", f"{(trained['peak'] or 0) / 2**20:.0f} MB", "(training process)"),
        ("model size", f"{size / 2**20:.1f} MB", ""),
        ("messages", str(len(latencies)), ""),
    ]
    for name, value, target in rows:
        print(f"{name:<12} {value:>12}  {target}")
    if args.cv:
        from nlu.config import load_config
        from nlu.evaluation import cross_validate, held_out_summary

        data = read_training_data([ROOT / "nlu/data"])
        folds = cross_validate(data, load_config(ROOT / "config.yml"), 5)
        quality.append(("5-fold CV", held_out_summary(folds)))
    for name, summary in quality:
        shown = ", ".join(
            f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
            for key, value in summary.items()
        )
        print(f"{name}: {shown}")


def _peak_rss_linux() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


if __name__ == "__main__":
    main()
