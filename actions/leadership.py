"""Which worker leads: the one holding the ``leader`` lease in the database.

Some work must happen in exactly one process of a deployment at a time: polling
Telegram (two pollers get 409 Conflict and steal each other's updates) and the
scheduler's jobs. Every worker runs a :class:`Leadership` loop; the one that takes the
lease starts that work, renews the lease every ``ttl / 3`` seconds, and when it dies
another takes over as soon as the lease expires (within ``ttl + ttl / 3``). Webhook
deliveries and REST messages go to any worker; only this work follows the leader.

A leader that cannot reach the database steps down by itself before its lease can
have expired, so two leaders never act at once for longer than one renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from bot.runtime import Store
from storage import leases
from storage.models import utcnow

log = logging.getLogger(__name__)

LEASE = "leader"
Hook = Callable[[], Awaitable[None]]


class Leadership:
    """Elects this process when it can take the lease; runs hooks on gain and loss."""

    def __init__(
        self,
        store: Store,
        holder: str,
        *,
        ttl: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.holder = holder
        self.ttl = ttl
        self.renew_every = ttl / 3
        self.clock = clock
        self.is_leader = False
        self.elections = 0
        self._elected: list[Hook] = []
        self._deposed: list[Hook] = []
        self._task: asyncio.Task[None] | None = None
        self._renewed_at = 0.0  # time.monotonic() of the last successful renewal

    def on_elected(self, hook: Hook) -> None:
        self._elected.append(hook)

    def on_deposed(self, hook: Hook) -> None:
        self._deposed.append(hook)

    async def _run_hooks(self, hooks: list[Hook], what: str) -> None:
        for hook in hooks:
            try:
                await hook()
            except Exception as error:  # one hook failing must not stop the others
                log.warning("leader %s hook failed: %s", what, type(error).__name__)
                log.debug("hook failure", exc_info=error)

    async def _become(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        if leader:
            self.elections += 1
            log.info("this worker leads now (%s)", self.holder)
            await self._run_hooks(self._elected, "elected")
        else:
            log.info("this worker no longer leads (%s)", self.holder)
            await self._run_hooks(self._deposed, "deposed")

    async def tick(self) -> bool:
        """One round: take or renew the lease, step up or down; True when leading."""
        ttl = timedelta(seconds=self.ttl)
        try:
            held = await leases.take_lease(self.store.engine, LEASE, self.holder, ttl, self.clock())
        except Exception as error:
            log.warning("leader lease not renewed: %s", type(error).__name__)
            # The database may still count our lease; step down before it could expire.
            if self.is_leader and time.monotonic() - self._renewed_at > self.ttl - self.renew_every:
                await self._become(False)
            return self.is_leader
        if held:
            self._renewed_at = time.monotonic()
        await self._become(held)
        return held

    async def _loop(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.renew_every)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="leadership")

    async def stop(self) -> None:
        """Stop leading (hooks run) and let the lease go so a successor starts at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.is_leader:
            await self._become(False)
            try:
                await leases.release_lease(self.store.engine, LEASE, self.holder)
            except Exception as error:
                log.debug("leader lease not released: %s", type(error).__name__)

    def health(self) -> dict[str, object]:
        return {"leader": self.is_leader, "holder": self.holder, "elections": self.elections}
