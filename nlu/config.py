"""What the built-in engine takes from Rasa's ``config.yml``.

The file is a real Rasa config (the Rasa backend trains it as is). The built-in engine
reads the language, the JiebaTokenizer dictionary and the FallbackClassifier
thresholds; the hash of exactly those settings (and of the dictionary's contents) goes
into every model so a model never runs under a config it was not trained for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_THRESHOLD = 0.3
DEFAULT_AMBIGUITY = 0.1


class ConfigError(ValueError):
    """config.yml is missing or does not say what the engine needs."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    language: str = "zh"
    dictionary_path: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    ambiguity_threshold: float = DEFAULT_AMBIGUITY
    base_dir: str = "."

    def fingerprint(self) -> str:
        """SHA-256 of what changes a model's output: settings and dictionary contents."""
        settings: dict[str, Any] = asdict(self)
        settings.pop("base_dir")
        settings.pop("dictionary_path")
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        folder = self.dictionary_dir()
        if folder is not None and folder.is_dir():
            for file in sorted(folder.glob("*.txt")):
                digest.update(file.name.encode())
                digest.update(file.read_bytes())
        return digest.hexdigest()

    def dictionary_dir(self) -> Path | None:
        if not self.dictionary_path:
            return None
        path = Path(self.dictionary_path)
        return path if path.is_absolute() else Path(self.base_dir) / path


def _component(pipeline: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((step for step in pipeline if step.get("name") == name), None)


def load_config(path: Path | str) -> EngineConfig:
    """Read ``config.yml``; paths inside it are relative to the file's folder."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: YAML error: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    pipeline = raw.get("pipeline") or []
    if not isinstance(pipeline, list):
        raise ConfigError(f"{path}: 'pipeline' must be a list")
    pipeline = [step for step in pipeline if isinstance(step, dict)]
    tokenizer = _component(pipeline, "JiebaTokenizer") or {}
    fallback = _component(pipeline, "FallbackClassifier") or {}
    try:
        return EngineConfig(
            language=str(raw.get("language") or "zh"),
            dictionary_path=tokenizer.get("dictionary_path"),
            threshold=float(fallback.get("threshold", DEFAULT_THRESHOLD)),
            ambiguity_threshold=float(fallback.get("ambiguity_threshold", DEFAULT_AMBIGUITY)),
            base_dir=str(path.resolve().parent),
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from None
