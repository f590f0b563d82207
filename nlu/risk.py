"""The risk safety net: rules (kept as data in ``nlu/rules/risk.yml``) that flag violence
happening now, threats, self-harm, children in danger and crowds about to fight.

It runs on every message independently of any classifier, in process, for the built-in
and the Rasa backend alike: a resident who writes "他拿刀在砸门" at the end of a long
story about a rent deposit must reach a person even if the classifier files it as
tenancy. A missed emergency can cost a life, a false alarm costs a mediator a look, so
the rules lean towards flagging and only set a match aside on clear evidence:

* ``ignore`` / ``ignore_patterns``: harmless phrases (打官司, 气死我了, kill time,
  打死也不信) are blanked out before matching;
* ``weak``: ambiguous patterns ("他们又在打" at night) count unless the message names a
  harmless reading (麻将, 打牌, 游戏 …);
* ``past``: matches of the kinds listed there are set aside (``past`` signal, not
  flagged) only when the message says the event is over (去年 … 已经离婚了) and shows
  no sign of danger now (现在还, 又来, 害怕 …);
* ``urgency``: "快点来人 / 急急急" is noted as ``urgency``, never flagged by itself;
* ``benign``: an unflagged message with a harmless reading (a game, an idiom, a closed
  past event, urgency only) and none of the ``benign_unless`` words carries the reasons,
  so a caller may discount the classifier's own emergency guess on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nlu.interface import Risk
from nlu.normalise import SCAN_MAX_CHARS, normalise_text
from nlu.regex_firsts import first_characters

RULES_FILE = Path(__file__).parent / "rules" / "risk.yml"
KINDS = ("violence_now", "threat", "self_harm", "child_danger", "group_conflict")


class RiskRulesError(ValueError):
    """The rules file is wrong (bad YAML, a pattern that does not compile)."""


_HAN = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[a-z]")


@dataclass(frozen=True, slots=True)
class _Pattern:
    """One rule, compiled on its own: hundreds of small searches, each with the regex
    engine's first-character shortcut, are 3-10x faster than one big alternation (a
    20,000-character story is scanned in well under 0.1 s). A pattern without Han
    characters is skipped for text without Latin letters, and one without Latin letters
    for pure ASCII text.

    ``firsts`` is the set of characters any match must begin with (``None`` when that
    cannot be told, e.g. ``\\s`` or ``.`` first): a message of 25 characters holds only
    a few of them, so :class:`RiskRules` keeps an index from a character to the patterns
    that can start with it and searches only those (about 30 of 340 on a median
    message). Measured on tests/data/nlu_test.yml: the rules went from 80
    to about 20 µs a message, a sixth of the whole parse (issue 11's 0.5 ms goal)."""

    regex: re.Pattern[str]
    latin: bool
    han: bool
    firsts: frozenset[str] | None

    @classmethod
    def of(cls, pattern: str, where: str) -> _Pattern:
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise RiskRulesError(f"risk rules, {where}: {error}") from None
        han, latin = bool(_HAN.search(pattern)), bool(_LATIN.search(pattern))
        return cls(regex, latin and not han, han and not latin, first_characters(pattern))

    def words(self, text: str, has_latin: bool, is_ascii: bool) -> list[str]:
        if (self.latin and not has_latin) or (self.han and is_ascii):
            return []
        if self.regex.search(text) is None:
            return []
        return [m.group().strip() for m in self.regex.finditer(text) if m.group().strip()]


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    patterns: tuple[_Pattern, ...]


@dataclass(frozen=True, slots=True)
class _Weak:
    """Patterns of one kind that count only when no ``unless`` word is in the message."""

    kind: _Kind
    unless: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class _Past:
    """When matches of ``kinds`` belong to a past event that is over."""

    kinds: frozenset[str]
    closed: re.Pattern[str] | None  # a time that is over by itself (小时候)
    markers: re.Pattern[str] | None  # a past time (去年, 以前) …
    closure: re.Pattern[str] | None  # … plus an end (已经离婚了, 判了)
    present: re.Pattern[str] | None  # any sign of danger now vetoes it all

    def applies(self, text: str, kinds: list[str]) -> bool:
        if not kinds or not set(kinds) <= self.kinds:
            return False
        if self.present is not None and self.present.search(text):
            return False
        if self.closed is not None and self.closed.search(text):
            return True
        return bool(
            self.markers is not None
            and self.closure is not None
            and self.markers.search(text)
            and self.closure.search(text)
        )


def _compile(patterns: list[str], where: str) -> re.Pattern[str]:
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns))
    except re.error as error:
        raise RiskRulesError(f"risk rules, {where}: {error}") from None


def _kind(name: str, patterns: list[str], where: str) -> _Kind:
    return _Kind(name, tuple(_Pattern.of(p, where) for p in patterns))


def _optional(patterns: list[str] | None, where: str) -> re.Pattern[str] | None:
    return _compile([str(p) for p in patterns], where) if patterns else None


class RiskRules:
    """Compiled risk rules; ``check`` is cheap and never raises for odd text."""

    def __init__(
        self,
        kinds: dict[str, list[str]],
        ignore: list[str],
        classifier_threshold: float | None = None,
        *,
        ignore_patterns: list[str] | None = None,
        weak: list[dict[str, Any]] | None = None,
        urgency: list[str] | None = None,
        past: dict[str, list[str]] | None = None,
        benign: dict[str, list[str]] | None = None,
        benign_unless: list[str] | None = None,
    ) -> None:
        #: Flag when the classifier gives ``emergency`` at least this probability, even
        #: if another intent scores higher (see ``classifier_threshold`` in risk.yml).
        self.classifier_threshold = classifier_threshold
        self._kinds = [_kind(name, p, f"kind {name!r}") for name, p in kinds.items()]
        phrases = sorted({normalise_text(p) for p in ignore if p.strip()}, key=len, reverse=True)
        blanks = [re.escape(p) for p in phrases] + list(ignore_patterns or [])
        self._ignore = _compile(blanks, "ignore_patterns") if blanks else None
        self._weak: list[_Weak] = []
        for number, entry in enumerate(weak or [], 1):
            name = str(entry.get("kind", ""))
            where = f"weak rule {number} ({name})"
            if not name or not entry.get("patterns") or not entry.get("unless"):
                raise RiskRulesError(f"risk rules, {where}: needs kind, patterns and unless")
            self._weak.append(
                _Weak(
                    _kind(name, [str(p) for p in entry["patterns"]], where),
                    _compile([re.escape(normalise_text(str(w))) for w in entry["unless"]], where),
                )
            )
        self._index_patterns()
        self._urgency = _optional(urgency, "urgency")
        self._benign = {
            reason: _compile([re.escape(normalise_text(str(w))) for w in words], f"benign {reason}")
            for reason, words in (benign or {}).items()
            if words
        }
        self._benign_unless = _optional(benign_unless, "benign_unless")
        self._past: _Past | None = None
        if past:
            self._past = _Past(
                frozenset(str(k) for k in past.get("kinds") or []),
                _optional(past.get("closed"), "past.closed"),
                _optional(past.get("markers"), "past.markers"),
                _optional(past.get("closure"), "past.closure"),
                _optional(past.get("present"), "past.present"),
            )

    @classmethod
    def from_file(cls, path: Path | str = RULES_FILE) -> RiskRules:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise RiskRulesError(f"{path}: {error}") from None
        kinds = raw.get("kinds") or {}
        if not isinstance(kinds, dict) or not all(isinstance(v, list) for v in kinds.values()):
            raise RiskRulesError(f"{path}: 'kinds' must map a kind name to a list of patterns")
        for name, patterns in kinds.items():
            for pattern in patterns:
                if not isinstance(pattern, str):  # ":a:|:b:" unquoted is a YAML mapping
                    raise RiskRulesError(f"{path}: kind {name!r}: quote the pattern {pattern!r}")
        threshold = raw.get("classifier_threshold")
        if threshold is not None and not (
            isinstance(threshold, int | float) and 0 < threshold <= 1
        ):
            raise RiskRulesError(f"{path}: 'classifier_threshold' must be a number in (0, 1]")
        weak = raw.get("weak") or []
        past = raw.get("past") or {}
        if not isinstance(weak, list) or not all(isinstance(w, dict) for w in weak):
            raise RiskRulesError(f"{path}: 'weak' must be a list of {{kind, patterns, unless}}")
        if not isinstance(past, dict):
            raise RiskRulesError(f"{path}: 'past' must map closed/markers/closure/present/kinds")
        try:
            return cls(
                {k: [str(p) for p in v] for k, v in kinds.items()},
                raw.get("ignore") or [],
                float(threshold) if threshold is not None else None,
                ignore_patterns=[str(p) for p in raw.get("ignore_patterns") or []],
                weak=weak,
                urgency=[str(p) for p in raw.get("urgency") or []],
                past=past,
                benign={str(k): list(v or []) for k, v in (raw.get("benign") or {}).items()},
                benign_unless=[str(p) for p in raw.get("benign_unless") or []],
            )
        except RiskRulesError as error:
            raise RiskRulesError(f"{path}: {error}") from None

    def _index_patterns(self) -> None:
        """Number every pattern in rule order (kinds, then weak rules) and index them by
        the characters a match can start with; see :class:`_Pattern`."""
        self._flat: list[tuple[str, int | None, _Pattern]] = [
            (kind.name, None, pattern) for kind in self._kinds for pattern in kind.patterns
        ]
        self._flat += [
            (weak.kind.name, number, pattern)
            for number, weak in enumerate(self._weak)
            for pattern in weak.kind.patterns
        ]
        self._by_first: dict[str, list[int]] = {}
        unindexed: list[int] = []
        for number, (_, _, pattern) in enumerate(self._flat):
            if pattern.firsts is None:
                unindexed.append(number)
                continue
            for char in pattern.firsts:
                self._by_first.setdefault(char, []).append(number)
        self._unindexed = tuple(unindexed)
        self._kind_names = self.kinds

    @property
    def kinds(self) -> list[str]:
        names = [k.name for k in self._kinds] + [w.kind.name for w in self._weak]
        return list(dict.fromkeys(names))

    def check_normalised(self, text: str) -> Risk:
        """Rules over text that went through :func:`nlu.normalise.normalise` already."""
        whole = text = text[:SCAN_MAX_CHARS]
        if self._ignore is not None:
            text = self._ignore.sub(lambda m: " " * len(m.group()), text)
        has_latin, is_ascii = bool(_LATIN.search(text)), text.isascii()
        found: dict[str, list[str]] = {}
        numbers = set(self._unindexed)
        for char in set(text):
            numbers.update(self._by_first.get(char, ()))
        blocked: dict[int, bool] = {}  # weak rule → one of its ``unless`` words is here
        for number in sorted(numbers):  # rule order, so matches keep their order
            name, weak, pattern = self._flat[number]
            if weak is not None:
                if weak not in blocked:  # 打麻将 is blanked in ``text``, not in ``whole``
                    blocked[weak] = bool(self._weak[weak].unless.search(whole))
                if blocked[weak]:
                    continue
            if words := pattern.words(text, has_latin, is_ascii):
                found.setdefault(name, []).extend(words)
        kinds = [name for name in self._kind_names if name in found]
        matches: list[str] = []
        for name in kinds:
            matches.extend(w for w in dict.fromkeys(found[name]) if w not in matches)
        risk = Risk(flagged=bool(kinds), kinds=kinds, matches=matches)
        if self._past is not None and self._past.applies(whole, kinds):
            risk = Risk(flagged=False, kinds=[], matches=[], past=True, past_matches=matches)
        if self._urgency is not None and self._urgency.search(whole):
            risk["urgency"] = True
        if not risk["flagged"]:
            reasons = [reason for reason, words in self._benign.items() if words.search(whole)]
            reasons += [signal for signal in ("past", "urgency") if risk.get(signal)]
            if reasons and not (self._benign_unless and self._benign_unless.search(whole)):
                risk["benign"] = reasons
        return risk

    def check(self, text: str) -> Risk:
        """Rules over a resident's raw text (normalised here)."""
        return self.check_normalised(normalise_text(text if isinstance(text, str) else str(text)))


def load_risk_rules(path: Path | str | None = None) -> RiskRules:
    return RiskRules.from_file(path or RULES_FILE)
