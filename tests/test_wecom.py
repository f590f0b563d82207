"""WeCom group robots: the directory's ``wecom_webhook``, markdown cards posted to a
stand-in robot on 127.0.0.1, the per-robot rate limit and retries of refused cards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from actions.ports import CardTarget, CaseCard
from bot.channels.wecom import SlidingWindow, WeComRobotTarget, render_card, robot_id
from bot.runtime import Store
from storage.directory import load_directory, parse_directory
from storage.wechat import wecom_webhook
from tests.conftest import CENTRES_FILE
from tests.support.wechat_api import WeChatApiStandIn

ROBOT = "/cgi-bin/webhook/send"


def urgent_card(reference: str = "BA-20261130-0007") -> CaseCard:
    return CaseCard(
        reference=reference,
        kind_title="婚姻家庭",
        risk="urgent",
        risk_badge="🔴 紧急",
        place="西乡 · 固戍",
        phone_masked="139****1111",
        summary="丈夫威胁要动手",
        status="new",
        trigger="他说今晚要打死我,电话13900001111",
    )


def directory_with_robot(tmp_path: Path, url: str | None) -> Path:
    """The Bao'an file with a robot on the 西乡 street centre (or none)."""
    document = yaml.safe_load(CENTRES_FILE.read_text(encoding="utf-8"))
    for centre in document["centres"]:
        if centre["code"] == "xixiang":
            if url is None:
                centre.pop("wecom_webhook", None)
            else:
                centre["wecom_webhook"] = url
    path = tmp_path / "centres.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
async def robot(store: Store, tmp_path: Path) -> AsyncIterator[tuple[WeChatApiStandIn, str]]:
    async with WeChatApiStandIn() as api:
        url = api.robot_url("robot-key-xixiang")
        async with store.sessions.begin() as session:
            await load_directory(session, parse_directory(directory_with_robot(tmp_path, url)))
        yield api, url


async def test_directory_field_is_optional_and_reloads(store: Store, tmp_path: Path) -> None:
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc"
    async with store.sessions.begin() as session:
        await load_directory(session, parse_directory(directory_with_robot(tmp_path, url)))
    async with store.sessions() as session:
        assert await wecom_webhook(session, "xixiang") == url
        assert await wecom_webhook(session, "xinan") is None
    # A file without the field (every existing one) loads, and removes the robot.
    async with store.sessions.begin() as session:
        await load_directory(session, parse_directory(CENTRES_FILE))
    async with store.sessions() as session:
        assert await wecom_webhook(session, "xixiang") is None


def test_directory_refuses_a_webhook_that_is_not_a_url(tmp_path: Path) -> None:
    from storage.errors import DirectoryFileError

    with pytest.raises(DirectoryFileError, match="wecom_webhook"):
        parse_directory(directory_with_robot(tmp_path, "not a url"))


def test_card_is_masked_markdown_with_a_link() -> None:
    text = render_card(urgent_card(), "zh", "https://desk.example.org")
    assert text.startswith("### 🚨 紧急案件 BA-20261130-0007")
    assert "婚姻家庭" in text and "西乡 · 固戍" in text and "139****1111" in text
    assert '<font color="warning">🔴 紧急</font>' in text
    assert "[在工作台打开](https://desk.example.org/desk/cases/BA-20261130-0007)" in text
    # Neither the resident's words nor a phone in the clear.
    assert "13900001111" not in text and "打死" not in text


async def test_urgent_case_posts_a_card_to_the_centres_robot(robot, store: Store) -> None:
    api, url = robot
    target = WeComRobotTarget(store, desk_url="https://desk.example.org")
    assert isinstance(target, CardTarget)
    try:
        posted = await target.post("xixiang", urgent_card())
        assert posted == {"robot": robot_id(url), "risk": "urgent"}
        [call] = await api.wait_for(ROBOT)
        assert call.query == {"key": "robot-key-xixiang"}
        assert call.body["msgtype"] == "markdown"
        assert "BA-20261130-0007" in call.body["markdown"]["content"]
        # A centre without a robot: nothing to post.
        assert await target.post("xinan", urgent_card()) is None
    finally:
        await target.close()


async def test_refused_cards_are_retried_later_not_dropped(robot, store: Store) -> None:
    api, _ = robot
    api.fail_next(ROBOT, 2, status=429)
    target = WeComRobotTarget(store, retry_after=0.2)
    try:
        await target.post("xixiang", urgent_card("BA-20261130-0001"))
        await target.post("xixiang", urgent_card("BA-20261130-0002"))
        await target.join()
        statuses = [c.status for c in api.calls if c.path == ROBOT]
        assert statuses == [429, 429, 200, 200]
        delivered = [c.body["markdown"]["content"] for c in api.sent(ROBOT)]
        assert ["0001" in delivered[0], "0002" in delivered[1]] == [True, True], "order kept"
        # WeCom's own "too many" error code is retried the same way.
        api.fail_next(ROBOT, 1, errcode=45009)
        await target.post("xixiang", urgent_card("BA-20261130-0003"))
        await target.join()
        assert len(api.sent(ROBOT)) == 3 and target.dropped == 0
    finally:
        await target.close()


async def test_limiter_allows_twenty_a_minute_per_robot() -> None:
    now = [1000.0]
    window = SlidingWindow(20, 60.0, clock=lambda: now[0])
    for _ in range(20):
        assert window.wait_time() == 0
        await window.acquire()
    assert window.wait_time() == pytest.approx(60.0)
    now[0] += 30
    assert window.wait_time() == pytest.approx(30.0)
    now[0] += 30
    assert window.wait_time() == 0


async def test_resident_in_danger_alerts_the_centres_wecom_group(
    db_url: str, nlu, tmp_path: Path
) -> None:
    """Through the real app: an emergency message files an urgent case at once, and its
    centre's robot gets the card (every centre has one here, wherever it routes)."""
    from aiohttp.test_utils import TestClient, TestServer

    from bot.channels.wecom import WECOM
    from bot.settings import load_settings
    from bot.web import create_app

    async with WeChatApiStandIn() as api:
        document = yaml.safe_load(CENTRES_FILE.read_text(encoding="utf-8"))
        for centre in document["centres"]:
            centre["wecom_webhook"] = api.robot_url(f"key-{centre['code']}")
        path = tmp_path / "centres.yml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        settings = load_settings(
            database_url=db_url, data_dir=tmp_path / "var", public_url="https://desk.example.org"
        )
        store = Store.open(settings)
        async with store.sessions.begin() as session:
            await load_directory(session, parse_directory(path))
        app = create_app(settings, nlu, store=store)
        try:
            async with TestClient(TestServer(app)) as http:
                response = await http.post(
                    "/webhooks/rest/webhook",
                    json={"sender": "r-1", "message": "我老公拿着刀说今晚要杀了我"},
                )
                assert response.status == 200
                await app[WECOM].join()
                calls = await api.wait_for(ROBOT)
        finally:
            await store.close()
    # Without a street yet the case is the district centre's; the desk posts it there.
    assert {c.query["key"] for c in calls} == {"key-baoan"}
    for call in calls:
        content = call.body["markdown"]["content"]
        assert content.startswith("### 🚨 紧急案件 BA-")
        reference = content.split()[3]
        assert f"https://desk.example.org/desk/cases/{reference}" in content
        assert "刀" not in content and "categories." not in content
