"""Message catalogs: every text a person sees comes from ``bot/locales/<lang>.yml``.

Simplified Chinese is the primary language, English the second. A missing key in one
language falls back to the other, and a missing key everywhere shows the key itself
(so a gap is visible in testing rather than crashing a conversation).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

LOCALES = Path(__file__).parent / "locales"
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"


@cache
def catalog(language: str) -> dict[str, Any]:
    path = LOCALES / f"{language}.yml"
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def _lookup(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def has(key: str, language: str = DEFAULT_LANGUAGE) -> bool:
    return _lookup(catalog(normalise_language(language)), key) is not None


def raw(key: str, language: str = DEFAULT_LANGUAGE) -> Any:
    """The catalog entry itself (a string, list or mapping), with fallback."""
    language = normalise_language(language)
    for lang in (language, *[x for x in LANGUAGES if x != language]):
        value = _lookup(catalog(lang), key)
        if value is not None:
            return value
    return None


def t(key: str, language: str = DEFAULT_LANGUAGE, /, **values: Any) -> str:
    """The text for ``key`` in ``language``, formatted with ``values``."""
    template = raw(key, language)
    if template is None:
        return key
    text = str(template)
    return text.format(**values) if values else text


def normalise_language(language: str | None) -> str:
    """Map ``zh-hans``, ``zh_CN.UTF-8``, ``en-US`` … onto a catalog we have."""
    if not language:
        return DEFAULT_LANGUAGE
    code = language.lower().replace("_", "-").split(".")[0].split("-")[0]
    return code if code in LANGUAGES else DEFAULT_LANGUAGE
