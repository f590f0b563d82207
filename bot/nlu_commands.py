"""``tiaojie nlu …``: train, evaluate and try the built-in NLU engine.

These commands need no database and no bot token, so an administrator can improve the
language model on any machine that has the training data. Errors end with one
readable line (file, line, reason) and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.i18n import normalise_language, t

nlu_app = typer.Typer(
    help="The built-in NLU engine: train, test, parse, shell.", no_args_is_help=True
)

out = Console()
err = Console(stderr=True)

TRAIN_STAGES = ("data", "words", "chars", "calibration", "classifier", "saved")

ModelsOption = Annotated[
    Path, typer.Option("--models", envvar="TIAOJIE_MODEL_DIR", help="Models folder or one model")
]
ConfigOption = Annotated[Path, typer.Option("--config", help="Rasa config.yml")]


def _lang() -> str:
    return normalise_language(os.environ.get("TIAOJIE_LANGUAGE") or os.environ.get("LANG"))


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _fail(key: str, code: int = 2, **values: object) -> typer.Exit:
    err.print(t(key, _lang(), **values), markup=False, soft_wrap=True)
    return typer.Exit(code)


def _load(models: Path, config: Path):  # noqa: ANN202 - the engine type is imported lazily
    from nlu.config import ConfigError
    from nlu.engine import load_engine
    from nlu.model_store import ModelError

    try:
        return load_engine(models, config)
    except (ModelError, ConfigError) as error:
        raise _fail("nlu.model_error", error=error) from None


@nlu_app.command("train")
def train_command(
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="Training files or folders")
    ] = None,
    config: ConfigOption = Path("config.yml"),
    models: ModelsOption = Path("models"),
    include_reviewed: Annotated[
        bool,
        typer.Option(
            "--include-reviewed",
            help="Also train on labelled real messages; register a candidate behind the gate",
        ),
    ] = False,
    job: Annotated[
        str | None, typer.Option("--job", help="Registry version to fill (background training)")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who trains (default cli:<login>)")] = None,
) -> None:
    """Train on Rasa NLU YAML (default nlu/data) and write a versioned model."""
    from nlu.config import ConfigError
    from nlu.engine import train
    from nlu.training_data import TrainingDataError

    lang = _lang()
    if include_reviewed:
        _train_reviewed(data, config, models, job, by)
        return
    with _progress() as progress:
        task = progress.add_task(t("nlu.training", lang), total=len(TRAIN_STAGES))

        def step(stage: str) -> None:
            progress.update(task, advance=1, description=t("nlu.training", lang) + f" ({stage})")

        try:
            folder = train(data or [Path("nlu/data")], config, models, progress=step)
        except TrainingDataError as error:
            raise _fail("nlu.data_error", error=error) from None
        except (ConfigError, ValueError) as error:
            raise _fail("nlu.config_error", error=error) from None
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    metrics = manifest["metrics"]
    out.print(
        t(
            "nlu.trained",
            lang,
            path=folder,
            examples=metrics["examples"],
            intents=metrics["intents"],
            seconds=metrics["train_seconds"],
        ),
        markup=False,
    )


def _train_reviewed(
    data: list[Path] | None, config: Path, models: Path, job: str | None, by: str | None
) -> None:
    """Our data plus the labelled training slice → a registered candidate, gated."""
    import asyncio
    import getpass

    from actions.retraining import run_training_job
    from bot.settings import SettingsError, load_settings
    from nlu.config import ConfigError
    from nlu.model_store import ModelError
    from nlu.training_data import TrainingDataError

    lang = _lang()
    try:
        settings = load_settings()
    except SettingsError as error:
        raise _fail("cli.config_error", error=error) from None
    with _progress() as progress:
        task = progress.add_task(t("nlu.training", lang), total=len(TRAIN_STAGES) + 1)

        def step(stage: str) -> None:
            progress.update(task, advance=1, description=t("nlu.training", lang) + f" ({stage})")

        try:
            result = asyncio.run(
                run_training_job(
                    settings.database_url,
                    job,
                    by=by or f"cli:{getpass.getuser()}",
                    models_dir=models,
                    data_paths=data or [Path("nlu/data")],
                    config=config,
                    progress=step,
                )
            )
        except TrainingDataError as error:
            raise _fail("nlu.data_error", error=error) from None
        except (ConfigError, ModelError, ValueError) as error:
            raise _fail("nlu.config_error", error=error) from None
    out.print(
        t(
            "review.candidate",
            lang,
            version=result["version"],
            reviewed=result["metrics"].get("reviewed_examples", 0),
            seconds=result["metrics"].get("train_seconds_total", 0),
        ),
        markup=False,
    )
    if result["gate_passed"]:
        out.print(t("review.gate_passed", lang), markup=False)
    else:
        out.print(
            t("review.gate_refused", lang, reasons="; ".join(result["gate_reasons"])),
            markup=False,
            soft_wrap=True,
        )


def _registry(work):  # noqa: ANN001, ANN202 - a coroutine function over a session
    """Run ``work(session)`` in one transaction of the configured store."""
    import asyncio

    from actions.learning import LearningError
    from bot.runtime import Store
    from bot.settings import SettingsError, load_settings
    from storage.db import DatabaseUnavailable, check_database

    try:
        settings = load_settings()
    except SettingsError as error:
        raise _fail("cli.config_error", error=error) from None

    async def runner():  # noqa: ANN202
        store = Store.open(settings)
        try:
            await check_database(store.engine)
            async with store.sessions.begin() as session:
                return await work(session)
        finally:
            await store.close()

    try:
        return asyncio.run(runner())
    except DatabaseUnavailable as error:
        raise _fail("cli.db_unreachable", 1, error=error) from None
    except LearningError as error:
        raise _fail(error.key, 1, **error.values) from None


@nlu_app.command("activate")
def activate_command(
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    override_reason: Annotated[
        str | None,
        typer.Option("--override-reason", help="Required when the evaluation gate failed"),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who activates")] = None,
) -> None:
    """Make a candidate the model every running process uses (within seconds)."""
    import getpass

    from actions.retraining import activate

    who = by or f"cli:{getpass.getuser()}"
    _registry(lambda session: activate(session, version, by=who, override_reason=override_reason))
    out.print(t("review.activated", _lang(), version=version), markup=False)


@nlu_app.command("rollback")
def rollback_command(
    by: Annotated[str | None, typer.Option("--by", help="Who rolls back")] = None,
) -> None:
    """Go back to the model that was active before the current one."""
    import getpass

    from actions.retraining import rollback

    who = by or f"cli:{getpass.getuser()}"
    row = _registry(lambda session: rollback(session, by=who))
    out.print(t("review.rolled_back", _lang(), version=row.version), markup=False)


@nlu_app.command("models")
def models_command(
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """The model registry: versions, status, gate, who trained and activated them."""
    from actions.retraining import describe
    from storage.nlu_registry import list_models

    async def work(session):  # noqa: ANN001, ANN202
        return [describe(row) for row in await list_models(session)]

    rows = _registry(work)
    if output == "json":
        out.print_json(json.dumps(rows, ensure_ascii=False))
        return
    lang = _lang()
    table = Table(title=t("review.models_title", lang))
    for key in ("version", "status", "gate", "trained_by", "activated_by"):
        table.add_column(t(f"review.model_columns.{key}", lang))
    for row in rows:
        gate = {True: "✓", False: "✗"}.get(row["gate_passed"], "-")
        table.add_row(
            row["version"],
            row["status"],
            gate,
            row["trained_by"] or "-",
            row["activated_by"] or "-",
        )
    out.print(table)


#: The held-out files ``nlu test`` evaluates when no --data is given: our own, and the
#: question-register file written apart from the training data (issue 11), if present.
HELD_OUT_FILES = (
    Path("tests/data/nlu_test.yml"),
    Path("tests/data/nlu_test_questions.yml"),
)


def _summary_table(summary: dict[str, object], lang: str, title: str | None = None) -> Table:
    table = Table(title=title or t("nlu.summary_title", lang))
    table.add_column(t("nlu.metric", lang))
    table.add_column(t("nlu.value", lang), justify="right")
    for key, value in summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        table.add_row(t(f"nlu.metrics.{key}", lang), shown)
    return table


@nlu_app.command("test")
def test_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the reports")] = Path(
        "results/nlu"
    ),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Held-out test file (default: tests/data/nlu_test.yml and, if present, "
            "tests/data/nlu_test_questions.yml, each into its own sub-folder of --out)",
        ),
    ] = None,
    cross_validation: Annotated[
        bool, typer.Option("--cross-validation", help="Cross-validate on the training data")
    ] = False,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Folds for cross-validation")] = 5,
    train_data: Annotated[
        list[Path] | None, typer.Option("--train-data", help="Training data (cross-validation)")
    ] = None,
    config: ConfigOption = Path("config.yml"),
    models: ModelsOption = Path("models"),
) -> None:
    """Evaluate like `rasa test nlu`: reports, confusion matrix, histogram, summary."""
    from nlu.config import ConfigError, load_config
    from nlu.evaluation import Predictions, cross_validate, predict, write_reports
    from nlu.training_data import TrainingDataError, read_training_data

    lang = _lang()
    # (title, report folder, predictions) for each evaluation that ran.
    runs: list[tuple[str | None, Path, Predictions]] = []
    try:
        if cross_validation:
            engine_config = load_config(config)
            training = read_training_data(train_data or [Path("nlu/data")])
            with _progress() as progress:
                task = progress.add_task(t("nlu.cross_validating", lang), total=folds)
                predictions: Predictions = cross_validate(
                    training, engine_config, folds, advance=lambda: progress.advance(task)
                )
            runs.append((None, out_dir, predictions))
        else:
            engine = _load(models, config)
            if data is not None:
                files = [(data, out_dir)]
            else:
                present = [f for f in HELD_OUT_FILES if f == HELD_OUT_FILES[0] or f.is_file()]
                files = [(f, out_dir / f.stem) for f in present]
            for file, folder in files:
                examples = read_training_data([file]).examples
                with _progress() as progress:
                    task = progress.add_task(t("nlu.evaluating", lang), total=len(examples))
                    predictions = predict(engine, examples, advance=partial(progress.advance, task))
                title = t("nlu.summary_for", lang, name=file.name) if data is None else None
                runs.append((title, folder, predictions))
    except TrainingDataError as error:
        raise _fail("nlu.data_error", error=error) from None
    except ConfigError as error:
        raise _fail("nlu.config_error", error=error) from None
    for title, folder, predictions in runs:
        summary = write_reports(predictions, folder)
        out.print(_summary_table(summary, lang, title))
        out.print(t("nlu.reports_written", lang, path=folder), markup=False)


@nlu_app.command("parse")
def parse_command(
    text: Annotated[str, typer.Argument(help="The message to parse")],
    config: ConfigOption = Path("config.yml"),
    models: ModelsOption = Path("models"),
) -> None:
    """Parse one message and print Rasa's parse JSON (plus `risk`)."""
    engine = _load(models, config)
    out.print_json(json.dumps(engine.parse_sync(text), ensure_ascii=False))


@nlu_app.command("shell")
def shell_command(
    config: ConfigOption = Path("config.yml"),
    models: ModelsOption = Path("models"),
) -> None:
    """Parse standard input line by line, one JSON object per line."""
    engine = _load(models, config)
    if sys.stdin.isatty():
        err.print(t("nlu.shell_hint", _lang()), markup=False)
    for line in sys.stdin:
        text = line.rstrip("\n")
        sys.stdout.write(json.dumps(engine.parse_sync(text), ensure_ascii=False) + "\n")
        sys.stdout.flush()
