"""The WeChat Official Account API, called with aiohttp.

Why aiohttp and not wechatpy's ``WeChatClient``: wechatpy's client is built on
``requests``, which blocks; one slow call to api.weixin.qq.com would stall every chat
this process serves (WeChat gives us 5 seconds per message). Its token storage is also
a plain key-value session with no way for one of several workers to refresh the token
while the others wait, and WeChat invalidates the previous token whenever a new one is
fetched. So wechatpy does what it is best at here (signatures, AES, message parsing,
reply XML, in ``bot.channels.wechat``) and this module makes the few API calls we need
on our own event loop, with the token shared through the store (``storage.wechat``).

Error codes that matter:

- ``40001`` / ``40014`` / ``42001``: the token is invalid or expired. The token is marked
  expired in the store, fetched again (one process at a time) and the call retried once.
- ``45015``: the resident has not written for 48 hours; customer-service messages are
  refused and only a template message can reach them.
- ``43004`` (unfollowed), ``40003`` (unknown openid), ``43019`` (blocked us): permanent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from actions.metrics import CHANNEL_API_CALLS, CHANNEL_API_ERRORS
from bot.runtime import Store
from storage.models import utcnow
from storage.wechat import expire_token, read_token, release_lease, store_token, take_refresh_lease

log = logging.getLogger(__name__)

TOKEN_ERRORS = frozenset({40001, 40014, 42001})
OUT_OF_WINDOW = 45015
#: Errors no retry can fix: the resident unfollowed, blocked us, or the id is wrong.
PERMANENT_ERRORS = frozenset({40003, 40037, 43004, 43019, 45015, 45047})
#: Refresh the token this long before WeChat says it expires.
REFRESH_MARGIN = timedelta(minutes=5)
#: How long one process may hold the refresh lease before another may take over.
REFRESH_LEASE = timedelta(seconds=30)


#: WeChat's frequency and quota limits (its "429"): the API's daily and per-minute
#: quotas, and the customer-service messages allowed per resident message.
RATE_LIMIT_ERRORS = frozenset({45009, 45011, 45047})
CHANNEL = "wechat"


def error_kind(errcode: int, errmsg: str = "") -> str:
    """The ``tiaojie_channel_api_errors_total`` label of a failed WeChat call."""
    if errcode in RATE_LIMIT_ERRORS or errmsg == "http 429":
        return "rate_limited"
    if errcode == -2:
        return "server" if errmsg.startswith("http 5") else "network"
    return "token" if errcode in TOKEN_ERRORS else "refused"


class WeChatApiError(Exception):
    """WeChat answered an ``errcode`` (or could not be reached: ``errcode`` -2)."""

    def __init__(self, errcode: int, errmsg: str = "") -> None:
        super().__init__(f"wechat errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg

    @property
    def permanent(self) -> bool:
        return self.errcode in PERMANENT_ERRORS


def _dumps(body: dict[str, Any]) -> bytes:
    # WeChat shows \\uXXXX escapes literally: Chinese must travel as UTF-8.
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


class WeChatApi:
    """The calls tiaojie makes to WeChat, with the shared, self-refreshing token."""

    def __init__(
        self,
        http: aiohttp.ClientSession | None,
        store: Store,
        *,
        base_url: str,
        app_id: str,
        app_secret: str,
        clock: Callable[[], datetime] = utcnow,
        timeout: float = 10.0,
    ) -> None:
        self._http = http
        self._owned = http is None
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self._secret = app_secret
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{id(self) % 10000}"
        self._cached: tuple[str, datetime] | None = None
        self._lock = asyncio.Lock()
        #: How many tokens this process fetched from WeChat (a figure for tests and logs).
        self.fetched = 0

    async def start(self) -> None:
        """Open our own HTTP session (when none was given); call on a running loop."""
        if self._http is None:
            self._http = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._owned and self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("WeChatApi.start() was not called")
        return self._http

    # ------------------------------------------------------------------ the token

    async def access_token(self) -> str:
        """A valid token: from memory, from the store, or fetched by exactly one process."""
        async with self._lock:
            for _ in range(100):
                now = self.clock()
                if self._cached is not None and self._cached[1] - REFRESH_MARGIN > now:
                    return self._cached[0]
                async with self.store.sessions.begin() as session:
                    stored = await read_token(session, self.app_id)
                if stored is not None and stored[1] - REFRESH_MARGIN > now:
                    self._cached = stored
                    return stored[0]
                async with self.store.sessions.begin() as session:
                    leased = await take_refresh_lease(
                        session, self.app_id, self.owner, now, REFRESH_LEASE
                    )
                if leased:
                    return await self._refresh(now)
                await asyncio.sleep(0.1)  # another process is fetching it
            raise WeChatApiError(-2, "timed out waiting for another process's token refresh")

    async def _refresh(self, now: datetime) -> str:
        try:
            token, expires_in = await self._fetch_token()
        except BaseException:
            async with self.store.sessions.begin() as session:
                await release_lease(session, self.app_id, self.owner)
            raise
        expires_at = now + timedelta(seconds=expires_in)
        async with self.store.sessions.begin() as session:
            await store_token(session, self.app_id, self.owner, token, expires_at)
        self._cached = (token, expires_at)
        self.fetched += 1
        log.info("wechat access token refreshed, valid %d s", expires_in)
        return token

    async def _fetch_token(self) -> tuple[str, int]:
        params = {"grant_type": "client_credential", "appid": self.app_id, "secret": self._secret}
        data = await self._request("GET", "/cgi-bin/token", params=params)
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise WeChatApiError(int(data.get("errcode") or -1), str(data.get("errmsg", "")))
        return token, int(data.get("expires_in") or 7200)

    async def _invalidate(self, token: str) -> None:
        self._cached = None
        async with self.store.sessions.begin() as session:
            await expire_token(session, self.app_id, token, self.clock())

    # ------------------------------------------------------------------ plumbing

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        binary: bool = False,
        max_bytes: int | None = None,
    ) -> dict[str, Any]:
        """One HTTP call; JSON answers are returned, binary ones as ``{"bytes", ...}``."""
        CHANNEL_API_CALLS.labels(CHANNEL).inc()
        try:
            answer = await self._exchange(
                method, path, params=params, body=body, binary=binary, max_bytes=max_bytes
            )
        except WeChatApiError as error:
            CHANNEL_API_ERRORS.labels(CHANNEL, error_kind(error.errcode, error.errmsg)).inc()
            raise
        errcode = answer.get("errcode")
        if isinstance(errcode, int) and not isinstance(errcode, bool) and errcode != 0:
            CHANNEL_API_ERRORS.labels(CHANNEL, error_kind(errcode)).inc()
        return answer

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
        binary: bool,
        max_bytes: int | None,
    ) -> dict[str, Any]:
        try:
            async with self.http.request(
                method,
                self.base_url + path,
                params=params,
                data=_dumps(body) if body is not None else None,
                headers={"Content-Type": "application/json"} if body is not None else None,
                timeout=self.timeout,
            ) as response:
                kind = response.headers.get("Content-Type", "")
                if binary and "json" not in kind and "text/plain" not in kind:
                    if response.status != 200:
                        raise WeChatApiError(-2, f"http {response.status}")
                    if max_bytes is not None and (response.content_length or 0) > max_bytes:
                        return {"too_large": True}
                    data = await response.content.read(max_bytes + 1 if max_bytes else -1)
                    if max_bytes is not None and len(data) > max_bytes:
                        return {"too_large": True}
                    return {"bytes": data, "mime_type": kind.split(";")[0].strip()}
                if response.status >= 500 or response.status == 429:
                    raise WeChatApiError(-2, f"http {response.status}")
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise WeChatApiError(-2, type(error).__name__) from None
        if not isinstance(answer, dict):
            raise WeChatApiError(-1, "answer is not a JSON object")
        return answer

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        binary: bool = False,
        max_bytes: int | None = None,
    ) -> dict[str, Any]:
        """Call with the access token; a refused token is refreshed and the call retried once."""
        for attempt in (1, 2):
            token = await self.access_token()
            query = {"access_token": token, **(params or {})}
            data = await self._request(
                method, path, params=query, body=body, binary=binary, max_bytes=max_bytes
            )
            errcode = int(data.get("errcode") or 0)
            if errcode in TOKEN_ERRORS and attempt == 1:
                log.info("wechat refused the access token (%d); refreshing", errcode)
                await self._invalidate(token)
                continue
            if errcode:
                raise WeChatApiError(errcode, str(data.get("errmsg", "")))
            return data
        raise AssertionError("unreachable")

    # --------------------------------------------------------------- the calls we make

    async def send_text(self, openid: str, text: str) -> None:
        """A customer-service text message (only within 48 h of the resident's last message)."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        await self.call("POST", "/cgi-bin/message/custom/send", body=body)

    async def send_menu(
        self, openid: str, head: str, items: list[tuple[str, str]], tail: str = ""
    ) -> None:
        """A customer-service ``msgmenu``: tappable choices; a tap comes back as text with
        the choice's ``bizmsgmenuid``."""
        body = {
            "touser": openid,
            "msgtype": "msgmenu",
            "msgmenu": {
                "head_content": head,
                "list": [{"id": ident, "content": content} for ident, content in items],
                "tail_content": tail,
            },
        }
        await self.call("POST", "/cgi-bin/message/custom/send", body=body)

    async def send_template(
        self, openid: str, template_id: str, data: dict[str, str], url: str | None = None
    ) -> None:
        """A template message: the only way to reach a resident outside the 48 h window."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {key: {"value": value} for key, value in data.items()},
        }
        if url:
            body["url"] = url
        await self.call("POST", "/cgi-bin/message/template/send", body=body)

    async def download_media(self, media_id: str, max_bytes: int) -> tuple[bytes, str] | None:
        """A resident's image (temporary media, kept 3 days by WeChat); None when larger
        than ``max_bytes``."""
        data = await self.call(
            "GET",
            "/cgi-bin/media/get",
            params={"media_id": media_id},
            binary=True,
            max_bytes=max_bytes,
        )
        if data.get("too_large"):
            return None
        if "bytes" not in data:
            raise WeChatApiError(-1, "media answer carried no file")
        return data["bytes"], str(data.get("mime_type") or "application/octet-stream")

    async def create_menu(self, menu: dict[str, Any]) -> None:
        await self.call("POST", "/cgi-bin/menu/create", body=menu)
