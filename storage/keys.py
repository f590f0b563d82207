"""Key rotation: re-encrypt every encrypted column with the current (first) key.

Resumable without a progress table: a value already encrypted under the first key is
skipped, so a run interrupted after some batches (each batch is its own transaction)
and started again finishes the job and counts only what is left. Within a run rows
are walked by id (keyset paging), so a batch never re-reads what it just wrote.
During the rotation every value stays readable: the vault decrypts under any key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Case, Resident
from storage.phone import PhoneVault

#: Every encrypted column: (model, column name). Add new ones here.
ENCRYPTED_COLUMNS: list[tuple[Any, str]] = [
    (Resident, "phone_encrypted"),
    (Case, "phone_encrypted"),
]


@dataclass(slots=True)
class RotationReport:
    rotated: int = 0
    current: int = 0
    unreadable: int = 0
    batches: int = 0
    per_column: dict[str, int] = field(default_factory=dict)
    finished: bool = True


async def rotate_keys(
    sessions: async_sessionmaker[AsyncSession],
    vault: PhoneVault,
    *,
    batch_size: int = 500,
    max_batches: int | None = None,
) -> RotationReport:
    """Re-encrypt under the first key; ``max_batches`` stops early (a resumable stop)."""
    report = RotationReport()
    for model, name in ENCRYPTED_COLUMNS:
        column = getattr(model, name)
        label = f"{model.__tablename__}.{name}"
        report.per_column.setdefault(label, 0)
        last_id = 0
        while True:
            if max_batches is not None and report.batches >= max_batches:
                report.finished = False
                return report
            async with sessions.begin() as session:
                rows = (
                    await session.execute(
                        select(model.id, column)
                        .where(model.id > last_id, column.is_not(None))
                        .order_by(model.id)
                        .limit(batch_size)
                    )
                ).all()
                if not rows:
                    break
                for row_id, token in rows:
                    last_id = row_id
                    if vault.is_current(token):
                        report.current += 1
                        continue
                    fresh = vault.rotate(token)
                    if fresh is None:
                        report.unreadable += 1
                        continue
                    await session.execute(
                        update(model)
                        .where(model.id == row_id, column == token)
                        .values({name: fresh})
                        .execution_options(synchronize_session=False)
                    )
                    report.rotated += 1
                    report.per_column[label] += 1
            report.batches += 1
    return report
