"""How many open cases each centre holds, by status: the queue an operator watches.

One grouped query over the ``(centre_id, status)`` index, so it stays cheap however
many cases are closed. Every active centre is in the answer, with zeros where nothing
is open, so a queue that empties shows 0 rather than disappearing.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.cases import OPEN_STATUSES
from storage.models import Case, Centre


async def queue_depths(session: AsyncSession) -> dict[str, dict[str, int]]:
    """``{centre code: {status: open cases}}`` for every active centre and open status."""
    centres = (await session.execute(select(Centre.code).where(Centre.active))).scalars()
    depths = {code: {status.value: 0 for status in OPEN_STATUSES} for code in centres}
    counted = await session.execute(
        select(Centre.code, Case.status, func.count())
        .join(Case, Case.centre_id == Centre.id)
        .where(Case.status.in_(OPEN_STATUSES))
        .group_by(Centre.code, Case.status)
    )
    for code, status, count in counted:
        depths.setdefault(code, {s.value: 0 for s in OPEN_STATUSES})[status.value] = int(count)
    return depths
