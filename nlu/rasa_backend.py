"""NLU through a Rasa server's HTTP API, with the built-in engine standing by.

Some offices already run Rasa, or want its DIET model: with
``TIAOJIE_NLU_BACKEND=rasa`` the bot sends each message to ``POST {RASA_URL}/model/parse``.
A resident must never be left without an answer because that server is slow, down or
mid-deploy, so every call is bounded three ways:

* a per-request timeout (``RASA_TIMEOUT``), on one pooled :class:`aiohttp.ClientSession`;
* a bounded retry (tenacity) for transient faults only: refused connections, timeouts,
  502/503/504, where a second try may well succeed (so with the default single retry
  a message waits at most about 2 x ``RASA_TIMEOUT`` before the fallback answers);
* a circuit breaker (aiobreaker): after ``fail_max`` failed parses in a row the breaker
  opens and messages go straight to the fallback without waiting on a dead server;
  after ``reset_timeout`` seconds one message probes Rasa (half-open) and, if it
  answers, Rasa takes over again.

Whenever Rasa gives no usable answer the message is parsed by the injected fallback
(the built-in engine). Entering and leaving that degraded mode is logged once each,
never per message, and never with the resident's text; :meth:`RasaBackend.health`
reports it for ``/healthz``.

The in-process risk rule layer runs on every message whichever engine answered:
a threat of violence must be caught even when the remote model is unsure or gone.

aiobreaker 1.2 (pure Python, no ``asyncio.coroutine``) runs unchanged on Python 3.11.
Two of its quirks are handled here: in half-open state it lets *every* concurrent call
through, so a lock keeps the probe to one message at a time; and its ``opens_at``
mixes local and UTC clocks, so it is never used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiobreaker import CircuitBreaker, CircuitBreakerError, CircuitBreakerState
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from yarl import URL

from nlu.interface import FALLBACK_INTENT, IntentScore, NLUBackend, ParseResult, Risk

log = logging.getLogger(__name__)

#: Entity keys of Rasa's parse result that the bot may use; others are dropped.
_ENTITY_KEYS = (
    "entity",
    "value",
    "start",
    "end",
    "confidence_entity",
    "role",
    "group",
    "extractor",
    "processors",
)
#: Statuses worth one more try: a proxy or a server that is (re)loading its model.
_TRANSIENT_STATUSES = frozenset({502, 503, 504})


class RasaError(Exception):
    """Rasa gave no usable parse; ``str()`` names the fault, never the message text."""


class RasaUnavailable(RasaError):
    """A fault that may pass on its own (refused, timed out, 502/503/504): retried."""


class RasaBadResponse(RasaError):
    """Rasa answered, but not with a parse we can use (500, 4xx, bad JSON): not retried."""


class _ProbeInFlight(RasaError):
    """The breaker is half-open and another message is already probing Rasa."""


def _number(value: object) -> float:
    """A confidence as a finite float, or :class:`RasaBadResponse`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RasaBadResponse(f"confidence is not a number: {type(value).__name__}")
    return float(value)


def _intent(value: object, *, where: str) -> IntentScore:
    if not isinstance(value, dict):
        raise RasaBadResponse(f"{where} is {type(value).__name__}, not an object")
    name = value.get("name")
    if name is None or name == "":
        # Rasa sends a null intent for empty text: that is "not understood".
        return IntentScore(name=FALLBACK_INTENT, confidence=0.0)
    if not isinstance(name, str):
        raise RasaBadResponse(f"{where}.name is {type(name).__name__}, not a string")
    return IntentScore(name=name, confidence=_number(value.get("confidence", 0.0)))


def _entity(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RasaBadResponse(f"entity is {type(value).__name__}, not an object")
    if not isinstance(value.get("entity"), str) or "value" not in value:
        raise RasaBadResponse("entity lacks 'entity' or 'value'")
    for key in ("start", "end"):
        if key in value and (isinstance(value[key], bool) or not isinstance(value[key], int)):
            raise RasaBadResponse(f"entity {key} is not an integer")
    return {key: value[key] for key in _ENTITY_KEYS if key in value}


def normalise(body: object, text: str) -> ParseResult:
    """Rasa's ``/model/parse`` JSON as a :class:`ParseResult`, or :class:`RasaBadResponse`.

    Keeps ``text``/``intent``/``entities``/``intent_ranking``, drops the rest
    (``response_selector``, ``text_tokens`` …) so the bot sees the same shape from every
    engine. A null intent (Rasa's answer to empty text) becomes ``nlu_fallback``,
    the name Rasa's FallbackClassifier itself uses below its threshold, so the bot has
    one "not understood" to handle. ``text`` is the caller's, not the echo.
    """
    if not isinstance(body, dict):
        raise RasaBadResponse(f"body is {type(body).__name__}, not an object")
    if "intent" not in body:
        raise RasaBadResponse("body has no 'intent'")
    intent = _intent(body["intent"], where="intent")
    entities = body.get("entities", [])
    ranking = body.get("intent_ranking", [])
    if not isinstance(entities, list) or not isinstance(ranking, list):
        raise RasaBadResponse("'entities' or 'intent_ranking' is not a list")
    ranked = [_intent(item, where="intent_ranking[]") for item in ranking] or [intent]
    return ParseResult(
        text=text,
        intent=intent,
        entities=[_entity(item) for item in entities],
        intent_ranking=ranked,
    )


def _describe(error: BaseException) -> str:
    """A short, text-free description of why Rasa failed, for logs and health."""
    if isinstance(error, CircuitBreakerError):
        cause = error.__cause__
        return f"circuit open ({_describe(cause)})" if cause else "circuit open"
    if isinstance(error, RasaError):
        return str(error)
    return type(error).__name__


class RasaBackend:
    """An :class:`~nlu.interface.NLUBackend` that asks a Rasa server, else ``fallback``.

    ``risk_check`` is the in-process rule layer (``nlu.risk``); it is injected, like the
    fallback engine, so this module works with whatever engine is configured and can be
    tested with small real stand-ins. Use it as an async context manager, or call
    :meth:`start` and :meth:`close` from the application's cleanup context.
    """

    def __init__(
        self,
        url: str,
        fallback: NLUBackend,
        risk_check: Callable[[str], Risk],
        timeout: float = 2.0,
        *,
        retries: int = 1,
        retry_wait: float = 0.05,
        fail_max: int = 3,
        reset_timeout: float = 30.0,
        pool_size: int = 16,
        max_chars: int = 4000,
    ) -> None:
        if timeout <= 0 or retries < 0 or fail_max < 1 or reset_timeout <= 0:
            raise ValueError("timeout and reset_timeout must be > 0, retries >= 0, fail_max >= 1")
        base = URL(url)
        if base.scheme not in {"http", "https"} or not base.host:
            raise ValueError("url must be an http:// or https:// URL")
        # Keep a query (Rasa's ?token=… for --auth-token) but never show it.
        self._parse_url = base.with_path(base.path.rstrip("/") + "/model/parse").with_query(
            base.query
        )
        self._status_url = base.with_path(base.path.rstrip("/") + "/status").with_query(base.query)
        self.url = str(base.with_query(None).with_fragment(None).with_user(None))
        self._fallback = fallback
        self._risk_check = risk_check
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._retry_wait = retry_wait
        self._pool_size = pool_size
        self._max_chars = max_chars
        self._breaker = CircuitBreaker(
            fail_max=fail_max, timeout_duration=timedelta(seconds=reset_timeout), name="rasa"
        )
        self._probe_lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._degraded_since: float | None = None
        self._last_error: str | None = None
        self._rasa_parses = 0
        self._fallback_parses = 0
        self._fallback_before = 0
        self._model: str | None = None

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pool and look at Rasa once, so ``/healthz`` is right early.

        An unreachable server at start-up is not fatal (Rasa may still be loading its
        model); it opens the breaker at once, so the first residents do not each wait
        out a timeout, and the half-open probe takes over from there.
        """
        self._ensure_session()
        try:
            self._model = await self._status()
        except RasaError as error:
            self._note_failure(error)
            self._breaker.open()

    async def close(self) -> None:
        """Close the pool; idempotent."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        """The one pooled session, created lazily because it needs a running loop."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, limit_per_host=self._pool_size, keepalive_timeout=30
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"Accept": "application/json"},
            )
        return self._session

    # --- the NLUBackend protocol ------------------------------------------------

    @property
    def active(self) -> str:
        """``"rasa"`` while Rasa answers, ``"fallback"`` while the built-in engine does."""
        return "fallback" if self._degraded_since is not None else "rasa"

    async def parse(self, text: str) -> ParseResult:
        """Parse with Rasa, else the fallback; always with the rule layer's ``risk``."""
        try:
            result = await self._guarded(text)
        except (RasaError, CircuitBreakerError) as error:
            self._note_failure(error)
            result = await self._fallback_parse(text)
        else:
            self._note_success()
        result["risk"] = self._risk_check(text)
        return result

    async def health(self) -> dict[str, object]:
        """Which engine is answering and why, without contacting Rasa (cheap to poll)."""
        since = self._degraded_since
        try:
            fallback_health: object = await self._fallback.health()
        except Exception as error:  # a broken fallback must not break /healthz
            fallback_health = {"status": "error", "error": type(error).__name__}
        return {
            "backend": "rasa",
            "status": "degraded" if since is not None else "ok",
            "active": self.active,
            "url": self.url,
            "model": self._model,
            "breaker": self._breaker.current_state.name.lower(),
            "last_error": self._last_error,
            "degraded_since": (
                None
                if since is None
                else datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
            ),
            "rasa_parses": self._rasa_parses,
            "fallback_parses": self._fallback_parses,
            "fallback": fallback_health,
        }

    # --- calling Rasa ------------------------------------------------------------

    async def _guarded(self, text: str) -> ParseResult:
        """One parse through the breaker; while it is not closed, one probe at a time."""
        if self._breaker.current_state is CircuitBreakerState.CLOSED:
            return await self._breaker.call_async(self._with_retry, text)
        if self._probe_lock.locked():
            raise _ProbeInFlight("probe in flight")
        async with self._probe_lock:
            return await self._breaker.call_async(self._with_retry, text)

    async def _with_retry(self, text: str) -> ParseResult:
        """Retry transient faults a bounded number of times, then give up to the breaker."""
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._retries + 1),
            wait=wait_exponential(multiplier=self._retry_wait, max=1.0),
            retry=retry_if_exception_type(RasaUnavailable),
            reraise=True,
        ):
            with attempt:
                return await self._request(text)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _request(self, text: str) -> ParseResult:
        """One POST /model/parse, its failures sorted into retryable or not."""
        session = self._ensure_session()
        # Lone surrogates (junk from some clients) cannot be UTF-8 encoded; and a
        # whole pasted contract should not cost Rasa seconds: it sees the first
        # max_chars characters, the risk layer still sees everything.
        sent = text[: self._max_chars].encode("utf-8", "replace").decode("utf-8")
        try:
            async with session.post(self._parse_url, json={"text": sent}) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError as error:  # aiohttp's timeouts subclass TimeoutError
            raise RasaUnavailable(f"timed out ({type(error).__name__})") from error
        except aiohttp.ClientError as error:
            raise RasaUnavailable(f"unreachable ({type(error).__name__})") from error
        if status in _TRANSIENT_STATUSES:
            raise RasaUnavailable(f"HTTP {status}")
        if status != 200:
            raise RasaBadResponse(f"HTTP {status}")
        try:
            body = json.loads(raw)
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
            raise RasaBadResponse("malformed JSON") from error
        return normalise(body, text)

    async def _status(self) -> str | None:
        """GET /status: the loaded model's file name, or :class:`RasaError`."""
        session = self._ensure_session()
        try:
            async with session.get(self._status_url) as response:
                if response.status != 200:
                    raise RasaBadResponse(f"status HTTP {response.status}")
                body = json.loads(await response.read())
        except TimeoutError as error:
            raise RasaUnavailable(f"timed out ({type(error).__name__})") from error
        except aiohttp.ClientError as error:
            raise RasaUnavailable(f"unreachable ({type(error).__name__})") from error
        except ValueError as error:
            raise RasaBadResponse("malformed JSON") from error
        model = body.get("model_file") if isinstance(body, dict) else None
        return model if isinstance(model, str) else None

    # --- falling back and coming back --------------------------------------------

    async def _fallback_parse(self, text: str) -> ParseResult:
        """The fallback's parse; if even that fails, an honest "not understood"."""
        self._fallback_parses += 1
        try:
            return await self._fallback.parse(text)
        except Exception:
            log.exception("fallback NLU engine failed; answering nlu_fallback")
            score = IntentScore(name=FALLBACK_INTENT, confidence=0.0)
            return ParseResult(text=text, intent=score, entities=[], intent_ranking=[score])

    def _note_failure(self, error: BaseException) -> None:
        """Remember why; log only the first failure of an outage."""
        if not isinstance(error, _ProbeInFlight):
            self._last_error = _describe(error)
        if self._degraded_since is None:
            self._degraded_since = time.time()
            self._fallback_before = self._fallback_parses
            log.warning(
                "Rasa NLU at %s failed (%s); parsing with the built-in engine until it "
                "recovers (circuit breaker opens after %d failures in a row, probes every %.0f s)",
                self.url,
                self._last_error,
                self._breaker.fail_max,
                self._breaker.timeout_duration.total_seconds(),
            )
        else:
            log.debug("Rasa NLU still failing: %s", _describe(error))

    def _note_success(self) -> None:
        self._rasa_parses += 1
        if self._degraded_since is not None:
            log.info(
                "Rasa NLU at %s answers again after %.0f s; switched back from the built-in "
                "engine (%d messages were parsed by it meanwhile)",
                self.url,
                time.time() - self._degraded_since,
                self._fallback_parses - self._fallback_before,
            )
            self._degraded_since = None
            self._last_error = None
