#!/usr/bin/env python3
"""Built-in NLU engine vs. Rasa 3.6.21, trained on the same data, in one run.

Why: an office choosing ``TIAOJIE_NLU_BACKEND=rasa`` trades a 2.7 GB install and a
second server for Rasa's DIET model; this shows what that buys and costs on *our* data.
Both engines are trained on ``nlu/data/`` with ``config.yml`` and scored on the
held-out ``tests/data/nlu_test.yml`` (never trained on). Reported per engine:
accuracy, macro-F1 and F1 per intent; training time; parse latency p50/p99 and parses
per second -- built-in in-process, built-in over HTTP (a small aiohttp endpoint in a
subprocess speaking Rasa's ``/model/parse``, called through :class:`RasaBackend`
exactly as the bot calls Rasa) and Rasa over HTTP; and the resident memory of each
serving process (psutil).

    .venv/bin/python benchmarks/nlu_compare.py                 # trains both (Rasa: ~35 min)
    .venv/bin/python benchmarks/nlu_compare.py --rasa-model models/rasa/tiaojie-nlu.tar.gz
    .venv/bin/python benchmarks/nlu_compare.py --write docs/benchmarks.md

``--rasa-model`` reuses a model from ``scripts/rasa.sh train`` and takes its training
time from ``var/rasa/train_seconds``. Rasa runs from ``.venv-rasa`` (``scripts/rasa.sh
setup``); without it only the built-in half runs. Servers listen on 127.0.0.1 only and
are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psutil
from sklearn.metrics import accuracy_score, f1_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nlu.interface import FALLBACK_INTENT, NLUBackend, ParseResult, Risk  # noqa: E402
from nlu.rasa_backend import RasaBackend  # noqa: E402
from nlu.training_data import read_training_data  # noqa: E402

RASA_VENV = ROOT / ".venv-rasa"
RASA_TRAIN_SECONDS = ROOT / "var" / "rasa" / "train_seconds"
CONCURRENCY = 8


# --- the built-in engine, behind the few calls this script needs -------------------


def builtin_train(data_dir: Path, config: Path, out_dir: Path) -> Path:
    """Train the built-in engine into ``out_dir``; returns the model folder."""
    from nlu.engine import train

    return train([data_dir], config, out_dir)


def builtin_load(model: Path, config: Path) -> NLUBackend:
    """A ready built-in engine from a trained model folder."""
    from nlu.engine import load_engine

    return load_engine(model, config)


# --- small helpers -------------------------------------------------------------------


def no_risk(text: str) -> Risk:
    """The benchmark measures NLU; the rule layer is the same for both engines."""
    return Risk(flagged=False, kinds=[], matches=[])


class MustNotFallBack:
    """Fallback that makes a silent fallback impossible to miss in the figures."""

    async def parse(self, text: str) -> ParseResult:
        raise RuntimeError("the HTTP engine under test did not answer")

    async def health(self) -> dict[str, object]:
        return {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total / 2**20


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def wait_for(url: str, process: subprocess.Popen[bytes], within: float) -> None:
    """Poll ``url`` until it answers 200; fail early if the server process died."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode} before answering")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {within:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- measuring -------------------------------------------------------------------------


@dataclass
class Run:
    """One engine reached one way: its predictions and timings."""

    name: str
    predictions: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    throughput: float | None = None
    concurrent_throughput: float | None = None
    train_seconds: float | None = None
    train_note: str = ""
    rss_mb: float | None = None
    fallbacks: int = 0
    per_intent: bool = True  # False where another column has the same model's scores


async def measure(
    run: Run, parse: Callable[[str], Awaitable[ParseResult]], texts: list[str], *, concurrent: bool
) -> None:
    """Sequential pass over the test set (accuracy and latency), then a concurrent one."""
    for text in texts[:5]:  # warm caches, lazy imports, the connection pool
        await parse(text)
    started = time.perf_counter()
    for text in texts:
        before = time.perf_counter()
        result = await parse(text)
        run.latencies_ms.append((time.perf_counter() - before) * 1000)
        run.predictions.append(result["intent"]["name"])
    run.throughput = len(texts) / (time.perf_counter() - started)
    run.fallbacks = sum(1 for name in run.predictions if name == FALLBACK_INTENT)
    if concurrent:
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(text: str) -> None:
            async with semaphore:
                await parse(text)

        started = time.perf_counter()
        await asyncio.gather(*(one(text) for text in texts))
        run.concurrent_throughput = len(texts) / (time.perf_counter() - started)


async def over_http(run: Run, url: str, texts: list[str]) -> None:
    """Parse through RasaBackend, as the bot does (pool, timeout, breaker)."""
    backend = RasaBackend(url, fallback=MustNotFallBack(), risk_check=no_risk, timeout=30.0)
    async with backend:
        await measure(run, backend.parse, texts, concurrent=True)
        health = await backend.health()
    if health["fallback_parses"]:
        raise RuntimeError(f"{run.name}: {health['fallback_parses']} parses fell back")


# --- the built-in engine served over HTTP, in a subprocess ---------------------------


def serve_builtin(model: Path, config: Path, port: int) -> None:
    """``--serve-builtin``: the built-in engine behind a Rasa-shaped /model/parse."""
    from aiohttp import web

    engine = builtin_load(model, config)

    async def parse(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(dict(await engine.parse(str(body.get("text", "")))))

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"model_file": str(model)})

    app = web.Application()
    app.router.add_post("/model/parse", parse)
    app.router.add_get("/status", status)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def start_builtin_server(model: Path, config: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-builtin",
            str(model),
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


# --- Rasa ---------------------------------------------------------------------------------


def rasa_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RASA_TELEMETRY_ENABLED="false",
        TF_CPP_MIN_LOG_LEVEL="2",
        SQLALCHEMY_SILENCE_UBER_WARNING="1",
        MPLCONFIGDIR=str(ROOT / "var" / "rasa" / "matplotlib"),
    )
    return env


def write_domain(data_dir: Path, out: Path) -> None:
    """Rasa wants a domain; tiaojie's dialogue is its own, so list intents and entities."""
    import yaml

    data = read_training_data(sorted(data_dir.glob("*.yml")))
    entities = sorted({e.entity for ex in data.examples for e in ex.entities})
    domain = {"version": "3.1", "intents": data.intents, "entities": entities}
    out.write_text(yaml.safe_dump(domain, allow_unicode=True), encoding="utf-8")


def rasa_train(data_dir: Path, config: Path, out_dir: Path, log: Path) -> tuple[Path, float]:
    domain = out_dir / "domain.yml"
    write_domain(data_dir, domain)
    started = time.perf_counter()
    with log.open("wb") as sink:
        subprocess.run(
            [
                str(RASA_VENV / "bin" / "rasa"),
                "train",
                "nlu",
                "--nlu",
                str(data_dir),
                "--config",
                str(config),
                "--domain",
                str(domain),
                "--out",
                str(out_dir),
                "--fixed-model-name",
                "bench",
            ],
            cwd=ROOT,
            env=rasa_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return out_dir / "bench.tar.gz", time.perf_counter() - started


def start_rasa_server(model: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(RASA_VENV / "bin" / "rasa"),
            "run",
            "--enable-api",
            "--model",
            str(model),
            "--interface",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=rasa_env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return process, f"http://127.0.0.1:{port}"


# --- report ------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{cpu}, {psutil.cpu_count()} cores, {memory:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def report(
    runs: list[Run],
    labels: list[str],
    gold: list[str],
    notes: list[str],
    test_file: str,
    trained: int,
) -> str:
    scored = [run for run in runs if run.predictions and run.per_intent]
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {machine()}  ",
        f"Load average at the end (1/5/15 min): {load}  ",
        f"Training data: `nlu/data/`, {trained} examples  ",
        f"Test set: `{test_file}`, {len(gold)} examples, {len(labels)} intents "
        "(held out, never trained on)",
        "",
        "| | " + " | ".join(run.name for run in runs) + " |",
        "| --- | " + " | ".join("---:" for _ in runs) + " |",
    ]

    def row(title: str, cells: list[str]) -> None:
        lines.append(f"| {title} | " + " | ".join(cells) + " |")

    def quality(run: Run, kind: str) -> str:
        if not run.predictions:
            return "—"
        if kind == "accuracy":
            return f"{accuracy_score(gold, run.predictions):.3f}"
        return f"{f1_score(gold, run.predictions, labels=labels, average='macro', zero_division=0):.3f}"  # noqa: E501

    row("accuracy", [quality(run, "accuracy") for run in runs])
    row("macro-F1", [quality(run, "f1") for run in runs])
    row("nlu_fallback answers", [str(run.fallbacks) if run.predictions else "—" for run in runs])
    row("training time", [fmt(run.train_seconds, ".1f", " s") + run.train_note for run in runs])
    row("parse latency p50", [fmt(percentile(r.latencies_ms, 50), ".2f", " ms") for r in runs])
    row("parse latency p99", [fmt(percentile(r.latencies_ms, 99), ".2f", " ms") for r in runs])
    row("parses/s, sequential", [fmt(run.throughput, ".0f") for run in runs])
    row(
        f"parses/s, {CONCURRENCY} concurrent",
        [fmt(run.concurrent_throughput, ".0f") for run in runs],
    )
    row("resident memory (RSS)", [fmt(run.rss_mb, ".0f", " MiB") for run in runs])
    lines += ["", "F1 per intent:", ""]
    names = [run.name for run in scored]
    lines += [
        "| intent | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    per_run = [
        f1_score(gold, run.predictions, labels=labels, average=None, zero_division=0)
        for run in scored
    ]
    for index, label in enumerate(labels):
        lines.append(
            f"| {label} | " + " | ".join(f"{scores[index]:.2f}" for scores in per_run) + " |"
        )
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


# --- main --------------------------------------------------------------------------------------


async def benchmark(args: argparse.Namespace) -> str:
    test = read_training_data([args.test])
    texts = [example.text for example in test.examples]
    gold = [example.intent for example in test.examples]
    labels = sorted(set(gold))
    trained = len(read_training_data([args.data]).examples)
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="nlu_compare_"))

    in_process = Run("built-in, in-process")
    via_http = Run("built-in over HTTP", per_intent=False)
    rasa = Run("Rasa 3.6.21 over HTTP")
    runs = [in_process, via_http, rasa]

    # Built-in: train in this process, parse in this process.
    started = time.perf_counter()
    model = builtin_train(args.data, args.config, work / "builtin")
    in_process.train_seconds = via_http.train_seconds = time.perf_counter() - started
    engine = builtin_load(model, args.config)
    await measure(in_process, engine.parse, texts, concurrent=False)
    # The in-process engine's memory is that of a process holding only it: the
    # HTTP subprocess below (this benchmark process also holds sklearn, psutil …).

    process, url = start_builtin_server(model, args.config)
    try:
        await wait_for(url + "/status", process, 120)
        await over_http(via_http, url, texts)
        via_http.rss_mb = in_process.rss_mb = rss_mb(process.pid)
    finally:
        stop(process)
    notes.append(
        "Built-in memory is the RSS of a process serving only the engine over aiohttp; "
        "the in-process column shares that figure."
    )

    if args.no_rasa or not (RASA_VENV / "bin" / "rasa").exists():
        why = "--no-rasa" if args.no_rasa else "no .venv-rasa (scripts/rasa.sh setup)"
        notes.append(f"Rasa not measured: {why}.")
        rasa.predictions = []
        return report(runs, labels, gold, notes, str(args.test.relative_to(ROOT)), trained)
    if args.rasa_model:
        rasa_model = args.rasa_model
        if RASA_TRAIN_SECONDS.exists():
            rasa.train_seconds = float(RASA_TRAIN_SECONDS.read_text().strip())
            rasa.train_note = " ¹"
            notes.append(
                "¹ Rasa training time as measured by `scripts/rasa.sh train` for the "
                "reused model (same data and config), not in this run."
            )
    else:
        print("training Rasa (DIETClassifier, 100 epochs: this takes a while) …", file=sys.stderr)
        rasa_model, rasa.train_seconds = rasa_train(
            args.data, args.config, work, work / "rasa-train.log"
        )
    process, url = start_rasa_server(rasa_model, work / "rasa-run.log")
    try:
        await wait_for(url + "/status", process, 300)
        await over_http(rasa, url, texts)
        rasa.rss_mb = rss_mb(process.pid)
    finally:
        stop(process)
    return report(runs, labels, gold, notes, str(args.test.relative_to(ROOT)), trained)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "nlu" / "data")
    parser.add_argument("--config", type=Path, default=ROOT / "config.yml")
    parser.add_argument("--test", type=Path, default=ROOT / "tests" / "data" / "nlu_test.yml")
    parser.add_argument("--rasa-model", type=Path, help="reuse a trained Rasa model")
    parser.add_argument("--no-rasa", action="store_true", help="measure the built-in engine only")
    parser.add_argument("--write", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--serve-builtin", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_builtin:
        serve_builtin(args.serve_builtin, args.config, args.port)
        return 0
    args.data, args.config, args.test = (p.resolve() for p in (args.data, args.config, args.test))
    table = asyncio.run(benchmark(args))
    print(table)
    if args.write:
        write_doc(args.write, table)
    return 0


def write_doc(path: Path, table: str) -> None:
    """Replace the generated section of ``path``, keeping any text written by hand."""
    begin, end = "<!-- nlu_compare:begin -->", "<!-- nlu_compare:end -->"
    block = f"{begin}\n{table}{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail.lstrip("\n")
    else:
        text = (text.rstrip() + "\n\n" if text else "") + block
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
