"""The learning loop end to end: capture → label → retrain → gate → activate → hot swap.

Starts ``tiaojie run`` itself on a fresh SQLite database in a temporary folder, plays the
first half of a labelled ``text,label`` CSV as residents' first messages through the REST
channel, answers the review inbox from the file's labels in the inbox's own order up to
``--budget`` labels, retrains in the background process, lets the gate decide, activates,
waits until the running app reports the new model in ``/healthz``, and reports macro-F1
on the second half before and after. The last line is one JSON object.

    .venv/bin/python benchmarks/learning_loop.py FILE.csv --budget 200
    .venv/bin/python benchmarks/learning_loop.py --from-yaml tests/data/nlu_test.yml \\
        --write-csv /tmp/nlu_test.csv          # a CSV from Rasa YAML, shuffled (seed 0)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from actions import learning  # noqa: E402
from actions.retraining import activate, start_training, training_status  # noqa: E402
from nlu.engine import load_engine  # noqa: E402
from nlu.evaluation import Predictions, intent_report  # noqa: E402
from nlu.training_data import Example, read_training_data  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.nlu_registry import active_version  # noqa: E402
from storage.redact import redact  # noqa: E402

TIAOJIE = [sys.executable, "-m", "bot"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def yaml_to_csv(source: Path, target: Path) -> int:
    examples = read_training_data([source]).examples
    rows = [(e.text, e.intent) for e in examples]
    random.Random(0).shuffle(rows)
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return len(rows)


def read_csv(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [(r["text"], r["label"]) for r in csv.DictReader(handle) if r.get("text")]


def scores(model_path: str, rows: list[tuple[str, str]]) -> dict[str, float]:
    engine = load_engine(Path(model_path), ROOT / "config.yml")
    examples = [Example(text, label) for text, label in rows]
    predictions = Predictions()
    predictions.extend(examples, [engine.parse_sync(e.text) for e in examples])
    report = intent_report(predictions)
    disputes = [
        v["f1-score"] for k, v in report.items() if k.startswith("dispute_") and isinstance(v, dict)
    ]
    return {
        "macro_f1": round(float(report["macro avg"]["f1-score"]), 4),
        "dispute_macro_f1": round(sum(disputes) / len(disputes), 4) if disputes else 0.0,
        "accuracy": round(float(report["accuracy"]), 4),
    }


async def wait_health(base: str, within: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as client:
        while time.monotonic() < deadline:
            try:
                async with client.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return dict(await response.json())
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit("the app did not answer /healthz")


async def play(base: str, rows: list[tuple[str, str]], concurrency: int = 8) -> int:
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for index, (text, _) in enumerate(rows):
        queue.put_nowait((index, text))
    failed = 0

    async def worker(client: aiohttp.ClientSession) -> None:
        nonlocal failed
        while not queue.empty():
            index, text = queue.get_nowait()
            payload = {"sender": f"resident-{index}", "message": text}
            async with client.post(f"{base}/webhooks/rest/webhook", json=payload) as response:
                failed += response.status != 200
                await response.read()

    async with aiohttp.ClientSession() as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return failed


def start_app(url: str, temp: Path, port: int) -> subprocess.Popen[bytes]:
    """A fresh database and ``tiaojie run`` on it, as an administrator would start it."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_"))},
        "TIAOJIE_DATABASE_URL": url,
        "TIAOJIE_MODEL_DIR": str(temp / "models"),
        "TIAOJIE_DATA_DIR": str(temp / "var"),
        "TIAOJIE_HTTP_PORT": str(port),
        "TIAOJIE_SWEEP_SECONDS": "0",
        "TIAOJIE_MODEL_POLL_SECONDS": "1",
        "TIAOJIE_LOG_LEVEL": "WARNING",
    }
    subprocess.run([*TIAOJIE, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*TIAOJIE, "centers", "load", "storage/data/baoan_centres.yml"],
        env=env,
        check=True,
        capture_output=True,
    )
    return subprocess.Popen([*TIAOJIE, "run"], env=env, stdout=subprocess.DEVNULL)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rows = read_csv(args.file)
    half = len(rows) // 2
    first, second = rows[:half], rows[half:]
    temp = Path(tempfile.mkdtemp(prefix="tiaojie-learning-"))
    url = f"sqlite+aiosqlite:///{temp / 'tiaojie.db'}"
    port = free_port()
    app = await asyncio.to_thread(start_app, url, temp, port)
    base = f"http://127.0.0.1:{port}"
    db = create_engine(url)
    sessions = session_factory(db)
    try:
        health = await wait_health(base)
        before_version = health["nlu"]["version"]
        started = time.perf_counter()
        failed = await play(base, first)
        play_seconds = time.perf_counter() - started

        labels_by_text = {redact(text).masked_text: label for text, label in first}
        async with sessions.begin() as session:
            items = await learning.inbox(session, limit=None)
            spent = 0
            for item in items:
                if spent >= args.budget:
                    break
                label = labels_by_text.get(item.text)
                if label is None:
                    continue
                await learning.label(session, item.id, label, by="benchmark")
                spent += 1
            captured = len(items)
        async with sessions.begin() as session:
            before_path = (await active_version(session) or ("", ""))[1]
            job = await start_training(
                session, database_url=url, by="benchmark", models_dir=temp / "models"
            )
        started = time.perf_counter()
        while True:
            await asyncio.sleep(0.5)
            async with sessions() as session:
                status = await training_status(session, job.version)
            if status and status["status"] in ("candidate", "failed"):
                break
            if job.process.poll() not in (None, 0):
                raise SystemExit(f"training process failed ({job.process.returncode})")
        training_seconds = time.perf_counter() - started
        if status["status"] == "failed":
            raise SystemExit(f"training failed: {status['error']}")
        activated = bool(status["gate_passed"])
        swap_seconds = None
        if activated:
            async with sessions.begin() as session:
                await activate(session, job.version, by="benchmark")
            started = time.perf_counter()
            while (await wait_health(base))["nlu"].get("version") != job.version:
                if time.perf_counter() - started > 30:
                    raise SystemExit("the app did not switch to the new model within 30 s")
                await asyncio.sleep(0.1)
            swap_seconds = round(time.perf_counter() - started, 3)
        before = await asyncio.to_thread(scores, before_path, second)
        after = await asyncio.to_thread(scores, status["path"], second)
        return {
            "file": str(args.file),
            "messages_played": len(first),
            "rest_failures": failed,
            "play_seconds": round(play_seconds, 2),
            "captured": captured,
            "budget": args.budget,
            "labels": spent,
            "model_before": before_version,
            "model_after": job.version,
            "gate_passed": status["gate_passed"],
            "gate_reasons": status["gate_reasons"],
            "training_seconds": round(training_seconds, 2),
            "swap_seconds": swap_seconds,
            "before_macro_f1": before["macro_f1"],
            "after_macro_f1": after["macro_f1"],
            "before_dispute_macro_f1": before["dispute_macro_f1"],
            "after_dispute_macro_f1": after["dispute_macro_f1"],
            "before_accuracy": before["accuracy"],
            "after_accuracy": after["accuracy"],
            "evaluated_on": len(second),
            "activated": activated,
        }
    finally:
        await db.dispose()
        app.terminate()
        app.wait(timeout=30)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path, nargs="?", help="labelled CSV (text,label)")
    parser.add_argument("--budget", type=int, default=200, help="labels an administrator gives")
    parser.add_argument("--from-yaml", type=Path, help="write a CSV from Rasa YAML and stop")
    parser.add_argument("--write-csv", type=Path, help="where --from-yaml writes")
    args = parser.parse_args()
    if args.from_yaml:
        target = args.write_csv or args.from_yaml.with_suffix(".csv")
        print(f"{yaml_to_csv(args.from_yaml, target)} rows written to {target}")
        return
    if args.file is None:
        parser.error("FILE.csv is required")
    result = asyncio.run(main(args))
    for key, value in result.items():
        if key not in ("before_macro_f1", "after_macro_f1"):
            continue
        print(f"{key}: {value}")
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    cli()
