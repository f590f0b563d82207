"""Every Bot API call counted at PTB's HTTP layer, with its errors and 429s.

Why here and not in the ports or the error handler: PTB's rate limiter retries a
``RetryAfter`` (429) by itself, and polling calls ``getUpdates`` without any handler
of ours seeing it, so the only place that sees every answer Telegram gives is the
request object. :class:`MeteredRequest` is PTB's own ``HTTPXRequest`` with a count
around :meth:`do_request`; the application builder is given one for ordinary calls and
one for polling (PTB's defaults: 256 connections, and 1 for ``getUpdates``).
"""

from __future__ import annotations

from typing import Any

from telegram.error import NetworkError
from telegram.request import HTTPXRequest

from actions.metrics import CHANNEL_API_CALLS, CHANNEL_API_ERRORS

CHANNEL = "telegram"


def error_kind(status: int) -> str | None:
    """The error label for an HTTP status from the Bot API; None for success."""
    if status < 400:
        return None
    if status == 429:
        return "rate_limited"
    return "server" if status >= 500 else "refused"


class MeteredRequest(HTTPXRequest):
    """PTB's HTTPX request, counting calls, 429s and other failures."""

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        CHANNEL_API_CALLS.labels(CHANNEL).inc()
        try:
            status, payload = await super().do_request(*args, **kwargs)
        except NetworkError:  # includes TimedOut: Telegram unreachable or too slow
            CHANNEL_API_ERRORS.labels(CHANNEL, "network").inc()
            raise
        kind = error_kind(status)
        if kind is not None:
            CHANNEL_API_ERRORS.labels(CHANNEL, kind).inc()
        return status, payload


def metered_requests() -> tuple[MeteredRequest, MeteredRequest]:
    """(ordinary calls, ``getUpdates``) requests with PTB's default pool sizes."""
    return MeteredRequest(connection_pool_size=256), MeteredRequest(connection_pool_size=1)
