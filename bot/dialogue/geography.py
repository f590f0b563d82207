"""Streets and communities a resident can pick, read from the centre directory file.

The engine needs them as plain data (names for buttons, coordinates to map a shared
Telegram location to the nearest street), so they are built once from the same YAML the
store is loaded from, and another district's file gives another district's buttons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from storage.directory import parse_directory
from storage.models import CentreLevel

DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent.parent / "storage/data/baoan_centres.yml"

#: A shared location farther than this from every street centre is outside the district.
MAX_DISTANCE_KM = 25.0


@dataclass(frozen=True, slots=True)
class Street:
    code: str
    name_zh: str
    name_en: str
    latitude: float | None
    longitude: float | None
    communities: tuple[str, ...]

    def name(self, language: str) -> str:
        return self.name_en if language == "en" else self.name_zh


@dataclass(frozen=True, slots=True)
class Geography:
    streets: tuple[Street, ...]

    def street(self, code: str | None) -> Street | None:
        return next((s for s in self.streets if s.code == code), None)

    def street_named(self, name: str) -> Street | None:
        return next((s for s in self.streets if name in (s.name_zh, s.code)), None)

    def find_in_text(self, text: str) -> tuple[Street | None, str | None]:
        """A street and/or community named anywhere in ``text`` (longest names first)."""
        lowered = text.lower()
        street_names = {street.name_zh for street in self.streets}
        for street in self.streets:
            for community in sorted(street.communities, key=len, reverse=True):
                # 福永 is both a street and a community: the street reading wins.
                if community in text and community not in street_names:
                    return street, community
        for street in self.streets:
            english = street.name_en.split(" ")[0].lower().replace("'", "")
            if street.name_zh in text or english in lowered.replace("'", ""):
                return street, None
        return None, None

    def nearest(self, latitude: float, longitude: float) -> Street | None:
        """The street whose centre is closest, or None when all are too far away."""
        best: tuple[float, Street] | None = None
        for street in self.streets:
            if street.latitude is None or street.longitude is None:
                continue
            distance = _haversine_km(latitude, longitude, street.latitude, street.longitude)
            if best is None or distance < best[0]:
                best = (distance, street)
        if best is None or best[0] > MAX_DISTANCE_KM:
            return None
        return best[1]


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def load_geography(path: Path = DEFAULT_DIRECTORY) -> Geography:
    directory = parse_directory(path)
    stations: dict[str, list[str]] = {}
    for entry in directory.centres:
        if entry.level == CentreLevel.COMMUNITY and entry.parent and entry.community:
            stations.setdefault(entry.parent, []).append(entry.community)
    streets = []
    for entry in directory.centres:
        if entry.level != CentreLevel.STREET or not entry.street:
            continue
        communities = list(entry.communities)
        communities += [c for c in stations.get(entry.code, []) if c not in communities]
        english = entry.name_en.split(" Street")[0]
        streets.append(
            Street(
                code=entry.code,
                name_zh=entry.street,
                name_en=english,
                latitude=entry.latitude,
                longitude=entry.longitude,
                communities=tuple(communities),
            )
        )
    return Geography(tuple(streets))


@cache
def default_geography() -> Geography:
    return load_geography()
