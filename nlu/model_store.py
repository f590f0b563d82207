"""Versioned model files, and the rules for trusting them.

A model is a folder ``models/nlu-<UTC time>-<short hash>/`` holding:

- ``manifest.json``: format version, creation time, training-data hash, config hash,
  library versions, metrics, and the SHA-256 of every artifact;
- ``arrays.npz``: the numeric parameters (IDF weights, coefficients), read with
  ``allow_pickle=False``;
- ``model.json``: labels, vocabularies and entity rules.

Trust model: no pickle is ever loaded, so a model file cannot run code. Loading still
checks every artifact's SHA-256 against the manifest (a tampered or truncated file is
refused) and refuses a model made by another model format or for another config
(threshold, language, tokenizer dictionary), with a message that says to retrain.
"""

from __future__ import annotations

import hashlib
import json
import platform
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from nlu.config import EngineConfig
from nlu.entities import EntityRules
from nlu.intent_model import Analyzers, IntentModel

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
PARAMETERS = "model.json"
LIBRARIES = ("scikit-learn", "numpy", "scipy", "jieba", "opencc", "emoji")


class ModelError(RuntimeError):
    """A model cannot be used: missing, for another config, another format, or tampered."""


@dataclass(frozen=True, slots=True)
class StoredModel:
    intent_model: IntentModel
    entity_rules: EntityRules
    manifest: dict[str, Any]
    path: Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def save_model(
    models_dir: Path,
    intent_model: IntentModel,
    entity_rules: EntityRules,
    config: EngineConfig,
    data_hash: str,
    metrics: dict[str, Any],
) -> Path:
    """Write a new versioned model folder; returns its path."""
    created = datetime.now(UTC)
    name = f"nlu-{created:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    folder = models_dir / name
    folder.mkdir(parents=True, exist_ok=False)
    np.savez(
        folder / ARRAYS,
        word_idf=intent_model.word_idf,
        char_idf=intent_model.char_idf,
        coef=intent_model.coef,
        intercept=intent_model.intercept,
    )
    parameters = {
        "labels": intent_model.labels,
        "word_vocab": intent_model.word_vocab,
        "char_vocab": intent_model.char_vocab,
        "char_ngrams": [intent_model.analyzers.char_min, intent_model.analyzers.char_max],
        "entity_rules": entity_rules.to_json(),
    }
    (folder / PARAMETERS).write_text(json.dumps(parameters, ensure_ascii=False), "utf-8")
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "created": created.isoformat(),
        "training_data_sha256": data_hash,
        "config_sha256": config.fingerprint(),
        "language": config.language,
        "libraries": library_versions(),
        "metrics": metrics,
        "artifacts": {file: sha256_file(folder / file) for file in (ARRAYS, PARAMETERS)},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), "utf-8")
    return folder


def latest_model(models_dir: Path) -> Path:
    """The newest model folder inside ``models_dir`` (or ``models_dir`` itself if it is one)."""
    if (models_dir / MANIFEST).is_file():
        return models_dir
    candidates = sorted(p.parent for p in models_dir.glob(f"nlu-*/{MANIFEST}"))
    if not candidates:
        raise ModelError(f"no NLU model in {models_dir}: run `tiaojie nlu train` first")
    return candidates[-1]


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"{folder}: unreadable manifest ({error})") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{folder}: manifest is not a JSON object")
    return manifest


def load_model(folder: Path, config: EngineConfig, dictionary_dir: Path | None) -> StoredModel:
    """Load after checking format, config and every artifact's SHA-256."""
    manifest = read_manifest(folder)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{folder}: model format {version!r}, this tiaojie reads format {FORMAT_VERSION}; "
            "retrain with `tiaojie nlu train`"
        )
    if manifest.get("config_sha256") != config.fingerprint():
        raise ModelError(
            f"{folder}: model was trained for another config (threshold, language or "
            "tokenizer dictionary changed); retrain with `tiaojie nlu train`"
        )
    artifacts = manifest.get("artifacts") or {}
    for file in (ARRAYS, PARAMETERS):
        path = folder / file
        if not path.is_file():
            raise ModelError(f"{folder}: missing {file}")
        if sha256_file(path) != artifacts.get(file):
            raise ModelError(f"{folder}: {file} does not match its SHA-256 in the manifest")
    try:
        with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
            word_idf, char_idf = arrays["word_idf"], arrays["char_idf"]
            coef, intercept = arrays["coef"], arrays["intercept"]
        parameters = json.loads((folder / PARAMETERS).read_text("utf-8"))
        char_min, char_max = parameters["char_ngrams"]
        model = IntentModel(
            labels=list(parameters["labels"]),
            word_vocab=dict(parameters["word_vocab"]),
            char_vocab=dict(parameters["char_vocab"]),
            word_idf=word_idf,
            char_idf=char_idf,
            coef=coef,
            intercept=intercept,
            analyzers=Analyzers(
                str(dictionary_dir) if dictionary_dir else None, char_min, char_max
            ),
            metrics=dict(manifest.get("metrics") or {}),
        )
        rules = EntityRules.from_json(parameters["entity_rules"])
    except (KeyError, ValueError, TypeError, OSError) as error:
        raise ModelError(f"{folder}: model files are inconsistent ({error})") from None
    if coef.shape != (len(model.labels), len(model.word_vocab) + len(model.char_vocab)):
        raise ModelError(f"{folder}: coefficient shape does not match the vocabularies")
    return StoredModel(model, rules, manifest, folder)
