"""The WeChat Official Account channel through the real aiohttp app, against a stand-in
WeChat on 127.0.0.1: signed (and encrypted) posts in, passive replies and
customer-service messages out, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from actions.ports import DeliveryError
from bot.channels.wechat import WECHAT, WECHAT_API, WECHAT_PORT, WeChatPort, evidence_path
from bot.dialogue.model import Button, Reply
from bot.runtime import Store
from bot.settings import load_settings
from bot.web import create_app
from nlu.interface import NLUBackend
from storage.conversations import load_conversation
from storage.models import Case, CaseEvent, ProcessedUpdate, utcnow
from storage.wechat import get_contact
from tests.support.wechat_api import (
    APP_ID,
    APP_SECRET,
    ApiCall,
    WeChatApiStandIn,
    WeChatSigner,
    event_xml,
    image_xml,
    location_xml,
    new_msg_id,
    text_xml,
    voice_xml,
)

TOKEN = "tiaojie-wechat-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CUSTOM = "/cgi-bin/message/custom/send"
URL = "/webhooks/wechat"


@dataclass
class Turn:
    """What the resident saw after one message: the passive reply and pushed messages."""

    status: int
    passive: dict[str, Any] | None
    pushed: list[ApiCall]

    @property
    def texts(self) -> list[str]:
        out = [self.passive["Content"]] if self.passive else []
        for call in self.pushed:
            body = call.body or {}
            if body.get("msgtype") == "text":
                out.append(body["text"]["content"])
            elif body.get("msgtype") == "msgmenu":
                out.append(body["msgmenu"]["head_content"])
        return out

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


@dataclass
class Harness:
    client: TestClient
    api: WeChatApiStandIn
    store: Store
    app: web.Application
    signer: WeChatSigner
    said: int = 0

    async def post(self, xml: str, *, query: dict[str, str] | None = None) -> tuple[int, str]:
        signed_query, body = self.signer.post(xml)
        response = await self.client.post(URL, params=query or signed_query, data=body.encode())
        return response.status, await response.text()

    async def say(self, xml: str) -> Turn:
        before = len(self.api.calls)
        self.said += 1
        status, body = await self.post(xml)
        await self.app[WECHAT].drain()
        pushed = [
            c
            for c in self.api.calls[before:]
            if c.path == CUSTOM and not (c.answer or {}).get("errcode")
        ]
        passive = self.signer.read_reply(body) if status == 200 else None
        return Turn(status, passive, pushed)

    async def options(self, openid: str) -> list[str]:
        async with self.store.sessions() as session:
            contact = await get_contact(session, openid)
        return list(contact.options) if contact else []

    async def count(self, model: Any, *where: Any) -> int:
        async with self.store.sessions() as session:
            query = select(func.count()).select_from(model).where(*where)
            return int((await session.execute(query)).scalar_one())


async def _harness(
    db_url: str, nlu: NLUBackend, tmp_path: Path, aes_key: str | None
) -> AsyncIterator[Harness]:
    async with WeChatApiStandIn() as api:
        settings = load_settings(
            database_url=db_url,
            data_dir=tmp_path / "var",
            wechat_token=TOKEN,
            wechat_app_id=APP_ID,
            wechat_app_secret=APP_SECRET,
            wechat_aes_key=aes_key,
            wechat_api_base_url=api.base_url,
            wechat_template_id_status="tpl-case-status",
        )
        store = Store.open(settings)
        app = create_app(settings, nlu, store=store)
        async with TestClient(TestServer(app)) as client:
            yield Harness(client, api, store, app, WeChatSigner(TOKEN, aes_key))
        await store.close()


@pytest.fixture
async def wx(db_url: str, nlu: NLUBackend, tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in _harness(db_url, nlu, tmp_path, None):
        yield harness


@pytest.fixture
async def wx_safe(sqlite_url: str, nlu: NLUBackend, tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in _harness(sqlite_url, nlu, tmp_path, AES_KEY):
        yield harness


def option_number(turn: Turn, title: str) -> str:
    """The number a resident reads in front of ``title`` in a passive reply."""
    match = re.search(rf"回复 (\d+):{re.escape(title)}", turn.text)
    assert match, (title, turn.text)
    return match.group(1)


async def case_of(store: Store, openid: str) -> Case:
    async with store.sessions() as session:
        query = select(Case).where(Case.channel == "wechat", Case.chat_id == openid)
        return (await session.execute(query)).scalar_one()


async def timeline(store: Store, case: Case) -> list[CaseEvent]:
    async with store.sessions() as session:
        query = select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        return list((await session.execute(query)).scalars())


async def test_resident_files_a_case_end_to_end(wx: Harness, tmp_path: Path) -> None:
    who = "o-resident-1"
    turn = await wx.say(event_xml(who, "subscribe"))
    assert turn.passive is not None and "i调解" in turn.passive["Content"]
    assert turn.passive["ToUserName"] == who
    assert any("隐私" in text for text in turn.texts[1:]), "the rest came by customer service"

    turn = await wx.say(text_xml(who, "房东不退我3000元押金", new_msg_id()))
    assert "房屋租赁" in turn.text
    photo = b"\xff\xd8\xff\xe0" + b"receipt" * 100
    digest = hashlib.sha256(photo).hexdigest()
    answered: set[str] = set()
    for _ in range(25):
        if "案件编号" in turn.text:
            break
        options = await wx.options(who)
        if any(o.startswith("street:") for o in options) and "location" not in answered:
            # A location finds the nearest street (西乡).
            turn = await wx.say(location_xml(who, 22.5765, 113.8601, new_msg_id()))
            assert "西乡" in turn.text
            answered.add("location")
        elif "submit" in options:
            submit = option_number(turn, "✅ 同意提供给调解员,提交")
            turn = await wx.say(text_xml(who, submit, new_msg_id()))
        elif "手机" in turn.text and "phone" not in answered:
            turn = await wx.say(text_xml(who, "13900001111", new_msg_id()))
            answered.add("phone")
        elif "yes" in options and "typed" not in answered:
            # An option answered by typing its text.
            assert option_number(turn, "是") == "1"
            turn = await wx.say(text_xml(who, "是", new_msg_id()))
            answered.add("typed")
        elif options:
            # An option answered by its number.
            choice = next((p for p in ("yes", "skip", "comm:") if p in options), options[0])
            turn = await wx.say(text_xml(who, str(options.index(choice) + 1), new_msg_id()))
            answered.add("number")
        else:
            turn = await wx.say(text_xml(who, "王先生", new_msg_id()))
            if "photo" not in answered:
                # A photo: downloaded through the media API and kept by content hash.
                media_id = wx.api.add_media(photo)
                await wx.say(image_xml(who, media_id, new_msg_id()))
                assert wx.api.sent("/cgi-bin/media/get")[0].query["media_id"] == media_id
                path = tmp_path / "var" / "evidence" / digest
                assert path.read_bytes() == photo
                answered.add("photo")
    assert "案件编号" in turn.text, turn.text
    assert answered == {"location", "typed", "number", "photo", "phone"}
    assert "13900001111" not in " ".join(
        c.body.get("text", {}).get("content", "") for c in wx.api.calls if c.body
    )

    case = await case_of(wx.store, who)
    assert case.category == "dispute_tenancy" and case.street == "西乡"
    assert "3000" in case.resident_words
    evidence = [e.data for e in await timeline(wx.store, case) if e.kind == "evidence"]
    assert evidence == [
        {
            "kind": "photo",
            "file_id": f"wechat:{digest}",
            "size": len(photo),
            "mime_type": "image/jpeg",
            "file_name": None,
        }
    ]
    # Every message was recorded once as a processed WeChat delivery.
    assert await wx.count(ProcessedUpdate, ProcessedUpdate.source == "wechat") == wx.said

    # WeChat's API failing: the resident's words are kept, the failure is on the case.
    wx.app[WECHAT].passive_seconds = 0.0
    wx.api.fail_next(CUSTOM, 5)
    turn = await wx.say(text_xml(who, "房东还把我的东西扔了", new_msg_id()))
    assert turn.passive is None and turn.pushed == []
    events = await timeline(wx.store, case)
    failure = {"reason": "wechat errcode -1", "permanent": False, "channel": "wechat"}
    assert ("delivery_failed", failure) in [(e.kind, e.data) for e in events]
    assert (await _state(wx.store, who))["draft"]["words"] == ["房东还把我的东西扔了"]


async def _state(store: Store, openid: str) -> dict[str, Any]:
    async with store.sessions() as session:
        state, _ = await load_conversation(session, "wechat", openid)
    return state


async def test_voice_menu_clicks_and_unfollow(wx: Harness) -> None:
    who = "o-resident-2"
    turn = await wx.say(voice_xml(who, "m1", new_msg_id()))
    assert turn.passive is not None and "文字" in turn.passive["Content"]
    turn = await wx.say(voice_xml(who, "m2", new_msg_id(), recognition="邻居装修太吵了"))
    assert "邻里" in turn.text
    turn = await wx.say(event_xml(who, "CLICK", "human"))
    assert turn.status == 200 and turn.texts
    turn = await wx.say(event_xml(who, "CLICK", "status"))
    assert turn.texts
    turn = await wx.say(event_xml(who, "unsubscribe"))
    assert turn.passive is None and turn.pushed == []
    async with wx.store.sessions() as session:
        contact = await get_contact(session, who)
    assert contact is not None and contact.subscribed is False
    with pytest.raises(DeliveryError) as error:
        await wx.app[WECHAT_PORT].send(who, [Reply("调解员回复")], language="zh")
    assert error.value.permanent


async def test_forged_or_missing_signatures_are_refused(wx: Harness) -> None:
    xml = text_xml("o-forger", "我要投诉", new_msg_id())
    query = wx.signer.query()
    forged = {**query, "signature": "0" * 40}
    for params in (forged, {}, {"timestamp": query["timestamp"], "nonce": query["nonce"]}):
        response = await wx.client.post(URL, params=params, data=xml.encode())
        assert response.status == 403
        response = await wx.client.get(URL, params={**params, "echostr": "e"})
        assert response.status == 403
    response = await wx.client.get(URL, params={**wx.signer.query(), "echostr": "hello-123"})
    assert response.status == 200 and await response.text() == "hello-123"
    assert await wx.count(ProcessedUpdate) == 0
    async with wx.store.sessions() as session:
        assert await get_contact(session, "o-forger") is None
    assert wx.api.calls == []
    # Garbage that is signed is a polite 400, not a 500.
    status, _ = await wx.post("<xml><oops")
    assert status == 400


async def test_safe_mode_decrypts_and_encrypts(wx_safe: Harness) -> None:
    who = "o-safe"
    turn = await wx_safe.say(text_xml(who, "你好", new_msg_id()))
    assert turn.status == 200 and turn.passive is not None
    assert turn.passive["ToUserName"] == who and turn.passive["Content"]
    # Plain XML, or an envelope whose msg_signature is wrong, is refused.
    plain = text_xml(who, "你好", new_msg_id())
    response = await wx_safe.client.post(URL, params=wx_safe.signer.query(), data=plain.encode())
    assert response.status == 403
    query, body = wx_safe.signer.post(text_xml(who, "你好", new_msg_id()))
    query["msg_signature"] = "f" * 40
    response = await wx_safe.client.post(URL, params=query, data=body.encode())
    assert response.status == 403


async def test_same_msgid_three_times_at_once_is_handled_once(wx: Harness) -> None:
    who = "o-retry"
    xml = text_xml(who, "我被公司拖欠了两个月工资", new_msg_id())
    results = await asyncio.gather(*(wx.post(xml) for _ in range(3)))
    await wx.app[WECHAT].drain()
    assert [status for status, _ in results] == [200, 200, 200]
    passive = [body for _, body in results if body != "success"]
    assert len(passive) == 1, results
    assert await wx.count(ProcessedUpdate, ProcessedUpdate.source == "wechat") == 1
    greetings = [c for c in wx.api.sent(CUSTOM) if "隐私" in str(c.body)]
    assert len(greetings) == 1
    # A late retry, after the work is done, changes nothing either.
    status, body = await wx.post(xml)
    await wx.app[WECHAT].drain()
    assert (status, body) == (200, "success")
    assert len([c for c in wx.api.sent(CUSTOM) if "隐私" in str(c.body)]) == 1


async def test_slow_answer_goes_by_customer_service(wx: Harness) -> None:
    wx.app[WECHAT].passive_seconds = 0.0
    who = "o-slow"
    turn = await wx.say(text_xml(who, "房东不退押金", new_msg_id()))
    assert turn.passive is None
    menus = [c.body for c in turn.pushed if c.body and c.body["msgtype"] == "msgmenu"]
    assert menus and [i["content"] for i in menus[-1]["msgmenu"]["list"]] == ["是", "否"]
    # Tapping a msgmenu choice comes back as text with its bizmsgmenuid.
    turn = await wx.say(text_xml(who, "否", new_msg_id(), menu_id="2"))
    assert "类型" in turn.text or "哪一类" in turn.text or turn.texts


async def test_token_expiry_mid_conversation_is_refreshed_once(wx: Harness) -> None:
    who = "o-token"
    wx.app[WECHAT].passive_seconds = 0.0
    await wx.say(text_xml(who, "你好", new_msg_id()))
    assert len(wx.api.sent("/cgi-bin/token")) == 1
    wx.api.expire_tokens()
    turn = await wx.say(text_xml(who, "邻居家漏水到我家", new_msg_id()))
    assert turn.pushed, "the replies still arrived"
    assert len(wx.api.sent("/cgi-bin/token")) == 2
    refused = [c for c in wx.api.calls if (c.answer or {}).get("errcode") == 42001]
    assert len(refused) == 1


async def test_mediator_message_by_customer_service_then_template_after_48h(
    wx: Harness,
) -> None:
    who = "o-later"
    await wx.say(text_xml(who, "你好", new_msg_id()))
    port = wx.app[WECHAT_PORT]
    before = len(wx.api.sent(CUSTOM))
    await port.send(who, [Reply("调解员小李:明天上午十点在西乡调解室见。")], language="zh")
    sent = wx.api.sent(CUSTOM)[before:]
    assert [c.body["text"]["content"] for c in sent] == ["调解员小李:明天上午十点在西乡调解室见。"]
    rating = Reply(
        "请为这次调解打分", ((Button("★5", "rate:BA-1:5"), Button("★1", "rate:BA-1:1")),)
    )
    await port.send(who, [rating], language="zh")
    assert wx.api.sent(CUSTOM)[-1].body["msgtype"] == "msgmenu"
    assert await wx.options(who) == ["rate:BA-1:5", "rate:BA-1:1"]
    # A plain message afterwards keeps the numbers the resident may still answer with.
    await port.send(who, [Reply("如有疑问可以随时留言。")], language="zh")
    assert await wx.options(who) == ["rate:BA-1:5", "rate:BA-1:1"]

    later = WeChatPort(
        wx.app[WECHAT_API],
        wx.store,
        template_id="tpl-case-status",
        clock=lambda: utcnow() + timedelta(hours=49),
    )
    customer = len(wx.api.sent(CUSTOM))
    await later.send(who, [Reply("您的案件已受理")], language="zh")
    assert len(wx.api.sent(CUSTOM)) == customer
    [template] = wx.api.sent("/cgi-bin/message/template/send")
    assert template.body["touser"] == who and template.body["template_id"] == "tpl-case-status"
    assert template.body["data"]["keyword1"]["value"] == "您的案件已受理"
    # Without a template nothing can reach them: a permanent failure for the case.
    nowhere = WeChatPort(
        wx.app[WECHAT_API], wx.store, template_id=None, clock=lambda: utcnow() + timedelta(hours=49)
    )
    with pytest.raises(DeliveryError) as error:
        await nowhere.send(who, [Reply("您的案件已受理")], language="zh")
    assert error.value.permanent
    # WeChat itself saying 45015 inside our window also falls back to the template.
    wx.api.out_of_window.add(who)
    await port.send(who, [Reply("状态更新")], language="zh")
    assert len(wx.api.sent("/cgi-bin/message/template/send")) == 2


async def test_photo_survives_a_failed_download(wx: Harness) -> None:
    who = "o-photo"
    await wx.say(text_xml(who, "楼上邻居家漏水把我家天花板泡坏了", new_msg_id()))
    media_id = wx.api.add_media(b"\xff\xd8 ceiling")
    wx.api.fail_next("/cgi-bin/media/get", 1, errcode=-1)
    turn = await wx.say(image_xml(who, media_id, new_msg_id()))
    assert turn.status == 200
    attachments = (await _state(wx.store, who))["draft"]["attachments"]
    # WeChat keeps media three days: the id is kept so it can still be fetched.
    assert [a["file_id"] for a in attachments] == [f"wechat-media:{media_id}"]


def test_evidence_path_only_opens_our_own_files(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    digest = hashlib.sha256(b"photo").hexdigest()
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / digest).write_bytes(b"photo")
    assert evidence_path(settings, f"wechat:{digest}") == tmp_path / "evidence" / digest
    assert evidence_path(settings, "wechat:../../secret.key") is None
    assert evidence_path(settings, f"telegram:{digest}") is None
    assert evidence_path(settings, "wechat:" + "0" * 64) is None
