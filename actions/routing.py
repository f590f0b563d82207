"""Where a case goes and who joins it, from the centre directory in the store.

Where: the community station of the resident's community if it has one, else the street
sub-centre, else the district centre (a case goes to the lowest level that can take it).
Who: the partner department(s) the directory routes the category to; the first in the
file is the lead.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Centre, CentreLevel, Department


async def route_centre(
    session: AsyncSession, street_code: str | None, community: str | None
) -> Centre | None:
    centres = list((await session.execute(select(Centre).where(Centre.active))).scalars())
    street = next(
        (c for c in centres if c.level == CentreLevel.STREET and c.code == street_code), None
    )
    if street is not None and community:
        station = next(
            (
                c
                for c in centres
                if c.level == CentreLevel.COMMUNITY
                and c.parent_id == street.id
                and c.community == community
            ),
            None,
        )
        if station is not None:
            return station
    if street is not None:
        return street
    return next((c for c in centres if c.level == CentreLevel.DISTRICT), None)


async def route_department(session: AsyncSession, category: str) -> Department | None:
    """The lead partner department for ``category`` (directory order), if any."""
    departments = (await session.execute(select(Department).order_by(Department.id))).scalars()
    return next((d for d in departments if category in (d.categories or [])), None)
