"""Entity extraction: the training data's regexes and lookup tables, synonyms, values.

This is Rasa's RegexEntityExtractor (regex sections, lookup tables) followed by its
EntitySynonymMapper, plus two value normalisers a mediator needs: money as a number
and dates in ISO form. Matching runs on normalised text; offsets are mapped back onto
the resident's original text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nlu.dates import parse_date
from nlu.normalise import Normalised, normalise_text
from nlu.numbers import parse_money
from nlu.training_data import TrainingData

RULES_FILE = Path(__file__).parent / "rules" / "entities.yml"
EXTRACTOR = "RegexEntityExtractor"
SYNONYM_MAPPER = "EntitySynonymMapper"


@dataclass(frozen=True, slots=True)
class EntityRules:
    """Everything entity extraction needs, as plain data (stored inside a model)."""

    regexes: dict[str, list[str]] = field(default_factory=dict)
    lookups: dict[str, list[str]] = field(default_factory=dict)
    synonyms: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"regexes": self.regexes, "lookups": self.lookups, "synonyms": self.synonyms}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> EntityRules:
        return cls(dict(raw["regexes"]), dict(raw["lookups"]), dict(raw["synonyms"]))


def build_rules(data: TrainingData, rules_file: Path = RULES_FILE) -> EntityRules:
    """Merge the training data's sections with the engine's own entity rules."""
    extra = yaml.safe_load(rules_file.read_text(encoding="utf-8")) or {}
    regexes = {name: list(patterns) for name, patterns in data.regexes.items()}
    for name, patterns in (extra.get("patterns") or {}).items():
        regexes.setdefault(name, []).extend(patterns)
    ambiguous = {normalise_text(x) for x in extra.get("ambiguous_lookup") or []}
    synonyms = {normalise_text(k): v for k, v in data.synonyms.items()}
    lookups: dict[str, list[str]] = {}
    for name, values in data.lookups.items():
        entries = {normalise_text(v) for v in values} - ambiguous
        targets = set(values)
        # A synonym whose value is in this table is another spelling of an entry.
        entries |= {surface for surface, value in synonyms.items() if value in targets}
        lookups[name] = sorted(e for e in entries if e)
        # 固戍社区 / 西乡街道 name the same place as 固戍 / 西乡: map them onto the plain name.
        plain = {normalise_text(v) for v in values}
        for entry in entries:
            stem = entry.removesuffix("社区").removesuffix("街道")
            if stem != entry and stem in plain and entry not in synonyms:
                synonyms[entry] = stem
    return EntityRules(regexes, lookups, synonyms)


def _lookup_pattern(entries: list[str]) -> re.Pattern[str]:
    ordered = sorted(entries, key=len, reverse=True)
    parts = []
    for entry in ordered:
        escaped = re.escape(entry)
        # Latin words need word boundaries ("sf" inside "sofa" is not 顺丰).
        parts.append(rf"(?<![a-z0-9]){escaped}(?![a-z0-9])" if entry.isascii() else escaped)
    return re.compile("|".join(parts))


class EntityExtractor:
    """Compiled form of :class:`EntityRules`; cheap to call per message."""

    def __init__(self, rules: EntityRules) -> None:
        self.rules = rules
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        for name, patterns in rules.regexes.items():
            for pattern in patterns:
                self._patterns.append((name, re.compile(pattern, re.IGNORECASE)))
        for name, entries in rules.lookups.items():
            if entries:
                self._patterns.append((name, _lookup_pattern(entries)))

    def extract(self, normalised: Normalised, original: str) -> list[dict[str, Any]]:
        """Entities in Rasa's shape; overlapping matches keep the longest."""
        text = normalised.text
        found: list[tuple[int, int, str]] = []
        for name, pattern in self._patterns:
            for match in pattern.finditer(text):
                if match.end() > match.start():
                    found.append((match.start(), match.end(), name))
        found.sort(key=lambda item: (item[0], -(item[1] - item[0])))
        chosen: list[tuple[int, int, str]] = []
        for start, end, name in sorted(found, key=lambda item: -(item[1] - item[0])):
            if all(end <= s or start >= e for s, e, _ in chosen):
                chosen.append((start, end, name))
        chosen.sort()
        entities = []
        for start, end, name in chosen:
            original_start, original_end = normalised.span(start, end)
            entities.append(
                self._entity(name, text[start:end], original, original_start, original_end)
            )
        return entities

    def _entity(
        self, name: str, matched: str, original: str, start: int, end: int
    ) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "entity": name,
            "start": start,
            "end": end,
            "value": original[start:end],
            "extractor": EXTRACTOR,
        }
        processors: list[str] = []
        synonym = self.rules.synonyms.get(matched)
        if synonym is not None and name not in {"amount", "date"}:
            entity["value"] = synonym
            processors.append(SYNONYM_MAPPER)
        elif name == "amount":
            number = parse_money(matched)
            if number is not None:
                entity["value"] = number
                processors.append("MoneyNormaliser")
        elif name == "date":
            iso = parse_date(matched)
            if iso is not None:
                entity["value"] = iso
                processors.append("DateNormaliser")
        elif name == "phone":
            entity["value"] = re.sub(r"[^\d+]", "", matched)
        if processors:
            entity["processors"] = processors
        return entity
