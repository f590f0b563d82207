"""Two processes meeting the same new resident at once: both get the one row.

Finding 10: on PostgreSQL the loser of the insert race failed with an IntegrityError
and told the resident "not saved, please send again" although the case was filed.
Two engines stand for two processes; the first holds its new row uncommitted while the
second arrives, which is exactly the window the old SELECT-then-INSERT lost in.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import create_engine, session_factory
from storage.models import Resident
from storage.people import get_or_create_resident


async def _winner(engine: AsyncEngine, external: str, inserted: asyncio.Event) -> int:
    async with session_factory(engine).begin() as session:
        resident = await get_or_create_resident(session, "rest", external)
        inserted.set()
        await asyncio.sleep(0.4)  # the row exists, uncommitted
        return resident.id


async def _loser(engine: AsyncEngine, external: str, inserted: asyncio.Event) -> int:
    await inserted.wait()
    async with session_factory(engine).begin() as session:
        return (await get_or_create_resident(session, "rest", external, "en")).id


async def test_concurrent_get_or_create_resident_from_two_engines(db_url: str) -> None:
    first, second = create_engine(db_url), create_engine(db_url)
    try:
        for round_ in range(3):
            external = f"race-{round_}"
            inserted = asyncio.Event()

            ids = await asyncio.gather(
                _winner(first, external, inserted), _loser(second, external, inserted)
            )
            assert ids[0] == ids[1]

        # Many at once, in both directions, each in its own transaction.
        async def one(engine: AsyncEngine, name: str) -> int:
            async with session_factory(engine).begin() as session:
                return (await get_or_create_resident(session, "rest", name)).id

        names = [f"crowd-{i % 5}" for i in range(20)]
        crowd = await asyncio.gather(
            *(one(first if i % 2 else second, name) for i, name in enumerate(names))
        )
        by_name: dict[str, set[int]] = {}
        for name, id_ in zip(names, crowd, strict=True):
            by_name.setdefault(name, set()).add(id_)
        assert all(len(found) == 1 for found in by_name.values())
        async with session_factory(first)() as session:
            count = (
                await session.execute(
                    select(func.count()).select_from(Resident).where(Resident.channel == "rest")
                )
            ).scalar_one()
        assert count == 3 + 5
    finally:
        await first.dispose()
        await second.dispose()
