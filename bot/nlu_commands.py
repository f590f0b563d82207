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
) -> None:
    """Train on Rasa NLU YAML (default nlu/data) and write a versioned model."""
    from nlu.config import ConfigError
    from nlu.engine import train
    from nlu.training_data import TrainingDataError

    lang = _lang()
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
