"""The centre directory file: loading, idempotence, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.runtime import Store
from storage.directory import get_centre, load_directory, parse_directory
from storage.errors import DirectoryFileError
from storage.models import Centre, CentreLevel, Department
from tests.conftest import CENTRES_FILE


def test_baoan_file_has_the_network() -> None:
    directory = parse_directory(CENTRES_FILE)
    streets = {c.street for c in directory.centres if c.level == CentreLevel.STREET}
    assert streets == {
        "新安",
        "西乡",
        "航城",
        "福永",
        "福海",
        "沙井",
        "新桥",
        "松岗",
        "燕罗",
        "石岩",
    }
    codes = {d.code for d in directory.departments}
    assert {
        "labour_bureau",
        "market_regulation",
        "traffic_police",
        "medical_committee",
        "womens_federation",
        "court",
        "fuyong_gig_labour_room",
    } <= codes
    assert directory.routing["dispute_gig_work"][0] == "fuyong_gig_labour_room"
    assert sum(c.level == CentreLevel.COMMUNITY for c in directory.centres) >= 20


async def test_load_is_idempotent(store: Store) -> None:
    # The fixture database already holds the file once; load it twice more.
    for _ in range(2):
        async with store.sessions.begin() as session:
            counts = await load_directory(session, parse_directory(CENTRES_FILE))
        assert counts["created"] == 0
    async with store.sessions() as session:
        centres = (await session.execute(select(func.count()).select_from(Centre))).scalar_one()
        departments = (
            await session.execute(select(func.count()).select_from(Department))
        ).scalar_one()
        gushu = await get_centre(session, "xixiang-gushu")
        fuyong = await get_centre(session, "fuyong")
    assert centres == 31 and departments == 24
    assert gushu is not None and gushu.community == "固戍" and gushu.level == CentreLevel.COMMUNITY
    assert fuyong is not None and "fuyong_gig_labour_room" in {d.code for d in fuyong.departments}


async def test_another_district_updates_in_place(store: Store, tmp_path: Path) -> None:
    changed = CENTRES_FILE.read_text(encoding="utf-8").replace(
        "name_zh: 固戍社区多元调处站", "name_zh: 固戍社区调处站(新)"
    )
    path = tmp_path / "changed.yml"
    path.write_text(changed, encoding="utf-8")
    async with store.sessions.begin() as session:
        counts = await load_directory(session, parse_directory(path))
    assert counts == {"created": 0, "updated": 55}
    async with store.sessions() as session:
        assert (await get_centre(session, "xixiang-gushu")).name_zh == "固戍社区调处站(新)"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("centres:\n  - code: a\n    level: [\n", r"bad\.yml:\d+: not valid YAML"),
        (
            "centres:\n  - code: baoan\n    level: district\n    name_zh: 区\n    name_en: D\n"
            "  - code: xx\n    level: street\n    parent: baoan\n    name_zh: 街\n",
            r"bad\.yml:6: centres\[1\]\.name_en: Field required",
        ),
        (
            "centres:\n  - code: baoan\n    level: district\n    name_zh: 区\n    name_en: D\n"
            "  - code: xx\n    level: street\n    parent: nowhere\n    street: 西乡\n"
            "    name_zh: 街\n    name_en: S\n",
            r"bad\.yml:6: parent 'nowhere' of 'xx' is not defined",
        ),
        (
            "centres:\n  - code: baoan\n    level: planet\n    name_zh: 区\n    name_en: D\n",
            r"bad\.yml:2: centres\[0\]\.level: Input should be",
        ),
        ("- just a list\n", r"expected a mapping"),
    ],
)
def test_malformed_file_names_the_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DirectoryFileError, match=expected):
        parse_directory(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DirectoryFileError, match="cannot read file"):
        parse_directory(tmp_path / "absent.yml")
