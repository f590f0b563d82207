"""WeCom (企业微信) group robots: where the people of a centre see new and urgent cases.

A centre in the directory may have ``wecom_webhook``, a group robot's URL. Its new,
urgent and escalated cases are posted there as markdown cards (reference, kind, risk,
street, masked phone and a link to the case in the web workspace), beside or instead
of a Telegram group. Robots cannot edit a message or take button presses, so the card
links to the workspace, where the case is claimed.

A robot accepts 20 messages a minute. Each webhook has its own queue and a sliding
window limiter, so a burst of cases is spread out instead of refused; a refusal anyway
(HTTP 429 or ``errcode`` 45009) is retried later, never dropped, and the cards of one
robot keep their order. Queues live in this process: a restart loses what was still
queued, which the desk's periodic sweep re-announces like any lost announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

from actions.desk import DeskService
from actions.metrics import CHANNEL_API_CALLS, CHANNEL_API_ERRORS
from actions.ports import CaseCard
from bot.i18n import t
from bot.runtime import Store
from bot.settings import Settings
from storage.wechat import any_wecom_robot, wecom_webhook

log = logging.getLogger(__name__)

#: WeCom's limit per robot.
PER_MINUTE = 20
#: "Too many messages": wait, then try the same card again.
RATE_LIMITED = frozenset({45009})
#: The webhook is wrong or the robot was removed: retrying cannot help.
PERMANENT = frozenset({93000, 93004, 93008, 40008, 40058})
#: WeCom refuses markdown longer than 4096 bytes.
MAX_BYTES = 4096


def _error_kind(status: int, limited: bool) -> str:
    """The ``tiaojie_channel_api_errors_total`` label of a refused robot post."""
    if limited:
        return "rate_limited"
    if status == -1:
        return "network"
    return "server" if status >= 500 else "refused"


class SlidingWindow:
    """At most ``limit`` acquisitions in any ``period`` seconds (one per robot)."""

    def __init__(
        self,
        limit: int = PER_MINUTE,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.period = period
        self.clock = clock
        self._times: deque[float] = deque()

    def wait_time(self) -> float:
        """Seconds until one more message may go (0: now)."""
        now = self.clock()
        while self._times and now - self._times[0] >= self.period:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self.period - (now - self._times[0])

    async def acquire(self) -> None:
        """Wait for a free slot and take it (one robot's sends are serialised by its
        worker, so a slot seen free is still free when taken)."""
        delay = self.wait_time()
        while delay > 0:
            await asyncio.sleep(delay)
            delay = self.wait_time()
        self._times.append(self.clock())


def render_card(card: CaseCard, language: str, desk_url: str | None) -> str:
    """The markdown a centre's group sees; phone masked, no words of the resident."""
    event = str(card.extra.get("event") or "")
    title_key = (
        "title_urgent"
        if card.urgent
        else ("title_escalated" if event == "escalated" else "title_new")
    )
    risk = card.risk_badge or card.risk
    if card.urgent:
        risk = f'<font color="warning">{risk}</font>'
    lines = [
        f"### {t(f'wechat.wecom.{title_key}', language)} {card.reference}",
        f"> {t('wechat.wecom.kind', language)}:{card.kind_title}",
        f"> {t('wechat.wecom.risk', language)}:{risk}",
        f"> {t('wechat.wecom.street', language)}:{card.place or '-'}",
        f"> {t('wechat.wecom.phone', language)}:{card.phone_masked or '-'}",
    ]
    link = card.link or (
        f"{desk_url.rstrip('/')}/desk/cases/{card.reference}" if desk_url else None
    )
    if link:
        lines.append(f"[{t('wechat.wecom.open', language)}]({link})")
    text = "\n".join(lines)
    while len(text.encode("utf-8")) > MAX_BYTES:
        text = text[: len(text) - 100]
    return text


def robot_id(url: str) -> str:
    """A short name for a webhook in logs (its URL holds the robot's secret key)."""
    return hashlib.sha256(url.encode()).hexdigest()[:10]


class _Robot:
    """One webhook: its queue, its limiter and the worker that drains them in order."""

    def __init__(self, url: str, limiter: SlidingWindow) -> None:
        self.url = url
        self.limiter = limiter
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None


class WeComRobotTarget:
    """:class:`actions.ports.CardTarget` for WeCom group robots."""

    name = "wecom"

    def __init__(
        self,
        store: Store,
        *,
        desk_url: str | None = None,
        language: str = "zh",
        per_minute: int = PER_MINUTE,
        retry_after: float = 60.0,
        max_attempts: int = 10,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.store = store
        self.desk_url = desk_url
        self.language = language
        self.per_minute = per_minute
        self.retry_after = retry_after
        self.max_attempts = max_attempts
        self._http = http
        self._owned = http is None
        self._robots: dict[str, _Robot] = {}
        #: Cards delivered and given up, for /healthz and tests.
        self.delivered = 0
        self.dropped = 0

    # ------------------------------------------------------------ CardTarget

    async def reaches_any(self) -> bool:
        """Whether any centre has a robot (see :class:`actions.ports.CardTarget`)."""
        async with self.store.sessions() as session:
            return await any_wecom_robot(session)

    async def post(self, centre_code: str, card: CaseCard) -> dict[str, Any] | None:
        """Queue the card for the centre's robot; None when the centre has none."""
        async with self.store.sessions() as session:
            url = await wecom_webhook(session, centre_code)
        if url is None:
            return None
        self._enqueue(url, render_card(card, self.language, self.desk_url))
        return {"robot": robot_id(url), "risk": card.risk}

    async def update(self, posted: dict[str, Any], card: CaseCard) -> None:
        """Robots cannot edit a message, and a new message for every claim or note would
        drown the group: the card's link shows the live state. (An emergency is posted
        afresh by the desk, not edited, so it still reaches the group.)"""
        return None

    # -------------------------------------------------------------- sending

    def _enqueue(self, url: str, markdown: str) -> None:
        robot = self._robots.get(url)
        if robot is None:
            robot = _Robot(url, SlidingWindow(self.per_minute))
            self._robots[url] = robot
        robot.queue.put_nowait(markdown)
        if robot.worker is None or robot.worker.done():
            robot.worker = asyncio.create_task(self._drain(robot))

    async def _drain(self, robot: _Robot) -> None:
        while not robot.queue.empty():
            markdown = robot.queue.get_nowait()
            try:
                await self._deliver(robot, markdown)
            finally:
                robot.queue.task_done()

    async def _deliver(self, robot: _Robot, markdown: str) -> None:
        body = {"msgtype": "markdown", "markdown": {"content": markdown}}
        for attempt in range(1, self.max_attempts + 1):
            await robot.limiter.acquire()
            try:
                async with self.http.post(
                    robot.url, json=body, timeout=aiohttp.ClientTimeout(total=10)
                ) as response:
                    status = response.status
                    answer = await response.json(content_type=None) if status != 429 else {}
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                status, answer = -1, {"errmsg": type(error).__name__}
            errcode = int((answer or {}).get("errcode") or 0) if isinstance(answer, dict) else -1
            CHANNEL_API_CALLS.labels("wecom").inc()
            if status == 200 and errcode == 0:
                self.delivered += 1
                return
            limited = status == 429 or errcode in RATE_LIMITED
            CHANNEL_API_ERRORS.labels("wecom", _error_kind(status, limited)).inc()
            if errcode in PERMANENT:
                break
            log.warning(
                "wecom robot %s refused a card (http %s, errcode %s), attempt %d",
                robot_id(robot.url),
                status,
                errcode,
                attempt,
            )
            # Rate limited: wait the window out; anything else: back off a little more each time.
            await asyncio.sleep(self.retry_after if limited else min(self.retry_after, 2**attempt))
        self.dropped += 1
        log.error("wecom robot %s: card given up", robot_id(robot.url))

    async def join(self) -> None:
        """Wait until every queued card was delivered or given up (shutdown, tests)."""
        for robot in list(self._robots.values()):
            await robot.queue.join()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self) -> None:
        for robot in self._robots.values():
            if robot.worker is not None and not robot.worker.done():
                robot.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await robot.worker
        if self._owned and self._http is not None:
            await self._http.close()
            self._http = None


WECOM = web.AppKey("wecom", WeComRobotTarget)


def add_wecom(app: web.Application, settings: Settings, desk: DeskService) -> WeComRobotTarget:
    """Give the desk a WeCom card target (``app[WECOM]``): every centre whose directory
    entry has ``wecom_webhook`` gets its cards there too. Closes with the app, after
    giving queued cards a few seconds to go out."""
    target = WeComRobotTarget(desk.store, desk_url=settings.public_url, language="zh")
    desk.add_card_target(target)
    app[WECOM] = target

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(target.join(), 5)
        await target.close()

    app.cleanup_ctx.append(lifecycle)
    return target
