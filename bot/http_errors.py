"""Bad requests get a polite 4xx, server trouble a 503 with a retry hint, never a 500.

Every HTTP endpoint reads its body through :func:`read_json`, which refuses what it
cannot use with a :class:`BadBody` naming a catalog key (unknown charset, bytes that
are not UTF-8, not JSON, nested too deeply, too large). :func:`error_middleware` turns
that — and any exception a handler did not expect — into a JSON answer in both
languages plus exactly one log line:

- the request was at fault (:class:`BadBody`, an aiohttp 4xx, a decoding or recursion
  error while reading it): 4xx, one WARNING with method, path, peer and the key;
- the server was (a database or network failure, a bug): 503 with ``Retry-After``, so
  a bridge or Telegram sends again later instead of dropping the message.

Log lines never carry the body or any message text, and the values they do carry pass
through :func:`~bot.channels.sanitise.escape_for_log`.
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot.channels.sanitise import clean_json, escape_for_log
from bot.i18n import t
from storage.db import DatabaseUnavailable

log = logging.getLogger(__name__)

#: Deepest JSON nesting any of our endpoints needs (a Telegram update is about 8 deep).
MAX_DEPTH = 32
#: Seconds a client should wait before sending again after a 503.
RETRY_AFTER = 5
_UTF8_NAMES = {"utf-8", "utf8", "utf_8"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadBody(Exception):
    """The request cannot be used; ``key`` names the text under ``http.`` or ``rest.``."""

    def __init__(self, key: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(key)
        self.key = key
        self.status = status
        self.headers = headers or {}


def error_response(key: str, status: int, **extra: Any) -> web.Response:
    """``{"error": English, "message": 中文, "code": key}`` with ``status``."""
    full = key if "." in key else f"http.{key}"
    body = {"error": t(full, "en"), "message": t(full, "zh"), "code": full.split(".")[-1]}
    body.update(extra)
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _charset(request: web.Request) -> str:
    """The declared charset, or UTF-8; :class:`BadBody` (415) for one we cannot decode."""
    declared = request.charset
    if declared is None:
        return "utf-8"
    name = declared.strip().strip("\"'").lower()
    if name in _UTF8_NAMES:
        return "utf-8"
    try:
        codecs.lookup(name)
    except LookupError:
        raise BadBody("bad_charset", 415) from None
    # Only text encodings; ``rot13`` or ``zlib`` are codecs too, but not charsets.
    if not codecs.lookup(name)._is_text_encoding:  # type: ignore[attr-defined]
        raise BadBody("bad_charset", 415)
    return name


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests deeper than ``limit`` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


async def read_json(request: web.Request, *, max_depth: int = MAX_DEPTH) -> Any:
    """The request's JSON body, decoded, depth-checked and cleaned of NUL and surrogates.

    Raises :class:`BadBody`; a body over the app's ``client_max_size`` raises aiohttp's
    413, which the middleware answers the same way.
    """
    raw = await request.read()
    charset = _charset(request)
    try:
        text = raw.decode(charset)
    except UnicodeDecodeError:
        raise BadBody("not_utf8") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadBody("too_deep") from None
    except ValueError:
        raise BadBody("not_json") from None
    if json_depth_exceeds(value, max_depth):
        raise BadBody("too_deep")
    return clean_json(value)


def _peer(request: web.Request) -> str:
    return escape_for_log(request.remote or "-")


def _where(request: web.Request) -> str:
    return f"{request.method} {escape_for_log(request.path)[:200]}"


_HTTP_KEYS = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "bad_charset"}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure with JSON: 4xx for the request's fault, 503 for ours."""
    try:
        return await handler(request)
    except BadBody as error:
        log.warning("refused %s from %s: %s", _where(request), _peer(request), error.key)
        response = error_response(error.key, error.status)
        response.headers.update(error.headers)
        return response
    except web.HTTPException as error:
        if error.status < 400 or error.content_type == "application/json":
            raise
        key = _HTTP_KEYS.get(error.status, "bad_request" if error.status < 500 else "unavailable")
        level = logging.INFO if error.status in (404, 405) else logging.WARNING
        log.log(level, "refused %s from %s: %d", _where(request), _peer(request), error.status)
        response = error_response(key, error.status if error.status < 500 else 503)
        for header in ("Allow", "WWW-Authenticate", "Retry-After"):
            if header in error.headers:
                response.headers[header] = error.headers[header]
        return response
    except (UnicodeError, RecursionError, json.JSONDecodeError) as error:
        # Raised while a handler looked at the body: the request's fault, not ours.
        log.warning("refused %s from %s: %s", _where(request), _peer(request), type(error).__name__)
        return error_response("bad_request", 400)
    except (SQLAlchemyError, DatabaseUnavailable, OSError) as error:
        # The error text may quote a resident's words: the type only, details at DEBUG.
        log.warning("%s failed (will ask to retry): %s", _where(request), type(error).__name__)
        log.debug("server failure", exc_info=error)
        return _unavailable()
    except Exception:
        log.exception("%s failed (will ask to retry)", _where(request))
        return _unavailable()


def _unavailable() -> web.Response:
    response = error_response("unavailable", 503, retry_after=RETRY_AFTER)
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response
