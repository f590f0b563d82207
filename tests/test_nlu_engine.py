"""The built-in engine end to end: train once, parse, model versioning, odd input, CLI."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from nlu.engine import BuiltinEngine, load_engine, train
from nlu.interface import FALLBACK_INTENT, NLUBackend
from nlu.model_store import ARRAYS, MANIFEST, ModelError

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config.yml"
DATA = ROOT / "nlu" / "data"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return train([DATA], CONFIG, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def engine(model_dir) -> BuiltinEngine:
    return load_engine(model_dir, CONFIG)


def test_manifest_records_versions(model_dir):
    manifest = json.loads((model_dir / MANIFEST).read_text("utf-8"))
    assert manifest["format_version"] == 1
    assert len(manifest["training_data_sha256"]) == 64
    assert len(manifest["config_sha256"]) == 64
    assert {"scikit-learn", "jieba", "opencc", "python"} <= manifest["libraries"].keys()
    assert set(manifest["artifacts"]) == {"arrays.npz", "model.json"}
    assert manifest["metrics"]["examples"] > 2000


async def test_parse_round_trip(engine):
    assert isinstance(engine, NLUBackend)
    text = "我在西鄉街道固戍社区的厂里打工，老板欠我８０００元工资三个月了"
    result = await engine.parse(text)
    assert result["text"] == text
    assert result["intent"]["name"] == "dispute_labor"
    assert result["intent_ranking"][0] == result["intent"]
    assert len(result["intent_ranking"]) == 10
    by_type = {e["entity"]: e for e in result["entities"]}
    assert by_type["amount"]["value"] == 8000
    assert text[by_type["amount"]["start"] : by_type["amount"]["end"]] == "８０００元"
    locations = [e["value"] for e in result["entities"] if e["entity"] == "location"]
    assert locations == ["西乡", "固戍"]
    assert result["risk"] == {"flagged": False, "kinds": [], "matches": []}
    health = await engine.health()
    assert health["ok"] is True and health["backend"] == "builtin"


def test_intents_and_risk(engine):
    assert engine.parse_sync("你好")["intent"]["name"] == "greet"
    assert engine.parse_sync("房东不退押金")["intent"]["name"] == "dispute_tenancy"
    result = engine.parse_sync("救命，他拿刀在砍门")
    assert result["intent"]["name"] == "emergency"
    assert result["risk"]["flagged"] and "violence_now" in result["risk"]["kinds"]
    platform = [e for e in engine.parse_sync("跑美团众包被扣了1.5万")["entities"]]
    assert {(e["entity"], e["value"]) for e in platform} == {
        ("platform", "美团"),
        ("amount", 15000),
    }


def test_fallback_like_rasa(engine):
    result = engine.parse_sync("")
    assert result["intent"] == {"name": FALLBACK_INTENT, "confidence": engine.config.threshold}
    assert result["intent_ranking"][0]["name"] == FALLBACK_INTENT


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t",
        "字" * 20000,
        "😀😀😀",
        "\x00\x01\x02\x1b[31m",
        "\udcff\ufffd\x7f" * 50,
        bytes(range(256)).decode("latin-1"),
        "mixed 中文 English Ελληνικά русский 123",
        "a",
        "嗯",
    ],
)
def test_odd_input_never_raises(engine, text):
    started = time.perf_counter()
    result = engine.parse_sync(text)
    assert time.perf_counter() - started < 1.0
    assert result["text"] == text
    assert result["intent"]["name"]
    assert 0.0 <= result["intent"]["confidence"] <= 1.0
    for entity in result["entities"]:
        assert 0 <= entity["start"] < entity["end"] <= len(text)


def test_junk_falls_back(engine):
    assert engine.parse_sync("\x00\x01\xff")["intent"]["name"] == FALLBACK_INTENT


def test_refuses_other_config(model_dir, tmp_path):
    other = tmp_path / "config.yml"
    other.write_text(CONFIG.read_text("utf-8").replace("threshold: 0.3", "threshold: 0.5"), "utf-8")
    (tmp_path / "nlu").symlink_to(ROOT / "nlu")
    with pytest.raises(ModelError, match="another config"):
        load_engine(model_dir, other)


def test_refuses_tampered_artifact(model_dir, tmp_path):
    copy = tmp_path / model_dir.name
    shutil.copytree(model_dir, copy)
    with (copy / ARRAYS).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelError, match="SHA-256"):
        load_engine(copy, CONFIG)


def test_refuses_other_format(model_dir, tmp_path):
    copy = tmp_path / model_dir.name
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / MANIFEST).read_text("utf-8"))
    manifest["format_version"] = 99
    (copy / MANIFEST).write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(ModelError, match="format"):
        load_engine(copy, CONFIG)


def test_no_model(tmp_path):
    with pytest.raises(ModelError, match="nlu train"):
        load_engine(tmp_path, CONFIG)


# --- command line -----------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("TIAOJIE_LANGUAGE", "en")


def test_cli_parse_and_shell(cli_env, model_dir):
    done = runner.invoke(app, ["nlu", "parse", "--models", str(model_dir), "想离婚"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["intent"]["name"] == "dispute_family"
    done = runner.invoke(
        app, ["nlu", "shell", "--models", str(model_dir)], input="你好\n他说要杀了我\n"
    )
    assert done.exit_code == 0, done.output
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [x["intent"]["name"] for x in lines] == ["greet", "emergency"]
    assert lines[1]["risk"]["flagged"] is True


def test_cli_test_writes_rasa_reports(cli_env, model_dir, tmp_path):
    held_out = tmp_path / "small.yml"
    held_out.write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - 早上好呀\n    - hey there\n'
        "- intent: dispute_tenancy\n  examples: |\n    - 二房东扣了我[1500块](amount)押金\n",
        "utf-8",
    )
    out = tmp_path / "report"
    done = runner.invoke(
        app,
        ["nlu", "test", "--models", str(model_dir), "--data", str(held_out), "--out", str(out)],
    )
    assert done.exit_code == 0, done.output
    report = json.loads((out / "intent_report.json").read_text("utf-8"))
    assert {"accuracy", "macro avg", "weighted avg", "greet"} <= report.keys()
    assert {"precision", "recall", "f1-score", "support"} <= report["greet"].keys()
    errors = json.loads((out / "intent_errors.json").read_text("utf-8"))
    assert all({"text", "intent", "intent_prediction"} <= e.keys() for e in errors)
    entities = json.loads((out / "entity_report.json").read_text("utf-8"))
    assert entities["amount"]["support"] == 1
    for picture in ("intent_confusion_matrix.png", "intent_histogram.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    assert "macro-F1" in done.stdout


def test_cli_train_reports_bad_file(cli_env, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text('version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - [hi(x)\n', "utf-8")
    done = runner.invoke(app, ["nlu", "train", "--data", str(bad), "--models", str(tmp_path)])
    assert done.exit_code == 2
    assert f"{bad}:5" in done.stderr


def test_cli_parse_without_model(cli_env, tmp_path):
    done = runner.invoke(app, ["nlu", "parse", "--models", str(tmp_path), "hi"])
    assert done.exit_code == 2
    assert "nlu train" in done.stderr


def test_cli_test_reports_both_held_out_files(cli_env, model_dir, tmp_path, monkeypatch):
    """Without --data, `nlu test` evaluates each held-out file into its own sub-folder."""
    import bot.nlu_commands as commands

    own = tmp_path / "own.yml"
    own.write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - 早上好呀\n'
        "- intent: dispute_tenancy\n  examples: |\n    - 二房东扣了我押金不退\n",
        "utf-8",
    )
    questions = tmp_path / "questions.yml"
    questions.write_text(
        'version: "3.1"\nnlu:\n- intent: referral\n  examples: |\n'
        "    - 你好,我表弟被派出所刑事拘留了,家属能请律师吗\n"
        "- intent: emergency\n  examples: |\n    - 他拿着刀说要杀了我\n",
        "utf-8",
    )
    monkeypatch.setattr(commands, "HELD_OUT_FILES", (own, questions))
    out = tmp_path / "report"
    done = runner.invoke(app, ["nlu", "test", "--models", str(model_dir), "--out", str(out)])
    assert done.exit_code == 0, done.output
    for name, intents in (("own", {"greet", "dispute_tenancy"}), ("questions", {"referral"})):
        report = json.loads((out / name / "intent_report.json").read_text("utf-8"))
        assert intents <= report.keys()
        assert (out / name / "risk_report.json").is_file()
    assert "own.yml" in done.stdout and "questions.yml" in done.stdout
    assert done.stdout.count("Dispute kinds, macro-F1") == 2
    assert "Referral (not for mediation) F1" in done.stdout
    assert "False alarms" in done.stdout

    questions.unlink()  # the question-register file is optional: only the first is run
    done = runner.invoke(app, ["nlu", "test", "--models", str(model_dir), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "own.yml" in done.stdout and "questions.yml" not in done.stdout
