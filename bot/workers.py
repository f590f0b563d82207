"""``tiaojie run --workers N``: N worker processes on one port, kept alive by a supervisor.

Why processes and SO_REUSEPORT: one Python process uses one core; the kernel spreads
new connections over every socket bound with SO_REUSEPORT on the port, so N workers
share it without a proxy, and a dead one only loses the connections it held. Each
worker is a whole ``tiaojie run`` (its own NLU model, store pool, scheduler and
Telegram bot); what must happen once — polling Telegram, the scheduler's jobs — follows
the database's leader lease (:mod:`actions.leadership`), and per-chat order is kept by
the database (:mod:`bot.intake_service`), never by process memory.

The supervisor restarts a worker that dies (with a growing pause when one keeps dying at
start-up) and on SIGTERM or SIGINT passes SIGTERM on: each worker stops accepting,
finishes the requests it has (aiohttp's graceful shutdown, every message one
transaction, so none is half written), gives up its leases and exits; a worker still
busy after ``grace`` seconds is killed. Gunicorn does much of this, but its aiohttp
worker shares one pre-forked socket and cannot run our start-up (NLU loading, the
refusal of SQLite) per worker; this is ~100 lines with no state but the children.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from actions import metrics

log = logging.getLogger(__name__)

#: A worker that dies sooner than this after its start counts as crashing at start-up.
EARLY_DEATH = 10.0
#: The longest pause between restarts of a worker that keeps crashing.
MAX_PAUSE = 30.0
#: Environment variable telling a worker its number (logs, metrics).
WORKER_ENV = "TIAOJIE_WORKER"
#: prometheus-client's folder for the workers' shared metrics.
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(slots=True)
class Worker:
    number: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # deaths in a row soon after start
    not_before: float = 0.0  # monotonic time before which no restart
    restarts: int = field(default=0)


class Supervisor:
    """Starts ``count`` copies of ``command`` and keeps them running until told to stop."""

    def __init__(self, command: Sequence[str], count: int, *, grace: float = 30.0) -> None:
        self.command = list(command)
        self.workers = [Worker(n) for n in range(1, count + 1)]
        self.grace = grace
        self.stopping = False

    def _start(self, worker: Worker) -> None:
        env = {**os.environ, WORKER_ENV: str(worker.number)}
        worker.process = subprocess.Popen(self.command, env=env)
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.number, worker.process.pid)

    def _check(self, worker: Worker) -> None:
        process = worker.process
        now = time.monotonic()
        if process is not None and process.poll() is None:
            return
        if process is not None:
            lived = now - worker.started
            worker.failures = worker.failures + 1 if lived < EARLY_DEATH else 0
            pause = min(MAX_PAUSE, 0.5 * 2 ** worker.failures) if worker.failures else 0.0
            worker.not_before = now + pause
            worker.process = None
            log.warning(
                "worker %d (pid %d) exited with %s after %.0f s; restarting in %.1f s",
                worker.number, process.pid, process.returncode, lived, pause,
            )  # fmt: skip
            metrics.worker_exited(process.pid)  # its live gauges stop counting
            worker.restarts += 1
        if now >= worker.not_before:
            self._start(worker)

    def _ask_to_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; then drain the workers. Returns the exit code."""
        previous = {
            sig: signal.signal(sig, self._ask_to_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        own_metrics = None
        if not os.environ.get(METRICS_ENV):
            # Without a shared folder each scrape of /metrics would show whichever worker
            # answered; with one, every worker's answer adds up all of them.
            own_metrics = tempfile.mkdtemp(prefix="tiaojie-metrics-")
            os.environ[METRICS_ENV] = own_metrics
        metrics.prepare_multiprocess_dir()
        try:
            for worker in self.workers:
                self._start(worker)
            while not self.stopping:
                for worker in self.workers:
                    self._check(worker)
                time.sleep(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()
            if own_metrics is not None:
                shutil.rmtree(own_metrics, ignore_errors=True)
                os.environ.pop(METRICS_ENV, None)
        return 0

    def stop(self) -> None:
        """SIGTERM every worker, wait up to ``grace`` seconds, kill what is left."""
        running = [w.process for w in self.workers if w.process and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d busy after %.0f s: killed", process.pid, self.grace)
                process.kill()
                process.wait()


def worker_command() -> list[str]:
    """How the supervisor starts one worker: this interpreter, ``tiaojie run`` as a worker."""
    return [sys.executable, "-m", "bot", "run", "--worker"]
