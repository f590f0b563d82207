"""Reading Rasa 3.x NLU training data (YAML) without Rasa.

The files stay valid for ``rasa data validate nlu``: intents with ``examples``, entity
annotations ``[8000元](amount)``, ``[美团众包]{"entity": "platform", "value": "美团"}``
(and Rasa 2's ``[x](entity:value)``), plus ``synonym:``, ``regex:`` and ``lookup:``
sections. A mistake is reported with its file, line and reason, because the people who
edit these files are mediators and administrators, not programmers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

#: Rasa's entity annotation: [text](entity) / [text](entity:value) / [text]{json}.
ENTITY_ANNOTATION = re.compile(
    r"\[(?P<text>[^\]\[]+?)\]"
    r"(?:\((?P<entity>[^:)(]+?)(?::(?P<value>[^)]+))?\)|\{(?P<json>[^}{]+?)\})"
)
_BROKEN = re.compile(r"\[[^\]]*$|\]\(|\]\{|\[[^\]]*\]\([^)]*$")
SUPPORTED_VERSIONS = {"2.0", "3.0", "3.1"}
SECTION_KEYS = {"intent", "synonym", "regex", "lookup"}


class TrainingDataError(ValueError):
    """A training file is wrong; says which file, which line and why."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, slots=True)
class Entity:
    entity: str
    value: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    intent: str
    entities: tuple[Entity, ...] = ()


@dataclass(slots=True)
class TrainingData:
    """Everything an NLU file set holds."""

    examples: list[Example] = field(default_factory=list)
    synonyms: dict[str, str] = field(default_factory=dict)
    regexes: dict[str, list[str]] = field(default_factory=dict)
    lookups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def intents(self) -> list[str]:
        return sorted({example.intent for example in self.examples})

    def merge(self, other: TrainingData) -> None:
        self.examples.extend(other.examples)
        self.synonyms.update(other.synonyms)
        for name, patterns in other.regexes.items():
            self.regexes.setdefault(name, []).extend(patterns)
        for name, values in other.lookups.items():
            self.lookups.setdefault(name, []).extend(values)

    def fingerprint(self) -> str:
        """SHA-256 over the parsed content (formatting and comments don't change it)."""
        payload = {
            "examples": sorted(
                [e.text, e.intent, [[x.entity, x.value, x.start, x.end] for x in e.entities]]
                for e in self.examples
            ),
            "synonyms": sorted(self.synonyms.items()),
            "regexes": {k: sorted(v) for k, v in sorted(self.regexes.items())},
            "lookups": {k: sorted(v) for k, v in sorted(self.lookups.items())},
        }
        raw = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return hashlib.sha256(raw).hexdigest()


def parse_annotated(text: str) -> tuple[str, list[Entity], list[tuple[str, str]]]:
    """Strip entity annotations from one example.

    Returns the plain text, its entities (offsets into the plain text) and the
    ``(surface text, value)`` pairs that Rasa would add to its synonyms.
    Raises ``ValueError`` for a half-written annotation.
    """
    plain: list[str] = []
    entities: list[Entity] = []
    synonyms: list[tuple[str, str]] = []
    cursor = 0
    for match in ENTITY_ANNOTATION.finditer(text):
        plain.append(text[cursor : match.start()])
        start = sum(len(piece) for piece in plain)
        surface = match.group("text")
        if match.group("json") is not None:
            try:
                spec = json.loads("{" + match.group("json") + "}")
            except json.JSONDecodeError as error:
                raise ValueError(f"entity annotation is not valid JSON: {error.msg}") from None
            if not isinstance(spec, dict) or not isinstance(spec.get("entity"), str):
                raise ValueError('entity annotation needs an "entity" name')
            name = spec["entity"]
            value = str(spec.get("value", surface))
        else:
            name = match.group("entity").strip()
            value = (match.group("value") or surface).strip()
        if not name:
            raise ValueError("entity annotation without an entity name")
        plain.append(surface)
        entities.append(Entity(name, value, start, start + len(surface)))
        if value != surface:
            synonyms.append((surface, value))
        cursor = match.end()
    rest = text[cursor:]
    plain.append(rest)
    leftover = ENTITY_ANNOTATION.sub("", text)
    if _BROKEN.search(leftover):
        raise ValueError("unclosed or malformed entity annotation (expected [text](entity))")
    return "".join(plain), entities, synonyms


def _example_lines(node: yaml.Node) -> Iterator[tuple[int, str]]:
    """Each ``- example`` of an ``examples`` block with its 1-based line in the file."""
    if isinstance(node, yaml.ScalarNode):
        first = node.start_mark.line + (1 if node.style in {"|", ">"} else 0)
        for offset, line in enumerate(str(node.value).splitlines()):
            stripped = line.strip()
            if not stripped:
                continue
            if not stripped.startswith("-"):
                raise TrainingDataError(
                    node.start_mark.name, first + offset + 1, "each example must start with '- '"
                )
            yield first + offset + 1, stripped[1:].strip()
    elif isinstance(node, yaml.SequenceNode):
        # Rasa 3 also allows a list of {text: ..., metadata: ...}.
        for item in node.value:
            line = item.start_mark.line + 1
            if isinstance(item, yaml.MappingNode):
                mapping = {k.value: v for k, v in item.value}
                text_node = mapping.get("text")
                if not isinstance(text_node, yaml.ScalarNode):
                    raise TrainingDataError(item.start_mark.name, line, "example without 'text'")
                yield line, str(text_node.value).strip()
            elif isinstance(item, yaml.ScalarNode):
                yield line, str(item.value).strip()
    else:
        raise TrainingDataError(
            node.start_mark.name, node.start_mark.line + 1, "'examples' must be a block of lines"
        )


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _section_items(path: Path, root: yaml.Node) -> Iterable[yaml.MappingNode]:
    if not isinstance(root, yaml.MappingNode):
        raise TrainingDataError(path, root.start_mark.line + 1, "top level must be a mapping")
    top = {key.value: value for key, value in root.value}
    version = top.get("version")
    if isinstance(version, yaml.ScalarNode) and str(version.value) not in SUPPORTED_VERSIONS:
        raise TrainingDataError(
            path,
            version.start_mark.line + 1,
            f"unsupported training data version {version.value!r}",
        )
    nlu = top.get("nlu")
    if nlu is None:
        return []
    if not isinstance(nlu, yaml.SequenceNode):
        raise TrainingDataError(path, nlu.start_mark.line + 1, "'nlu' must be a list")
    items = []
    for item in nlu.value:
        if not isinstance(item, yaml.MappingNode):
            raise TrainingDataError(
                path, item.start_mark.line + 1, "an 'nlu' item must be a mapping"
            )
        items.append(item)
    return items


def read_file(path: Path) -> TrainingData:
    """Parse one Rasa NLU YAML file."""
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TrainingDataError(path, None, f"not UTF-8 text ({error.reason})") from None
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        raise TrainingDataError(path, line, f"YAML error: {error.problem or error}") from None
    data = TrainingData()
    if root is None:
        return data
    for item in _section_items(path, root):
        fields = {key.value: value for key, value in item.value}
        line = item.start_mark.line + 1
        kinds = SECTION_KEYS & fields.keys()
        if len(kinds) != 1:
            raise TrainingDataError(
                path, line, "an 'nlu' item needs exactly one of intent, synonym, regex, lookup"
            )
        kind = kinds.pop()
        name_node = fields[kind]
        name = str(getattr(name_node, "value", "")).strip()
        if not name or not isinstance(name_node, yaml.ScalarNode):
            raise TrainingDataError(path, line, f"'{kind}' needs a name")
        if "examples" not in fields:
            raise TrainingDataError(path, line, f"{kind} '{name}' has no 'examples'")
        examples_node = fields["examples"]
        examples_node.start_mark.name = str(path)
        for example_line, raw in _example_lines(examples_node):
            text = _unquote(raw)
            if not text:
                continue
            if kind == "intent":
                try:
                    plain, entities, synonyms = parse_annotated(text)
                except ValueError as error:
                    raise TrainingDataError(path, example_line, str(error)) from None
                data.examples.append(Example(plain, name, tuple(entities)))
                for surface, value in synonyms:
                    data.synonyms[surface] = value
            elif kind == "synonym":
                data.synonyms[text] = name
            elif kind == "regex":
                try:
                    re.compile(text)
                except re.error as error:
                    raise TrainingDataError(path, example_line, f"bad regex: {error}") from None
                data.regexes.setdefault(name, []).append(text)
            else:
                data.lookups.setdefault(name, []).append(text)
    return data


def read_training_data(paths: Iterable[Path | str]) -> TrainingData:
    """Read files and directories (every ``*.yml``/``*.yaml`` inside, sorted)."""
    data = TrainingData()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted([*path.rglob("*.yml"), *path.rglob("*.yaml")])
        elif path.exists():
            files = [path]
        else:
            raise TrainingDataError(path, None, "no such file or directory")
        for file in files:
            data.merge(read_file(file))
    if not data.examples and not any(Path(p).is_file() for p in paths):
        raise TrainingDataError(", ".join(str(p) for p in paths), None, "no training examples")
    return data
