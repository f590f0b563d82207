"""The centre directory: Bao'an's 1+5+N network and partner departments, as data.

A district office edits a YAML file (``storage/data/baoan_centres.yml``) and loads it
with ``tiaojie centers load FILE``. Loading is an idempotent upsert by ``code``, so the
same file can be loaded again after an edit, and another district loads its own file.
Errors name the file and line, because the person fixing it is looking at the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import DirectoryFileError
from storage.models import Centre, CentreDepartment, CentreLevel, Department
from storage.wechat import set_wecom_webhook

_LINE = "__line__"


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping for error messages."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {
        str(key): value for key, value in loader.construct_mapping(node, deep=True).items()
    }
    mapping[_LINE] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


class ClaimMinutes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    normal: int | None = Field(default=None, gt=0)
    urgent: int | None = Field(default=None, gt=0)


class DepartmentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^[a-z0-9_-]{2,64}$")
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    kind: Literal["administrative", "judicial", "people", "social", "legal_aid"] = "administrative"
    telegram_chat_id: int | None = None


class CentreEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^[a-z0-9_-]{2,64}$")
    level: CentreLevel
    parent: str | None = None
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    street: str | None = None
    community: str | None = None
    communities: list[str] = Field(default_factory=list)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    telegram_chat_id: int | None = None
    telegram_thread_id: int | None = None
    #: WeCom group robot (企业微信群机器人) webhook where the centre's cases are posted.
    wecom_webhook: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=512)
    claim_minutes: ClaimMinutes | None = None
    departments: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _level_fields(self) -> CentreEntry:
        if self.level == CentreLevel.DISTRICT and self.parent is not None:
            raise ValueError("the district centre has no parent")
        if self.level != CentreLevel.DISTRICT and self.parent is None:
            raise ValueError(f"a {self.level.value} centre needs a parent")
        if self.level == CentreLevel.STREET and not self.street:
            raise ValueError("a street centre needs 'street'")
        if self.level == CentreLevel.COMMUNITY and not self.community:
            raise ValueError("a community station needs 'community'")
        return self


@dataclass(slots=True)
class Directory:
    """A validated directory file, ready to load."""

    departments: list[DepartmentEntry]
    centres: list[CentreEntry]
    routing: dict[str, list[str]]


def _fail(path: Path, line: int | None, message: str) -> DirectoryFileError:
    where = f"{path}:{line}" if line else str(path)
    return DirectoryFileError(f"{where}: {message}")


def _entry(model: type[BaseModel], raw: Any, path: Path, section: str, index: int) -> Any:
    if not isinstance(raw, dict):
        raise _fail(path, None, f"{section}[{index}] must be a mapping")
    line = raw.get(_LINE)
    try:
        return model.model_validate(_strip_lines(raw))
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        where = f"{section}[{index}]" + (f".{field}" if field else "")
        message = str(first["msg"]).removeprefix("Value error, ")
        raise _fail(path, line, f"{where}: {message}") from None


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != _LINE}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def parse_directory(path: Path) -> Directory:
    """Read and validate a directory file; raise :class:`DirectoryFileError` on any fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise _fail(path, None, f"cannot read file ({error.strerror})") from None
    try:
        document = yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise _fail(path, line, f"not valid YAML: {error.problem}") from None
    if not isinstance(document, dict):
        raise _fail(path, None, "expected a mapping with 'departments', 'centres', 'routing'")
    departments = [
        _entry(DepartmentEntry, raw, path, "departments", i)
        for i, raw in enumerate(document.get("departments") or [])
    ]
    centres = [
        _entry(CentreEntry, raw, path, "centres", i)
        for i, raw in enumerate(document.get("centres") or [])
    ]
    if not centres:
        raise _fail(path, None, "no centres defined")
    routing_raw = document.get("routing") or {}
    routing_line = routing_raw.get(_LINE) if isinstance(routing_raw, dict) else None
    routing = _strip_lines(routing_raw)
    if not isinstance(routing, dict) or not all(
        isinstance(v, list) and all(isinstance(c, str) for c in v) for v in routing.values()
    ):
        raise _fail(path, routing_line, "routing must map a category to a list of department codes")
    _check_references(path, document, departments, centres, routing, routing_line)
    return Directory(departments=departments, centres=centres, routing=routing)


def _check_references(
    path: Path,
    document: dict[str, Any],
    departments: list[DepartmentEntry],
    centres: list[CentreEntry],
    routing: dict[str, list[str]],
    routing_line: int | None,
) -> None:
    """Codes must be unique and every reference must point at something defined."""
    lines = [raw.get(_LINE) if isinstance(raw, dict) else None for raw in document["centres"]]
    department_codes = {d.code for d in departments}
    if len(department_codes) != len(departments):
        raise _fail(path, None, "department codes must be unique")
    seen: set[str] = set()
    for centre, raw_line in zip(centres, lines, strict=True):
        line = raw_line
        if centre.code in seen:
            raise _fail(path, line, f"centre code {centre.code!r} is used twice")
        seen.add(centre.code)
    districts = [c for c in centres if c.level == CentreLevel.DISTRICT]
    if len(districts) != 1:
        raise _fail(path, None, "exactly one centre must have level 'district'")
    for centre, line in zip(centres, lines, strict=True):
        if centre.parent is not None and centre.parent not in seen:
            raise _fail(path, line, f"parent {centre.parent!r} of {centre.code!r} is not defined")
        for code in centre.departments:
            if code not in department_codes:
                raise _fail(path, line, f"department {code!r} of {centre.code!r} is not defined")
    for category, codes in routing.items():
        for code in codes:
            if code not in department_codes:
                raise _fail(
                    path, routing_line, f"routing {category}: department {code!r} is not defined"
                )


async def load_directory(session: AsyncSession, directory: Directory) -> dict[str, int]:
    """Upsert departments and centres by code; returns counts of created and updated."""
    counts = {"created": 0, "updated": 0}
    departments: dict[str, Department] = {
        d.code: d for d in (await session.execute(select(Department))).scalars()
    }
    categories: dict[str, list[str]] = {}
    for category, codes in directory.routing.items():
        for code in codes:
            categories.setdefault(code, []).append(category)
    for entry in directory.departments:
        values = entry.model_dump()
        values["categories"] = categories.get(entry.code, [])
        counts["created" if _upsert(session, departments, Department, values) else "updated"] += 1
    await session.flush()

    centres: dict[str, Centre] = {
        c.code: c for c in (await session.execute(select(Centre))).scalars()
    }
    for centre_entry in directory.centres:  # parents come first in a well-formed file
        values = centre_entry.model_dump(
            exclude={"parent", "claim_minutes", "departments", "wecom_webhook"}
        )
        minutes = centre_entry.claim_minutes or ClaimMinutes()
        values["claim_minutes_normal"] = minutes.normal
        values["claim_minutes_urgent"] = minutes.urgent
        values["level"] = centre_entry.level
        created = _upsert(session, centres, Centre, values)
        counts["created" if created else "updated"] += 1
    await session.flush()
    for centre_entry in directory.centres:
        centre = centres[centre_entry.code]
        centre.parent_id = centres[centre_entry.parent].id if centre_entry.parent else None
        await set_wecom_webhook(session, centre.id, centre_entry.wecom_webhook)
        await session.execute(
            delete(CentreDepartment).where(CentreDepartment.centre_id == centre.id)
        )
        for code in centre_entry.departments:
            session.add(CentreDepartment(centre_id=centre.id, department_id=departments[code].id))
    await session.flush()
    return counts


def _upsert(
    session: AsyncSession, existing: dict[str, Any], model: type, values: dict[str, Any]
) -> bool:
    row = existing.get(values["code"])
    if row is None:
        row = model(**values)
        session.add(row)
        existing[values["code"]] = row
        return True
    for key, value in values.items():
        setattr(row, key, value)
    return False


async def any_telegram_group(session: AsyncSession) -> bool:
    """Whether any centre of the directory has a Telegram group for its cards."""
    query = select(Centre.id).where(Centre.telegram_chat_id.is_not(None)).limit(1)
    return (await session.execute(query)).first() is not None


async def get_centre(session: AsyncSession, code: str) -> Centre | None:
    return (await session.execute(select(Centre).where(Centre.code == code))).scalar_one_or_none()


async def all_centres(session: AsyncSession) -> list[Centre]:
    return list((await session.execute(select(Centre).order_by(Centre.id))).scalars())


async def first_department_for(session: AsyncSession, category: str) -> Department | None:
    """The first department (file order) the directory routes ``category`` to."""
    departments = (await session.execute(select(Department).order_by(Department.id))).scalars()
    return next((d for d in departments if category in (d.categories or [])), None)


def unheard_centres(directory: Directory) -> tuple[list[str], list[str]]:
    """Centres whose case cards can reach no Telegram group: ``(nowhere, above)``.

    ``nowhere``: neither the centre nor any centre above it has a group, so a card for
    a case there reaches no chat at all; ``above``: no group of its own, its cards go
    to the nearest centre up the tree that has one. The loader warns about both.
    """
    by_code = {entry.code: entry for entry in directory.centres}
    nowhere: list[str] = []
    above: list[str] = []
    for entry in directory.centres:
        if entry.telegram_chat_id is not None:
            continue
        node = by_code.get(entry.parent) if entry.parent else None
        seen = {entry.code}
        while node is not None and node.telegram_chat_id is None and node.code not in seen:
            seen.add(node.code)
            node = by_code.get(node.parent) if node.parent else None
        (above if node is not None and node.telegram_chat_id is not None else nowhere).append(
            entry.code
        )
    return nowhere, above
