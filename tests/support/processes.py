"""Helpers for tests that start real servers and `tiaojie run` processes."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def health(http: aiohttp.ClientSession, port: int) -> dict[str, Any] | None:
    """The process's ``/healthz`` body, or None while it does not answer 200."""
    try:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            return dict(await response.json()) if response.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None
