"""The risk safety net: rules (kept as data in ``nlu/rules/risk.yml``) that flag violence
happening now, threats, self-harm and children in danger.

It runs on every message independently of any classifier, in process, for the built-in
and the Rasa backend alike: a resident who writes "他拿刀在砸门" at the end of a long
story about a rent deposit must reach a person even if the classifier files it as
tenancy. Harmless phrases (打官司, 气死我了, kill time) are blanked out before matching.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from nlu.interface import Risk
from nlu.normalise import SCAN_MAX_CHARS, normalise_text

RULES_FILE = Path(__file__).parent / "rules" / "risk.yml"
KINDS = ("violence_now", "threat", "self_harm", "child_danger")


class RiskRulesError(ValueError):
    """The rules file is wrong (bad YAML, a pattern that does not compile)."""


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    pattern: re.Pattern[str]


class RiskRules:
    """Compiled risk rules; ``check`` is cheap and never raises for odd text."""

    def __init__(
        self,
        kinds: dict[str, list[str]],
        ignore: list[str],
        classifier_threshold: float | None = None,
    ) -> None:
        #: Flag when the classifier gives ``emergency`` at least this probability, even
        #: if another intent scores higher (see ``classifier_threshold`` in risk.yml).
        self.classifier_threshold = classifier_threshold
        self._kinds: list[_Kind] = []
        for name, patterns in kinds.items():
            try:
                compiled = re.compile("|".join(f"(?:{p})" for p in patterns))
            except re.error as error:
                raise RiskRulesError(f"risk rules, kind {name!r}: {error}") from None
            self._kinds.append(_Kind(name, compiled))
        phrases = sorted({normalise_text(p) for p in ignore if p.strip()}, key=len, reverse=True)
        self._ignore = re.compile("|".join(re.escape(p) for p in phrases)) if phrases else None

    @classmethod
    def from_file(cls, path: Path | str = RULES_FILE) -> RiskRules:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise RiskRulesError(f"{path}: {error}") from None
        kinds = raw.get("kinds") or {}
        if not isinstance(kinds, dict) or not all(isinstance(v, list) for v in kinds.values()):
            raise RiskRulesError(f"{path}: 'kinds' must map a kind name to a list of patterns")
        threshold = raw.get("classifier_threshold")
        if threshold is not None and not (
            isinstance(threshold, int | float) and 0 < threshold <= 1
        ):
            raise RiskRulesError(f"{path}: 'classifier_threshold' must be a number in (0, 1]")
        return cls(
            {k: [str(p) for p in v] for k, v in kinds.items()},
            raw.get("ignore") or [],
            float(threshold) if threshold is not None else None,
        )

    @property
    def kinds(self) -> list[str]:
        return [kind.name for kind in self._kinds]

    def check_normalised(self, text: str) -> Risk:
        """Rules over text that went through :func:`nlu.normalise.normalise` already."""
        text = text[:SCAN_MAX_CHARS]
        if self._ignore is not None:
            text = self._ignore.sub(lambda m: " " * len(m.group()), text)
        kinds: list[str] = []
        matches: list[str] = []
        for kind in self._kinds:
            found = [m.group().strip() for m in kind.pattern.finditer(text) if m.group().strip()]
            if found:
                kinds.append(kind.name)
                matches.extend(x for x in dict.fromkeys(found) if x not in matches)
        return Risk(flagged=bool(kinds), kinds=kinds, matches=matches)

    def check(self, text: str) -> Risk:
        """Rules over a resident's raw text (normalised here)."""
        return self.check_normalised(normalise_text(text if isinstance(text, str) else str(text)))


def load_risk_rules(path: Path | str | None = None) -> RiskRules:
    return RiskRules.from_file(path or RULES_FILE)
