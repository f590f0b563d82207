"""Where a case goes and who joins it, from the centre directory in the store.

Where: the community station of the resident's community if it has one, else the street
sub-centre, else the district centre (a case goes to the lowest level that can take it).
Who: the partner department(s) the directory routes the category to; the first in the
file is the lead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Centre, CentreLevel, Department

if TYPE_CHECKING:
    from actions.casework import Network


def route_in(network: Network, street_code: str | None, community: str | None) -> Centre | None:
    """The community station, else the street sub-centre, else the district centre."""
    centres = [c for c in network.by_id.values() if c.active]
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
