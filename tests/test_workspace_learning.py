"""The workspace's learning pages through aiohttp's test client, on real databases.

Review inbox (sorting, masking, labelling by POST and by ``fetch``, filters, bulk),
retraining started from the page with its live progress, the gate's comparison and the
model registry (activate, override with a reason, roll back). Admins only; everyone
else gets a polite 403; bad input a polite 4xx; a request without the CSRF token 403.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from actions import learning
from bot.runtime import Store
from nlu.gate import DataSet, compare
from nlu.training_data import Example, read_training_data
from storage.db import create_engine, session_factory
from storage.models import MediatorRole
from storage.nlu_registry import ModelStatus, NluModel, get_model, register, set_active
from storage.phone import PhoneVault
from storage.review import CaptureStatus, NluCapture
from tests.conftest import ROOT
from tests.workspace_support import (
    RecordingPort,
    add_user,
    client_factory,
    csrf_of,
    sign_in,
    token_from,
)

PHONE = "13812345678"
MESSAGES = {
    "wages": "老板拖欠了我三个月工资八千块,电话13812345678",
    "deposit": "房东不退押金三千块怎么办",
    "noise": "楼上天天半夜蹦迪吵得睡不着",
    "hello": "在吗",
    "rider": "骑手被平台罚款五百,说我差评太多",
}


@pytest.fixture
def port() -> RecordingPort:
    return RecordingPort("rest")


@pytest.fixture
async def make_client(store: Store, tmp_path: Path, port: RecordingPort) -> AsyncIterator[Any]:
    async for make in client_factory(store, tmp_path, port):
        yield make


async def admin_client(store: Store, make_client: Any, tmp_path: Path) -> Any:
    client = await make_client(model_dir=tmp_path / "models")
    await add_user(store, "wang", "baoan", MediatorRole.ADMIN, name="王管理员")
    assert (await sign_in(client, "wang")).status == 303
    return client


async def capture(store: Store, nlu: Any, text: str, chat: str, *, denied: bool = False) -> int:
    """A resident's first message as the runner keeps it (real parse, masked text)."""
    async with store.sessions.begin() as session:
        row = await learning.capture_first_message(
            session,
            text=text,
            parse=nlu.parse_sync(text),
            channel="rest",
            chat_id=chat,
            model_version="test-model",
        )
        if denied:
            await learning.capture_kind_answer(
                session, channel="rest", chat_id=chat, proposed=row.predicted, affirmed=False
            )
        return row.id


async def captures(store: Store, nlu: Any) -> dict[str, int]:
    ids = {}
    for i, (name, text) in enumerate(MESSAGES.items()):
        ids[name] = await capture(store, nlu, text, f"chat-{i}", denied=name == "noise")
    return ids


async def row_of(store: Store, capture_id: int) -> NluCapture:
    async with store.sessions() as session:
        found = await session.get(NluCapture, capture_id)
        assert found is not None
        return found


def item_order(html: str) -> list[int]:
    """The ids of the items on an inbox page, top to bottom."""
    order = []
    for part in html.split('class="learn-item')[1:]:
        order.append(int(part.split('data-id="')[1].split('"')[0]))
    return order


# ------------------------------------------------------------------------------- roles


async def test_only_admins_reach_the_learning_pages(store: Store, make_client, tmp_path) -> None:
    client = await make_client(model_dir=tmp_path / "models")
    paths = ["/desk/learn", "/desk/learn/models", "/desk/learn/models/nlu-x"]
    for path in paths:  # signed out: the sign-in page
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303 and "/desk/signin" in response.headers["Location"]
    for username, centre, role in (
        ("li", "xixiang", MediatorRole.MEDIATOR),
        ("zhou", "xixiang", MediatorRole.SUPERVISOR),
        ("fulian", "baoan", MediatorRole.DEPARTMENT),
    ):
        other = await make_client(model_dir=tmp_path / "models")
        await add_user(store, username, centre, role)
        assert (await sign_in(other, username)).status == 303
        for path in paths:
            response = await other.get(path)
            assert response.status == 403, path
            assert "没有权限" in await response.text()
        token = await token_from(other, "/desk/")
        for path in ("/desk/learn/items/1", "/desk/learn/train", "/desk/learn/rollback"):
            response = await other.post(path, data={"csrf": token, "intent": "greet"})
            assert response.status == 403, path
    async with store.sessions() as session:
        assert (await session.execute(select(NluModel))).first() is None


# ------------------------------------------------------------------------------- inbox


async def test_inbox_sorted_masked_with_the_top_three(store, make_client, tmp_path, nlu) -> None:
    ids = await captures(store, nlu)
    client = await admin_client(store, make_client, tmp_path)
    page = await client.get("/desk/learn")
    assert page.status == 200
    html = await page.text()
    async with store.sessions() as session:
        expected = [item.id for item in await learning.inbox(session)]
    assert item_order(html) == expected  # the service's own order
    assert expected[0] == ids["noise"]  # the resident said no: a disagreement first
    assert PHONE not in html and "138****5678" in html
    first = html.split('id="item-')[1].split("</article>")[0]
    top = (await row_of(store, ids["noise"])).parse["ranking"][:3]
    for key, choice in enumerate(top, start=1):
        assert f'value="{choice["name"]}" data-key="{key}"' in first
    assert 'data-key="s"' in first and 'data-key="n"' in first
    assert "居民否认了类型" in first  # the signal, in words
    assert "/desk/learn" in html and "/desk/learn/models" in html  # the admin nav
    # English a click away, every text from the catalogue.
    await client.post("/desk/lang", data={"csrf": csrf_of(html), "to": "en", "next": "/desk/"})
    english = await (await client.get("/desk/learn")).text()
    assert "Language model review inbox" in english and "resident said no to the kind" in english
    assert "learn." not in english.replace("/desk/learn", "").replace("learn.js", "").replace(
        "learn.css", ""
    )


async def test_label_skip_and_not_real_by_plain_post(store, make_client, tmp_path, nlu) -> None:
    ids = await captures(store, nlu)
    client = await admin_client(store, make_client, tmp_path)
    token = await token_from(client, "/desk/learn")
    response = await client.post(
        f"/desk/learn/items/{ids['wages']}",
        data={"csrf": token, "intent": "dispute_labor", "next": "/desk/learn?q=工资"},
        allow_redirects=False,
    )
    assert response.status == 303 and unquote(response.headers["Location"]) == "/desk/learn?q=工资"
    row = await row_of(store, ids["wages"])
    assert (row.status, row.label, row.labelled_by) == (
        CaptureStatus.LABELLED,
        "dispute_labor",
        "web:wang",
    )
    assert row.labelled_at is not None
    next_page = await (await client.get("/desk/learn")).text()
    assert f"第 {ids['wages']} 条已标注为 dispute_labor" in next_page
    assert ids["wages"] not in item_order(next_page)  # it left the open inbox
    for status in ("skipped", "not_real"):
        name = "hello" if status == "skipped" else "rider"
        response = await client.post(
            f"/desk/learn/items/{ids[name]}",
            data={"csrf": token, "status": status, "next": "https://evil.example/"},
            allow_redirects=False,
        )
        assert response.headers["Location"] == "/desk/"  # no open redirect
        row = await row_of(store, ids[name])
        assert row.status == status and row.label is None and row.labelled_by == "web:wang"
    # Who labelled what, and when, in the labelled list.
    labelled = await (await client.get("/desk/learn?status=labelled")).text()
    assert item_order(labelled) == [ids["wages"]]
    assert "已标注为 dispute_labor · web:wang · " in labelled
    everything = await (await client.get("/desk/learn?status=all")).text()
    assert "已跳过 · web:wang" in everything and "已标记为非真实消息 · web:wang" in everything


async def test_keyboard_path_answers_with_the_item_fragment(store, make_client, tmp_path, nlu):
    ids = await captures(store, nlu)
    client = await admin_client(store, make_client, tmp_path)
    token = await token_from(client, "/desk/learn")
    headers = {"X-Requested-With": "fetch"}
    response = await client.post(
        f"/desk/learn/items/{ids['deposit']}",
        data={"csrf": token, "intent": "dispute_tenancy"},
        headers=headers,
    )
    assert response.status == 200
    fragment = await response.text()
    assert fragment.lstrip().startswith(
        f'<article class="learn-item status-labelled" id="item-{ids["deposit"]}"'
    )
    assert "已标注为 dispute_tenancy · web:wang" in fragment
    refused = await client.post(
        f"/desk/learn/items/{ids['deposit']}",
        data={"csrf": token, "intent": "no_such_intent"},
        headers=headers,
    )
    assert refused.status == 400 and refused.content_type == "text/plain"
    assert "未知意图 no_such_intent" in await refused.text()
    assert (await row_of(store, ids["deposit"])).label == "dispute_tenancy"


async def test_filters_narrow_the_inbox(store, make_client, tmp_path, nlu) -> None:
    ids = await captures(store, nlu)
    client = await admin_client(store, make_client, tmp_path)
    by_search = await (await client.get("/desk/learn?q=押金")).text()
    assert item_order(by_search) == [ids["deposit"]]
    by_signal = await (await client.get("/desk/learn?signal=resident_denied_kind")).text()
    assert item_order(by_signal) == [ids["noise"]]
    predicted = (await row_of(store, ids["wages"])).predicted
    by_model = await (await client.get(f"/desk/learn?predicted={predicted}")).text()
    assert ids["wages"] in item_order(by_model)
    assert [(await row_of(store, i)).predicted for i in item_order(by_model)] == [predicted] * len(
        item_order(by_model)
    )
    assert item_order(await (await client.get("/desk/learn?status=labelled")).text()) == []
    for bad in ("status=done", "signal=bogus", "predicted=../../x", "q=" + "长" * 201):
        response = await client.get(f"/desk/learn?{bad}")
        assert response.status == 400, bad
        assert "输入有误" in await response.text()


async def test_bulk_label_a_search_after_confirmation(store, make_client, tmp_path, nlu) -> None:
    ids = await captures(store, nlu)
    extra = await capture(store, nlu, "房东扣押金不还,说墙刷坏了", "chat-extra")
    client = await admin_client(store, make_client, tmp_path)
    page = await (await client.get("/desk/learn?q=押金")).text()
    assert 'id="bulk"' in page
    assert 'id="bulk"' not in await (await client.get("/desk/learn")).text()  # no search
    token = csrf_of(page)
    form = {"csrf": token, "q": "押金", "status": "open", "intent": "dispute_tenancy"}
    confirm = await client.post("/desk/learn/bulk", data=form)
    assert confirm.status == 200
    html = await confirm.text()
    assert "确定把符合条件的 2 条消息全部标注为 dispute_tenancy" in html
    assert (await row_of(store, extra)).status == CaptureStatus.OPEN  # nothing yet
    done = await client.post(
        "/desk/learn/bulk", data={**form, "confirm": "1"}, allow_redirects=False
    )
    assert done.status == 303 and done.headers["Location"] == "/desk/learn?q=%E6%8A%BC%E9%87%91"
    for capture_id in (ids["deposit"], extra):
        row = await row_of(store, capture_id)
        assert (row.label, row.labelled_by) == ("dispute_tenancy", "web:wang")
    assert (await row_of(store, ids["wages"])).status == CaptureStatus.OPEN
    # A bulk label needs a narrowing filter, a known intent and something to label.
    for bad, words in (
        ({"q": ""}, "请先用搜索"),
        ({"intent": "bogus"}, "未知意图 bogus"),
        ({"q": "没有这种话"}, "没有符合条件"),
        ({"signal": "bogus"}, "输入有误"),
    ):
        response = await client.post("/desk/learn/bulk", data={**form, **bad})
        assert response.status == 400, bad
        assert words in await response.text()


async def test_bad_input_is_answered_politely(store, make_client, tmp_path, nlu) -> None:
    ids = await captures(store, nlu)
    client = await admin_client(store, make_client, tmp_path)
    token = await token_from(client, "/desk/learn")
    item = f"/desk/learn/items/{ids['wages']}"
    cases = [
        (item, {"intent": "bogus_intent"}, 400, "未知意图 bogus_intent"),
        (item, {"intent": "dispute_labor", "status": "skipped"}, 400, "输入有误"),
        (item, {}, 400, "输入有误"),
        (item, {"status": "labelled"}, 400, "输入有误"),
        (item, {"intent": "<script>"}, 400, "输入有误"),
        ("/desk/learn/items/99999", {"intent": "greet"}, 404, "没有第 99999 条审核项"),
        ("/desk/learn/models/nlu-none/activate", {}, 404, "没有模型 nlu-none"),
        ("/desk/learn/rollback", {}, 400, "当前没有启用的模型"),
    ]
    for path, data, status, words in cases:
        response = await client.post(path, data={"csrf": token, **data})
        assert response.status == status, (path, data)
        assert words in await response.text(), (path, data)
    assert (await client.get("/desk/learn/models/nlu-none")).status == 404
    assert await read_progress(client, "nlu-none") == [{"status": "missing"}]
    assert (await client.get("/desk/learn/models/bad%20version")).status == 404
    assert (await row_of(store, ids["wages"])).status == CaptureStatus.OPEN


async def test_requests_without_the_csrf_token_are_refused(store, make_client, tmp_path, nlu):
    ids = await captures(store, nlu)
    client = await admin_client(store, make_client, tmp_path)
    for path, data in (
        (f"/desk/learn/items/{ids['wages']}", {"intent": "dispute_labor"}),
        ("/desk/learn/bulk", {"q": "工资", "intent": "dispute_labor", "confirm": "1"}),
        ("/desk/learn/train", {}),
        ("/desk/learn/rollback", {}),
        ("/desk/learn/models/nlu-x/activate", {"reason": "a reason long enough"}),
    ):
        for sent in (data, {**data, "csrf": "forged"}):
            response = await client.post(path, data=sent)
            assert response.status == 403, path
            assert "请求已被拒绝" in await response.text()
    assert (await row_of(store, ids["wages"])).status == CaptureStatus.OPEN
    async with store.sessions() as session:
        assert (await session.execute(select(NluModel))).first() is None


# ------------------------------------------------------------------------ gate, models


def _gate_sets() -> list[DataSet]:
    held_out = read_training_data([ROOT / "tests/data/nlu_test.yml"]).examples
    slice_ = [
        Example(f"房东不退押金,打我电话{PHONE}", "dispute_tenancy"),
        Example("租的房子到期了房东扣着押金不给", "dispute_tenancy"),
    ]
    return [DataSet("nlu_test.yml", held_out), DataSet("holdout_slice", slice_)]


async def registry(store: Store, nlu: Any, model_dir: Path) -> dict[str, str]:
    """An active model, a candidate that fails the gate (tenancy read as debt) and one
    that passes; gates computed by the real gate code over the real engine."""

    def wrong(text: str) -> Any:
        parse = dict(nlu.parse_sync(text))
        if parse["intent"]["name"] == "dispute_tenancy":
            parse["intent"] = {"name": "dispute_debt", "confidence": 0.9}
        return parse

    sets = _gate_sets()
    failing = await asyncio.to_thread(compare, nlu.parse_sync, wrong, sets)
    passing = await asyncio.to_thread(compare, nlu.parse_sync, nlu.parse_sync, sets)
    assert failing["passed"] is False and passing["passed"] is True
    versions = {"old": "nlu-20261201-000000-aaaaaa", "bad": "nlu-20261202-000000-bbbbbb"}
    versions["good"] = "nlu-20261203-000000-cccccc"
    async with store.sessions.begin() as session:
        for name, gate in (("old", passing), ("bad", failing), ("good", passing)):
            row = await register(
                session,
                versions[name],
                trained_by="cli:root",
                status=ModelStatus.CANDIDATE,
                path=str(model_dir),
                data_fingerprint=f"{name}-fingerprint-0123456789abcdef",
                metrics={"examples": 7131, "train_seconds_total": 9.5, "reviewed_examples": 3},
            )
            row.gate = gate
            if name == "old":
                await set_active(session, row, by="startup", action="bootstrap")
    return versions


async def test_gate_comparison_page(store, make_client, tmp_path, nlu, nlu_model_dir) -> None:
    versions = await registry(store, nlu, nlu_model_dir)
    client = await admin_client(store, make_client, tmp_path)
    html = await (await client.get(f"/desk/learn/models/{versions['bad']}")).text()
    assert "✗ 未通过" in html
    assert "<li>nlu_test.yml: dispute_tenancy 的 F1 从 0." in html  # the reason, named
    assert "F1 下降过多的纠纷类型:dispute_debt, dispute_tenancy" in html
    row = html.split('data-intent="dispute_tenancy"')[1].split("</tr>")[0]
    assert "-0." in row and 'class="fell"' in html.split('data-intent="dispute_tenancy"')[0][-40:]
    assert "macro-F1" in html and "紧急召回率" in html
    # The changed answers: masked text, active → candidate, the gold label.
    assert PHONE not in html and "138****5678" in html
    assert "<code>dispute_tenancy</code> → <code>dispute_debt</code>" in html
    assert "改错了" in html
    assert 'name="reason"' in html  # the override form, since the gate failed
    good = await (await client.get(f"/desk/learn/models/{versions['good']}")).text()
    assert "✓ 通过,可以启用" in good and 'name="reason"' not in good
    assert "没有消息的答案改变" in good


async def test_registry_activate_override_rollback(
    store, make_client, tmp_path, nlu, nlu_model_dir
) -> None:
    versions = await registry(store, nlu, nlu_model_dir)
    client = await admin_client(store, make_client, tmp_path)
    html = await (await client.get("/desk/learn/models")).text()
    for version in versions.values():
        assert version in html
    assert "★ 使用中" in html and "old-fingerpr" in html and "训练样本 7131 条" in html
    token = csrf_of(html)
    bad = f"/desk/learn/models/{versions['bad']}/activate"
    # A failed gate: no reason, or a blank or too short one, is refused.
    for reason in (None, "   ", "太差了"):
        data = {"csrf": token} if reason is None else {"csrf": token, "reason": reason}
        response = await client.post(bad, data=data)
        assert response.status == 400
        text = await response.text()
        assert "未通过评估关卡" in text and "至少 10 个字" in text
        async with store.sessions() as session:
            row = await get_model(session, versions["bad"])
            assert row is not None and row.status == ModelStatus.CANDIDATE
    reason = "租赁类的评估样本有误,已人工核对,先启用以修复劳动类"
    response = await client.post(bad, data={"csrf": token, "reason": reason}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/desk/learn/models"
    async with store.sessions() as session:
        row = await get_model(session, versions["bad"])
        assert row is not None and row.status == ModelStatus.ACTIVE
        assert row.override_reason == reason and row.activated_by == "web:wang"
        last = row.history[-1]
        assert (last["action"], last["by"], last["reason"]) == ("override", "web:wang", reason)
        assert last["replaced"] == versions["old"]
    html = await (await client.get("/desk/learn/models")).text()
    assert f"强制启用理由:{reason}" in html and "强制启用 · web:wang" in html
    # A passed gate activates with one click, then a rollback returns to the override.
    response = await client.post(
        f"/desk/learn/models/{versions['good']}/activate",
        data={"csrf": token},
        allow_redirects=False,
    )
    assert response.status == 303
    response = await client.post(
        "/desk/learn/rollback", data={"csrf": token}, allow_redirects=False
    )
    assert response.status == 303
    async with store.sessions() as session:
        active = (
            await session.execute(select(NluModel).where(NluModel.status == ModelStatus.ACTIVE))
        ).scalar_one()
        assert active.version == versions["bad"]
        assert active.history[-1]["action"] == "rollback"
        assert active.history[-1]["by"] == "web:wang"
    assert "已回退:模型" in await (await client.get("/desk/learn/models")).text()


# --------------------------------------------------------------------------- retraining


async def read_progress(client: Any, version: str, within: float = 300) -> list[dict[str, Any]]:
    """Every progress event of the live stream until it ends."""
    events: list[dict[str, Any]] = []
    started = time.monotonic()
    async with client.get(
        f"/desk/learn/models/{version}/live", headers={"Accept": "text/event-stream"}
    ) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        event = None
        async for raw in stream.content:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "progress":
                events.append(json.loads(line.split(":", 1)[1]))
            assert time.monotonic() - started < within
    return events


async def test_retrain_from_the_workspace_with_live_progress(
    sqlite_url: str, tmp_path: Path, port: RecordingPort, nlu
) -> None:
    engine = create_engine(sqlite_url)
    store = Store(engine=engine, sessions=session_factory(engine), vault=PhoneVault("test"))
    try:
        async for make in client_factory(store, tmp_path, port):
            ids = await captures(store, nlu)
            client = await admin_client(store, make, tmp_path)
            token = await token_from(client, "/desk/learn")
            for name, intent in (("wages", "dispute_labor"), ("deposit", "dispute_tenancy")):
                await client.post(
                    f"/desk/learn/items/{ids[name]}", data={"csrf": token, "intent": intent}
                )
            response = await client.post(
                "/desk/learn/train", data={"csrf": token}, allow_redirects=False
            )
            assert response.status == 303
            version = response.headers["Location"].rsplit("/", 1)[1]
            page = await (await client.get(f"/desk/learn/models/{version}")).text()
            assert f'data-live="/desk/learn/models/{version}/live"' in page
            # A second start while it trains goes to the running job, nothing new.
            again = await client.post(
                "/desk/learn/train", data={"csrf": token}, allow_redirects=False
            )
            assert again.headers["Location"] == f"/desk/learn/models/{version}"
            events = await read_progress(client, version)
            assert events[-1]["final"] is True, events
            assert events[-1]["status"] == "candidate", events[-1]["error"]
            assert events[-1]["progress"] == 1.0 and events[-1]["verdict"]
            assert any(e["status"] == "training" for e in events)
            progress = [e["progress"] for e in events]
            assert progress == sorted(progress)
            async with store.sessions() as session:
                row = await get_model(session, version)
                assert row is not None and row.trained_by == "web:wang"
                assert row.metrics["reviewed_examples"] + row.metrics["holdout_examples"] == 2
                assert len((await session.execute(select(NluModel))).all()) == 1
            done = await (await client.get(f"/desk/learn/models/{version}")).text()
            assert 'id="gate"' in done and "nlu_test.yml" in done and "data-live" not in done
            assert (
                await asyncio.to_thread(Path(row.path, "manifest.json").is_file)
                and Path(row.path).parent == tmp_path / "models"
            )
    finally:
        await engine.dispose()


async def test_a_failed_training_is_shown_with_its_reason(
    sqlite_url: str, tmp_path: Path, port: RecordingPort
) -> None:
    """The models folder cannot be written (it is a file): the job fails, the stream
    ends with the reason and the model's page says so; nothing can activate it."""
    engine = create_engine(sqlite_url)
    store = Store(engine=engine, sessions=session_factory(engine), vault=PhoneVault("test"))
    blocked = tmp_path / "not-a-folder"
    await asyncio.to_thread(blocked.write_text, "a file where the models should go")
    try:
        async for make in client_factory(store, tmp_path, port):
            client = await make(model_dir=blocked)
            await add_user(store, "wang", "baoan", MediatorRole.ADMIN)
            await sign_in(client, "wang")
            token = await token_from(client, "/desk/learn/models")
            response = await client.post(
                "/desk/learn/train", data={"csrf": token}, allow_redirects=False
            )
            version = response.headers["Location"].rsplit("/", 1)[1]
            events = await read_progress(client, version)
            assert events[-1]["status"] == "failed" and events[-1]["final"] is True
            assert events[-1]["error"] and events[-1]["status_label"] == "训练失败"
            page = await (await client.get(f"/desk/learn/models/{version}")).text()
            assert "训练失败" in page and 'id="gate"' not in page
            refused = await client.post(
                f"/desk/learn/models/{version}/activate",
                data={"csrf": token, "reason": "无论如何都要启用这个模型"},
            )
            assert refused.status == 400 and "不能启用" in await refused.text()
    finally:
        await engine.dispose()
