"""Key rotation: re-encrypt every encrypted column with the current (first) key.

Resumable without a progress table: a value already encrypted under the first key is
skipped, so a run interrupted after some batches (each batch is its own transaction)
and started again finishes the job and counts only what is left. Within a run rows
are walked by primary key (keyset paging), so a batch never re-reads what it just wrote.
During the rotation every value stays readable: the vault decrypts under any key.

The encrypted columns are the phone numbers and every sealed original of a free text
(:mod:`storage.sealed`: the case's words, summary, form answers and rating comment,
timeline entries, conversation drafts, outbox messages, summons texts, replies kept for a
redelivered update). Rows written
before texts were sealed may still hold numbers in the clear: :func:`seal_clear_text`
masks them and seals their originals, in the same resumable way (a sealed row is
skipped; a row with nothing to hide stays as it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, select, true, tuple_, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import schema  # noqa: F401  (every table module registers its sealed columns)
from storage.models import Case, Resident
from storage.phone import PhoneVault
from storage.sealed import SealedColumn, sealed_columns

#: The phone numbers: (model, column name). Sealed texts are added from the registry.
PHONE_COLUMNS: list[tuple[Any, str]] = [
    (Resident, "phone_encrypted"),
    (Case, "phone_encrypted"),
]


def encrypted_columns() -> list[tuple[Any, str]]:
    """Every encrypted column: (model, column name), phones first."""
    return PHONE_COLUMNS + [(c.model, c.sealed) for c in sealed_columns()]


#: Every encrypted column, as (model, column name).
ENCRYPTED_COLUMNS: list[tuple[Any, str]] = encrypted_columns()


@dataclass(slots=True)
class RotationReport:
    rotated: int = 0
    current: int = 0
    unreadable: int = 0
    batches: int = 0
    per_column: dict[str, int] = field(default_factory=dict)
    finished: bool = True
    #: Rows whose clear-text numbers :func:`seal_clear_text` masked and sealed.
    sealed: int = 0


async def rotate_keys(
    sessions: async_sessionmaker[AsyncSession],
    vault: PhoneVault,
    *,
    batch_size: int = 500,
    max_batches: int | None = None,
) -> RotationReport:
    """Re-encrypt under the first key; ``max_batches`` stops early (a resumable stop)."""
    report = RotationReport()
    for model, name in encrypted_columns():
        column = getattr(model, name)
        label = f"{model.__tablename__}.{name}"
        report.per_column.setdefault(label, 0)
        keys = _primary_key(model)
        last: tuple[Any, ...] | None = None
        while True:
            if max_batches is not None and report.batches >= max_batches:
                report.finished = False
                return report
            async with sessions.begin() as session:
                rows = (
                    await session.execute(
                        select(*keys, column)
                        .where(_after(keys, last), column.is_not(None))
                        .order_by(*keys)
                        .limit(batch_size)
                    )
                ).all()
                if not rows:
                    break
                for row in rows:
                    last, token = tuple(row[:-1]), row[-1]
                    if vault.is_current(token):
                        report.current += 1
                        continue
                    fresh = vault.rotate(token)
                    if fresh is None:
                        report.unreadable += 1
                        continue
                    # Core, on purpose: the timeline's append-only guard is an ORM
                    # listener, and re-encrypting an entry changes no word of it.
                    await session.execute(
                        update(model)
                        .where(_at(keys, last), column == token)
                        .values({name: fresh})
                        .execution_options(synchronize_session=False)
                    )
                    report.rotated += 1
                    report.per_column[label] += 1
            report.batches += 1
    return report


async def seal_clear_text(
    sessions: async_sessionmaker[AsyncSession],
    vault: PhoneVault,
    *,
    batch_size: int = 500,
    report: RotationReport | None = None,
) -> RotationReport:
    """Mask and seal personal numbers still in the clear (rows from before sealing)."""
    report = report or RotationReport()
    for column in sealed_columns():
        await _seal_column(sessions, vault, column, batch_size, report)
    return report


async def _seal_column(
    sessions: async_sessionmaker[AsyncSession],
    vault: PhoneVault,
    column: SealedColumn,
    batch_size: int,
    report: RotationReport,
) -> None:
    model = column.model
    shown, kept = getattr(model, column.attr), getattr(model, column.sealed)
    keys = _primary_key(model)
    last: tuple[Any, ...] | None = None
    while True:
        async with sessions.begin() as session:
            rows = (
                await session.execute(
                    select(*keys, shown)
                    .where(_after(keys, last), kept.is_(None))
                    .order_by(*keys)
                    .limit(batch_size)
                )
            ).all()
            if not rows:
                return
            for row in rows:
                last, value = tuple(row[:-1]), row[-1]
                masked, token = column.seal(value, vault)
                if token is None:
                    continue
                await session.execute(
                    update(model)
                    .where(_at(keys, last), kept.is_(None))
                    .values({column.attr: masked, column.sealed: token})
                    .execution_options(synchronize_session=False)
                )
                report.sealed += 1
                report.per_column[column.label] = report.per_column.get(column.label, 0) + 1


def _primary_key(model: Any) -> list[Any]:
    """The model's key columns (``id``, or ``(source, update_id)`` of processed updates)."""
    return [getattr(model, column.key) for column in sa_inspect(model).primary_key]


def _after(keys: list[Any], last: tuple[Any, ...] | None) -> Any:
    """Rows after ``last`` in key order (keyset paging), every row when None."""
    if last is None:
        return true()
    if len(keys) == 1:
        return keys[0] > last[0]
    return tuple_(*keys) > tuple_(*last)


def _at(keys: list[Any], values: tuple[Any, ...]) -> Any:
    return and_(*(key == value for key, value in zip(keys, values, strict=True)))
