"""A stand-in for WeChat's servers, over real HTTP on 127.0.0.1, and WeChat's own posts.

Two halves, because WeChat talks to us both ways:

- :class:`WeChatApiStandIn` plays api.weixin.qq.com (and qyapi.weixin.qq.com's group
  robots): it issues access tokens with an expiry, accepts customer-service, template
  and menu calls, serves media, records every call, and can be told to misbehave the
  way the real one does (a token expiring early: 42001; a resident silent for 48 hours:
  45015; the next N calls failing; a robot answering 429 or errcode 45009).
- :func:`text_xml` and friends build the XML WeChat posts to ``/webhooks/wechat``, and
  :class:`WeChatSigner` signs (and, in safe mode, AES-encrypts with wechatpy's own
  :class:`~wechatpy.crypto.WeChatCrypto`) exactly as WeChat does, so the channel's
  checks are tested against the real algorithm rather than our idea of it.

Typical use::

    async with WeChatApiStandIn() as api:
        settings = load_settings(WECHAT_API_BASE_URL=api.base_url, ...)
        ...
        [call] = await api.wait_for("/cgi-bin/message/custom/send")
        assert call.body["touser"] == "o-resident"
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import xmltodict
from aiohttp import web
from wechatpy.crypto import WeChatCrypto

__all__ = [
    "ApiCall",
    "WeChatApiStandIn",
    "WeChatSigner",
    "event_xml",
    "image_xml",
    "location_xml",
    "text_xml",
    "voice_xml",
]

APP_ID = "wx0123456789abcdef"
APP_SECRET = "stand-in-secret"
ACCOUNT = "gh_tiaojie_test"


@dataclass(slots=True)
class ApiCall:
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    answer: dict[str, Any] | None = None
    status: int = 200


@dataclass(slots=True)
class _Failure:
    count: int
    status: int = 200
    errcode: int = -1


@dataclass(slots=True)
class _Token:
    value: str
    expires: float
    revoked: bool = False


class WeChatApiStandIn:
    """api.weixin.qq.com on 127.0.0.1, strict about tokens like the real one."""

    def __init__(
        self, *, app_id: str = APP_ID, app_secret: str = APP_SECRET, token_ttl: int = 7200
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.token_ttl = token_ttl
        self.calls: list[ApiCall] = []
        self.tokens: dict[str, _Token] = {}
        self.media: dict[str, tuple[bytes, str]] = {}
        #: Openids that get 45015 from the customer-service API (silent for 48 h).
        self.out_of_window: set[str] = set()
        #: Openids that unfollowed: template messages answer 43004.
        self.unfollowed: set[str] = set()
        self.menu: dict[str, Any] | None = None
        self._failures: dict[str, _Failure] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ life

    async def __aenter__(self) -> WeChatApiStandIn:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom_send)
        app.router.add_post("/cgi-bin/message/template/send", self._template_send)
        app.router.add_get("/cgi-bin/media/get", self._media_get)
        app.router.add_post("/cgi-bin/menu/create", self._menu_create)
        app.router.add_post("/cgi-bin/webhook/send", self._robot_send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --------------------------------------------------------------- steering

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (WeChat answers 42001 for it)."""
        for token in self.tokens.values():
            token.expires = 0

    def fail_next(self, path: str, count: int = 1, *, status: int = 200, errcode: int = -1) -> None:
        """The next ``count`` calls to ``path`` fail: an HTTP ``status`` or an ``errcode``."""
        self._failures[path] = _Failure(count, status, errcode)

    def add_media(self, data: bytes, mime_type: str = "image/jpeg") -> str:
        media_id = uuid.uuid4().hex
        self.media[media_id] = (data, mime_type)
        return media_id

    def robot_url(self, key: str) -> str:
        return f"{self.base_url}/cgi-bin/webhook/send?key={key}"

    def sent(self, path: str, *, ok: bool = True) -> list[ApiCall]:
        """Calls to ``path`` (only those that succeeded unless ``ok`` is False)."""
        return [
            c
            for c in self.calls
            if c.path == path
            and (not ok or (c.status == 200 and not (c.answer or {}).get("errcode")))
        ]

    async def wait_for(self, path: str, count: int = 1, within: float = 10.0) -> list[ApiCall]:
        """Wait until ``count`` successful calls to ``path`` arrived; returns them."""

        async def enough() -> list[ApiCall]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.sent(path)) >= count)
            return self.sent(path)

        return await asyncio.wait_for(enough(), within)

    # ---------------------------------------------------------------- handlers

    async def _record(
        self, request: web.Request, answer: dict[str, Any], status: int = 200
    ) -> web.Response:
        body = None
        if request.body_exists:
            body = await request.json()
        self.calls.append(
            ApiCall(request.method, request.path, dict(request.query), body, answer, status)
        )
        async with self._changed:
            self._changed.notify_all()
        return web.json_response(answer, status=status)

    def _failure(self, path: str) -> _Failure | None:
        failure = self._failures.get(path)
        if failure is None or failure.count <= 0:
            return None
        failure.count -= 1
        return failure

    def _check_token(self, request: web.Request) -> dict[str, Any] | None:
        token = self.tokens.get(request.query.get("access_token", ""))
        if token is None or token.revoked:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        if token.expires < time.monotonic():
            return {"errcode": 42001, "errmsg": "access_token expired"}
        return None

    async def _guarded(self, request: web.Request) -> web.Response | None:
        """Failures told in advance, then the token check; None when the call may go on."""
        failure = self._failure(request.path)
        if failure is not None:
            if failure.status != 200:
                return await self._record(request, {"errmsg": "failure"}, failure.status)
            return await self._record(
                request, {"errcode": failure.errcode, "errmsg": "system error"}
            )
        refused = self._check_token(request)
        if refused is not None:
            return await self._record(request, refused)
        return None

    async def _token(self, request: web.Request) -> web.Response:
        failure = self._failure(request.path)
        if failure is not None:
            return await self._record(
                request, {"errcode": failure.errcode, "errmsg": "busy"}, failure.status
            )
        query = request.query
        if query.get("grant_type") != "client_credential":
            return await self._record(request, {"errcode": 40002, "errmsg": "invalid grant_type"})
        if query.get("appid") != self.app_id or query.get("secret") != self.app_secret:
            return await self._record(request, {"errcode": 40125, "errmsg": "invalid appsecret"})
        value = f"TOKEN-{uuid.uuid4().hex}"
        self.tokens[value] = _Token(value, time.monotonic() + self.token_ttl)
        return await self._record(request, {"access_token": value, "expires_in": self.token_ttl})

    async def _custom_send(self, request: web.Request) -> web.Response:
        refused = await self._guarded(request)
        if refused is not None:
            return refused
        body = await request.json()
        if body.get("touser") in self.out_of_window:
            return await self._record(
                request, {"errcode": 45015, "errmsg": "response out of time limit"}
            )
        kind = body.get("msgtype")
        if kind == "text" and not (body.get("text") or {}).get("content"):
            return await self._record(request, {"errcode": 44003, "errmsg": "empty content"})
        if kind == "msgmenu" and not (body.get("msgmenu") or {}).get("list"):
            return await self._record(request, {"errcode": 40008, "errmsg": "invalid msgmenu"})
        if kind not in {"text", "msgmenu", "image"}:
            return await self._record(request, {"errcode": 40008, "errmsg": "invalid message type"})
        return await self._record(request, {"errcode": 0, "errmsg": "ok"})

    async def _template_send(self, request: web.Request) -> web.Response:
        refused = await self._guarded(request)
        if refused is not None:
            return refused
        body = await request.json()
        if body.get("touser") in self.unfollowed:
            return await self._record(request, {"errcode": 43004, "errmsg": "require subscribe"})
        if not body.get("template_id"):
            return await self._record(request, {"errcode": 40037, "errmsg": "invalid template_id"})
        return await self._record(request, {"errcode": 0, "errmsg": "ok", "msgid": 200228332})

    async def _media_get(self, request: web.Request) -> web.Response:
        refused = await self._guarded(request)
        if refused is not None:
            return refused
        found = self.media.get(request.query.get("media_id", ""))
        if found is None:
            return await self._record(request, {"errcode": 40007, "errmsg": "invalid media_id"})
        self.calls.append(ApiCall(request.method, request.path, dict(request.query), None))
        data, mime_type = found
        return web.Response(body=data, content_type=mime_type)

    async def _menu_create(self, request: web.Request) -> web.Response:
        refused = await self._guarded(request)
        if refused is not None:
            return refused
        body = await request.json()
        if not isinstance(body.get("button"), list) or not 1 <= len(body["button"]) <= 3:
            return await self._record(request, {"errcode": 40016, "errmsg": "invalid button size"})
        self.menu = body
        return await self._record(request, {"errcode": 0, "errmsg": "ok"})

    async def _robot_send(self, request: web.Request) -> web.Response:
        """A WeCom group robot: a failure told in advance may be 429 or errcode 45009."""
        failure = self._failure(request.path)
        if failure is not None:
            answer = {"errcode": failure.errcode, "errmsg": "api freq out of limit"}
            return await self._record(request, answer, failure.status)
        body = await request.json()
        if body.get("msgtype") != "markdown" or not (body.get("markdown") or {}).get("content"):
            return await self._record(request, {"errcode": 40008, "errmsg": "invalid message type"})
        return await self._record(request, {"errcode": 0, "errmsg": "ok"})


# ------------------------------------------------------------- what WeChat posts to us


def _xml(fields: dict[str, str | int | float]) -> str:
    parts = []
    for name, value in fields.items():
        if isinstance(value, str):
            parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
        else:
            parts.append(f"<{name}>{value}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


def _base(openid: str, kind: str, create_time: int | None) -> dict[str, str | int | float]:
    return {
        "ToUserName": ACCOUNT,
        "FromUserName": openid,
        "CreateTime": create_time or int(time.time()),
        "MsgType": kind,
    }


def text_xml(openid: str, content: str, msg_id: int, *, menu_id: str | None = None) -> str:
    fields = {**_base(openid, "text", None), "Content": content, "MsgId": msg_id}
    if menu_id is not None:
        fields["bizmsgmenuid"] = menu_id
    return _xml(fields)


def image_xml(openid: str, media_id: str, msg_id: int) -> str:
    fields = {**_base(openid, "image", None), "PicUrl": "http://mmbiz.example/p.jpg"}
    return _xml({**fields, "MediaId": media_id, "MsgId": msg_id})


def voice_xml(openid: str, media_id: str, msg_id: int, recognition: str | None = None) -> str:
    fields = {**_base(openid, "voice", None), "MediaId": media_id, "Format": "amr"}
    if recognition is not None:
        fields["Recognition"] = recognition
    return _xml({**fields, "MsgId": msg_id})


def location_xml(openid: str, latitude: float, longitude: float, msg_id: int) -> str:
    fields = {**_base(openid, "location", None), "Location_X": latitude, "Location_Y": longitude}
    return _xml({**fields, "Scale": 15, "Label": escape("深圳市宝安区"), "MsgId": msg_id})


def event_xml(
    openid: str, event: str, key: str | None = None, *, create_time: int | None = None
) -> str:
    fields = {**_base(openid, "event", create_time), "Event": event}
    if key is not None:
        fields["EventKey"] = key
    return _xml(fields)


class WeChatSigner:
    """Signs (and in safe mode encrypts) a post the way WeChat's servers do."""

    def __init__(self, token: str, aes_key: str | None = None, app_id: str = APP_ID) -> None:
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, app_id) if aes_key else None

    def signature(self, timestamp: str, nonce: str, *extra: str) -> str:
        return hashlib.sha1(
            "".join(sorted([self.token, timestamp, nonce, *extra])).encode()
        ).hexdigest()

    def query(self, **extra: str) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
        return {
            "signature": self.signature(timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            **extra,
        }

    def post(self, xml: str) -> tuple[dict[str, str], str]:
        """The query string and body of WeChat's POST carrying ``xml``."""
        if self.crypto is None:
            return self.query(), xml
        query = self.query()
        envelope = xmltodict.parse(
            self.crypto.encrypt_message(xml, query["nonce"], query["timestamp"])
        )["xml"]
        body = _xml({"ToUserName": ACCOUNT, "Encrypt": envelope["Encrypt"]})
        query.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
        return query, body

    def read_reply(self, body: str) -> dict[str, Any] | None:
        """A passive reply as a dict (decrypted and its signature checked in safe mode);
        None for ``success`` or an empty answer."""
        if body in ("", "success"):
            return None
        message = xmltodict.parse(body)["xml"]
        if self.crypto is not None:
            plain = self.crypto.decrypt_message(
                body, message["MsgSignature"], message["TimeStamp"], message["Nonce"]
            )
            message = xmltodict.parse(plain)["xml"]
        return dict(message)


def new_msg_id() -> int:
    """A MsgId the way WeChat numbers messages (a 64-bit integer)."""
    return int(uuid.uuid4().int % 9_000_000_000_000_000_000) + 10**18
