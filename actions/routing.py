"""Where a case goes and who joins it, from the centre directory in the store.

Where: the community station of the resident's community if it has one, else the street
sub-centre, else the district centre (a case goes to the lowest level that can take it).
There is always an answer: a case routed to nobody is a resident nobody answers, so an
empty directory is an error, not a ``None``.
Who: of the partner departments the directory routes the kind to, the one working with
the nearest centre up the tree (a street's own legal service station before the
district's legal aid centre); else the first in the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.errors import StoreError
from storage.models import Centre, CentreLevel, Department

if TYPE_CHECKING:
    from actions.casework import Network


class NoRoute(StoreError):
    """The directory cannot place a case (no district centre, or no department)."""


def route_in(network: Network, street_code: str | None, community: str | None) -> Centre:
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
    district = next((c for c in centres if c.level == CentreLevel.DISTRICT), None)
    if district is None:
        raise NoRoute("the centre directory has no district centre: load one first")
    return district


def route_department(network: Network, category: str, centre: Centre) -> Department:
    """The lead partner department for ``category`` at ``centre`` (see module doc)."""
    candidates = [d for d in network.departments.values() if category in (d.categories or [])]
    if not candidates:
        candidates = [
            d for d in network.departments.values() if "dispute_other" in (d.categories or [])
        ]
    if not candidates:
        raise NoRoute(f"no partner department is routed for {category!r}")
    candidates.sort(key=lambda d: d.id)
    node: Centre | None = centre
    while node is not None:
        attached = network.department_ids.get(node.id, set())
        for department in candidates:
            if department.id in attached:
                return department
        node = network.parent(node)
    return candidates[0]
