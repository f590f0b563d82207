"""RasaBackend against a stand-in Rasa server on loopback.

The stand-in is a real aiohttp server that answers with JSON recorded from a real
Rasa 3.6.21 server (``scripts/record_rasa.py`` → ``tests/data/rasa_recordings/``), so
the HTTP client, pool, timeout, retry and breaker all run for real; only Rasa's model
is canned. Faults (slow answers, 500/503, bad JSON, wrong shapes, a dead port) are
switched on per test. The fallback is a tiny real engine defined here, so these tests
do not depend on the built-in engine's accuracy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from nlu.interface import FALLBACK_INTENT, NLUBackend, ParseResult, Risk
from nlu.rasa_backend import RasaBackend, RasaBadResponse, normalise

RECORDINGS = Path(__file__).parent / "data" / "rasa_recordings"
LOGGER = "nlu.rasa_backend"


def _load(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / name).read_text(encoding="utf-8"))


PARSES: dict[str, dict[str, Any]] = {
    path.stem.removeprefix("parse_"): _load(path.name)
    for path in sorted(RECORDINGS.glob("parse_*.json"))
}
BY_TEXT: dict[str, dict[str, Any]] = {rec["request"]["text"]: rec for rec in PARSES.values()}
LABOUR = PARSES["labor_wage_arrears"]["request"]["text"]


# --- small real collaborators ---------------------------------------------------


class KeywordEngine:
    """A tiny real NLUBackend: enough to tell its answers from Rasa's."""

    INTENT = "fallback_engine_says_hi"

    def __init__(self) -> None:
        self.calls = 0

    async def parse(self, text: str) -> ParseResult:
        self.calls += 1
        name = self.INTENT if text.strip() else FALLBACK_INTENT
        score = {"name": name, "confidence": 0.5}
        return ParseResult(text=text, intent=score, entities=[], intent_ranking=[score])

    async def health(self) -> dict[str, object]:
        return {"backend": "keyword", "status": "ok"}


def risk_check(text: str) -> Risk:
    """A two-word stand-in for nlu.risk: enough to see it runs on every path."""
    found = [word for word in ("刀", "杀") if word in text]
    return Risk(flagged=bool(found), kinds=["violence"] if found else [], matches=found)


# --- the stand-in Rasa server ---------------------------------------------------


@dataclass
class FakeRasa:
    """Answers like the recorded Rasa; ``mode`` switches on one fault at a time."""

    mode: str = "ok"
    delay: float = 0.0
    fail_times: int = 0  # with mode "flaky": fail this many requests with 503 first
    requests: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def parse(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.queries.append(dict(request.query))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "flaky" and self.fail_times > 0:
            self.fail_times -= 1
            return web.json_response({"status": "failure", "code": 503}, status=503)
        if self.mode == "500":  # Rasa's own error body, as recorded
            recorded = _load("error_not_json.json")
            return web.json_response(recorded["response"], status=recorded["status"])
        if self.mode == "malformed":
            return web.Response(text='{"text": "cut off', content_type="application/json")
        if self.mode == "html":
            return web.Response(text="<html>Bad Gateway</html>", content_type="text/html")
        if self.mode == "wrong_shape":
            return web.json_response({"intent": "greet", "entities": "none"})
        if self.mode == "list":
            return web.json_response([1, 2, 3])
        recorded = BY_TEXT.get(body.get("text"))
        if recorded is None:  # any other text: the recorded answer to gibberish
            recorded = PARSES["gibberish"]
            response = {**recorded["response"], "text": body.get("text")}
        else:
            response = recorded["response"]
        return web.json_response(response, status=recorded["status"])

    async def status(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "down_status":
            return web.json_response({}, status=503)
        return web.json_response(_load("status.json"))


@pytest.fixture
async def fake_rasa() -> AsyncIterator[FakeRasa]:
    fake = FakeRasa()
    app = web.Application()
    app.router.add_post("/model/parse", fake.parse)
    app.router.add_get("/status", fake.status)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


def dead_url() -> str:
    """A loopback port nothing listens on: connection refused, at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def engine() -> KeywordEngine:
    return KeywordEngine()


def backend(url: str, fallback: NLUBackend, **kwargs: Any) -> RasaBackend:
    options: dict[str, Any] = {"timeout": 0.5, "retries": 1, "retry_wait": 0.01}
    options.update(kwargs)
    return RasaBackend(url, fallback=fallback, risk_check=risk_check, **options)


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# --- recordings -----------------------------------------------------------------


def test_recordings_come_from_rasa_3_6() -> None:
    assert _load("version.json")["version"] == "3.6.21"
    assert {"labor_wage_arrears", "greet", "empty", "gibberish", "emergency_knife"} <= set(PARSES)


# --- the normal path ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PARSES))
async def test_parse_matches_the_recorded_rasa_answer(
    fake_rasa: FakeRasa, engine: KeywordEngine, name: str
) -> None:
    recorded = PARSES[name]
    text = recorded["request"]["text"]
    async with backend(fake_rasa.url, engine) as nlu:
        result = await nlu.parse(text)
        health = await nlu.health()
    assert engine.calls == 0
    assert set(result) == {"text", "intent", "entities", "intent_ranking", "risk"}
    assert result["text"] == text
    expected = recorded["response"]["intent"]
    assert result["intent"]["name"] == (expected["name"] or FALLBACK_INTENT)
    assert result["intent"]["confidence"] == pytest.approx(expected.get("confidence") or 0.0)
    assert [e["entity"] for e in result["entities"]] == [
        e["entity"] for e in recorded["response"]["entities"]
    ]
    assert [e["value"] for e in result["entities"]] == [
        e["value"] for e in recorded["response"]["entities"]
    ]
    assert result["risk"] == risk_check(text)
    assert health["status"] == "ok" and health["active"] == "rasa"
    assert health["breaker"] == "closed"


async def test_labour_complaint_keeps_rasa_entities_and_drops_text_tokens(
    fake_rasa: FakeRasa, engine: KeywordEngine
) -> None:
    raw = PARSES["labor_wage_arrears"]["response"]
    assert "text_tokens" in raw  # the real server sends it; the bot must not see it
    async with backend(fake_rasa.url, engine) as nlu:
        result = await nlu.parse(LABOUR)
    assert result["intent"]["name"] == raw["intent"]["name"]
    assert "response_selector" not in result and "text_tokens" not in result
    for entity in result["entities"]:
        assert LABOUR[entity["start"] : entity["end"]]  # offsets index the caller's text
        assert set(entity) <= {
            "entity",
            "value",
            "start",
            "end",
            "confidence_entity",
            "role",
            "group",
            "extractor",
            "processors",
        }
    ranking = [item["name"] for item in result["intent_ranking"]]
    assert ranking == [item["name"] for item in raw["intent_ranking"]]


async def test_empty_text_becomes_nlu_fallback(fake_rasa: FakeRasa, engine: KeywordEngine) -> None:
    async with backend(fake_rasa.url, engine) as nlu:
        result = await nlu.parse("")
    assert result["intent"]["name"] == FALLBACK_INTENT
    assert result["entities"] == []
    assert result["risk"] == {"flagged": False, "kinds": [], "matches": []}


async def test_risk_is_flagged_even_when_rasa_says_otherwise(
    fake_rasa: FakeRasa, engine: KeywordEngine
) -> None:
    text = PARSES["emergency_knife"]["request"]["text"]
    async with backend(fake_rasa.url, engine) as nlu:
        result = await nlu.parse(text)
    assert result["risk"]["flagged"] is True
    assert result["risk"]["matches"] == ["刀", "杀"]


async def test_odd_input_never_raises_and_huge_text_is_capped_on_the_wire(
    fake_rasa: FakeRasa, engine: KeywordEngine
) -> None:
    async with backend(fake_rasa.url, engine, max_chars=100) as nlu:
        huge = "欠薪" * 5000 + "刀"
        result = await nlu.parse(huge)
        junk = await nlu.parse("\ud800\x00\ufffe abc")
    assert len(fake_rasa.requests[0]["text"]) == 100
    assert result["text"] == huge and result["risk"]["flagged"] is True  # risk sees it all
    assert junk["intent"]["name"]
    assert engine.calls == 0


async def test_auth_token_is_sent_but_never_shown(
    fake_rasa: FakeRasa, engine: KeywordEngine
) -> None:
    async with backend(fake_rasa.url + "/?token=s3cret", engine) as nlu:
        await nlu.parse(LABOUR)
        health = await nlu.health()
    assert fake_rasa.queries == [{"token": "s3cret"}]
    assert "s3cret" not in json.dumps(health)


async def test_health_reports_the_model_and_the_fallback(
    fake_rasa: FakeRasa, engine: KeywordEngine
) -> None:
    async with backend(fake_rasa.url, engine) as nlu:
        health = await nlu.health()
    assert health["model"] == _load("status.json")["model_file"]
    assert health["fallback"] == {"backend": "keyword", "status": "ok"}
    json.dumps(health)  # JSON-able for /healthz


async def test_satisfies_the_protocol(engine: KeywordEngine) -> None:
    assert isinstance(backend("http://127.0.0.1:1", engine), NLUBackend)


# --- faults: each falls back, with risk ---------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reason", "attempts"),
    [
        ("500", "HTTP 500", 1),
        ("malformed", "malformed JSON", 1),
        ("html", "malformed JSON", 1),
        ("wrong_shape", "not an object", 1),
        ("list", "not an object", 1),
    ],
)
async def test_bad_answers_fall_back_without_retry(
    fake_rasa: FakeRasa,
    engine: KeywordEngine,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    reason: str,
    attempts: int,
) -> None:
    fake_rasa.mode = mode
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with backend(fake_rasa.url, engine) as nlu:
            result = await nlu.parse("刀")
            health = await nlu.health()
    assert result["intent"]["name"] == KeywordEngine.INTENT
    assert result["risk"]["flagged"] is True
    assert len(fake_rasa.requests) == attempts
    assert health["status"] == "degraded" and health["active"] == "fallback"
    assert reason in str(health["last_error"])
    assert len(warnings_from(caplog)) == 1


async def test_timeout_is_retried_once_then_falls_back(
    fake_rasa: FakeRasa, engine: KeywordEngine
) -> None:
    fake_rasa.delay = 1.0
    async with backend(fake_rasa.url, engine, timeout=0.2) as nlu:
        started = asyncio.get_running_loop().time()
        result = await nlu.parse(LABOUR)
        took = asyncio.get_running_loop().time() - started
        health = await nlu.health()
    assert result["intent"]["name"] == KeywordEngine.INTENT
    assert "risk" in result
    assert len(fake_rasa.requests) == 2  # one retry, bounded
    assert took < 1.0
    assert "timed out" in str(health["last_error"])


async def test_transient_503_is_retried_and_rasa_answers(
    fake_rasa: FakeRasa, engine: KeywordEngine, caplog: pytest.LogCaptureFixture
) -> None:
    fake_rasa.mode, fake_rasa.fail_times = "flaky", 1
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with backend(fake_rasa.url, engine) as nlu:
            result = await nlu.parse(LABOUR)
            health = await nlu.health()
    assert result["intent"]["name"] == PARSES["labor_wage_arrears"]["response"]["intent"]["name"]
    assert len(fake_rasa.requests) == 2
    assert engine.calls == 0 and health["status"] == "ok"
    assert warnings_from(caplog) == []


async def test_connection_refused_falls_back(engine: KeywordEngine) -> None:
    async with backend(dead_url(), engine) as nlu:
        health_at_start = await nlu.health()
        result = await nlu.parse(LABOUR)
    assert result["intent"]["name"] == KeywordEngine.INTENT
    assert "risk" in result
    # Found dead at start-up: the breaker opens at once, nobody waits on a dead port.
    assert health_at_start["status"] == "degraded"
    assert health_at_start["breaker"] == "open"
    assert "unreachable" in str(health_at_start["last_error"])


async def test_not_started_backend_still_parses(fake_rasa: FakeRasa, engine: KeywordEngine) -> None:
    nlu = backend(fake_rasa.url, engine)
    try:
        result = await nlu.parse(LABOUR)
    finally:
        await nlu.close()
    assert engine.calls == 0 and result["intent"]["name"] != KeywordEngine.INTENT


# --- the circuit breaker ------------------------------------------------------------


async def test_breaker_opens_logs_once_and_recovers(
    fake_rasa: FakeRasa, engine: KeywordEngine, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "我老婆的电话是13800138000,她打我"
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with backend(fake_rasa.url, engine, fail_max=3, reset_timeout=0.3) as nlu:
            assert (await nlu.parse(LABOUR))["intent"]["name"] != KeywordEngine.INTENT

            fake_rasa.mode = "500"
            results = [await nlu.parse(secret) for _ in range(10)]
            assert all(r["intent"]["name"] == KeywordEngine.INTENT for r in results)
            assert all("risk" in r for r in results)
            # 1 ok + 3 failures, then the open breaker stops calling Rasa at all.
            assert len(fake_rasa.requests) == 4
            health = await nlu.health()
            assert health["status"] == "degraded"
            assert health["breaker"] == "open"
            assert health["fallback_parses"] == 10

            fake_rasa.mode = "ok"
            await asyncio.sleep(0.35)
            back = await nlu.parse(LABOUR)  # the half-open probe
            assert back["intent"]["name"] != KeywordEngine.INTENT
            health = await nlu.health()
            assert health["status"] == "ok" and health["breaker"] == "closed"
            assert health["last_error"] is None

    warnings = warnings_from(caplog)
    assert len(warnings) == 1
    assert "HTTP 500" in warnings[0].getMessage()
    recovered = [r for r in caplog.records if r.levelno == logging.INFO and r.name == LOGGER]
    assert len(recovered) == 1 and "answers again" in recovered[0].getMessage()
    assert "10 messages" in recovered[0].getMessage()
    for record in caplog.records:  # never the resident's words, at any level
        assert "13800138000" not in record.getMessage()
        assert "打我" not in record.getMessage()


async def test_failed_probe_reopens_the_breaker(fake_rasa: FakeRasa, engine: KeywordEngine) -> None:
    fake_rasa.mode = "500"
    async with backend(fake_rasa.url, engine, fail_max=1, reset_timeout=0.2) as nlu:
        await nlu.parse(LABOUR)
        assert len(fake_rasa.requests) == 1
        await asyncio.sleep(0.25)
        await nlu.parse(LABOUR)  # probe fails
        await nlu.parse(LABOUR)  # open again: not sent
        health = await nlu.health()
    assert len(fake_rasa.requests) == 2
    assert health["breaker"] == "open" and health["status"] == "degraded"
    assert "circuit open" in str(health["last_error"])


async def test_half_open_sends_one_probe_while_others_fall_back(
    fake_rasa: FakeRasa, engine: KeywordEngine
) -> None:
    fake_rasa.mode = "500"
    async with backend(fake_rasa.url, engine, fail_max=1, reset_timeout=0.2) as nlu:
        await nlu.parse(LABOUR)
        fake_rasa.mode, fake_rasa.delay = "ok", 0.2
        await asyncio.sleep(0.25)
        results = await asyncio.gather(*(nlu.parse(LABOUR) for _ in range(5)))
        health = await nlu.health()
    from_rasa = [r for r in results if r["intent"]["name"] != KeywordEngine.INTENT]
    assert len(from_rasa) == 1
    assert len(fake_rasa.requests) == 2  # the first failure + one probe
    assert health["status"] == "ok"


async def test_rasa_down_at_start_then_up(fake_rasa: FakeRasa, engine: KeywordEngine) -> None:
    fake_rasa.mode = "down_status"
    async with backend(fake_rasa.url, engine, reset_timeout=0.2) as nlu:
        assert (await nlu.health())["status"] == "degraded"
        first = await nlu.parse(LABOUR)
        assert first["intent"]["name"] == KeywordEngine.INTENT
        assert fake_rasa.requests == []
        fake_rasa.mode = "ok"
        await asyncio.sleep(0.25)
        second = await nlu.parse(LABOUR)
    assert second["intent"]["name"] != KeywordEngine.INTENT


async def test_a_failing_fallback_still_answers(fake_rasa: FakeRasa) -> None:
    class Broken(KeywordEngine):
        async def parse(self, text: str) -> ParseResult:
            raise RuntimeError("model file missing")

    fake_rasa.mode = "500"
    async with backend(fake_rasa.url, Broken()) as nlu:
        result = await nlu.parse("刀")
    assert result["intent"]["name"] == FALLBACK_INTENT
    assert result["risk"]["flagged"] is True


# --- with the real built-in engine and risk rules -------------------------------------


@pytest.fixture(scope="module")
def builtin_engine(tmp_path_factory: pytest.TempPathFactory) -> NLUBackend:
    from nlu.engine import load_engine, train

    root = Path(__file__).resolve().parent.parent
    config = root / "config.yml"
    model = train([root / "nlu" / "data"], config, tmp_path_factory.mktemp("models"))
    return load_engine(model, config)


async def test_real_fallback_engine_and_risk_rules(
    fake_rasa: FakeRasa, builtin_engine: NLUBackend
) -> None:
    """What production wires: the built-in engine behind Rasa, nlu.risk on every path."""
    from nlu.risk import load_risk_rules

    threat = PARSES["emergency_knife"]["request"]["text"]
    rules = load_risk_rules()
    async with RasaBackend(
        fake_rasa.url, fallback=builtin_engine, risk_check=rules.check, timeout=0.5
    ) as nlu:
        from_rasa = await nlu.parse(threat)
        fake_rasa.mode = "500"
        from_builtin = await nlu.parse(threat)
        health = await nlu.health()
    assert from_rasa["intent"] == normalise(PARSES["emergency_knife"]["response"], threat)["intent"]
    assert from_builtin["intent"]["name"] == "emergency"
    assert from_rasa["risk"] == from_builtin["risk"] == rules.check(threat)
    assert from_rasa["risk"]["flagged"] is True
    assert health["fallback"]["backend"] == "builtin"


# --- normalise, the pure part ---------------------------------------------------------


def test_normalise_keeps_rasas_fallback_intent() -> None:
    body = {
        "text": "x",
        "intent": {"name": FALLBACK_INTENT, "confidence": 0.3},
        "entities": [],
        "intent_ranking": [
            {"name": FALLBACK_INTENT, "confidence": 0.3},
            {"name": "greet", "confidence": 0.2},
        ],
    }
    result = normalise(body, "x")
    assert result["intent"] == {"name": FALLBACK_INTENT, "confidence": 0.3}
    assert [i["name"] for i in result["intent_ranking"]] == [FALLBACK_INTENT, "greet"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        "greet",
        {},
        {"intent": None},
        {"intent": {"name": 3, "confidence": 1}},
        {"intent": {"name": "greet", "confidence": "high"}},
        {"intent": {"name": "greet", "confidence": float("nan")}},
        {"intent": {"name": "greet", "confidence": 1}, "entities": [{"value": 1}]},
        {"intent": {"name": "greet", "confidence": 1}, "entities": {}},
        {
            "intent": {"name": "greet", "confidence": 1},
            "entities": [{"entity": "amount", "value": "8000", "start": "0"}],
        },
    ],
)
def test_normalise_rejects_wrong_shapes(body: object) -> None:
    with pytest.raises(RasaBadResponse):
        normalise(body, "x")


def test_constructor_rejects_bad_settings(engine: KeywordEngine) -> None:
    with pytest.raises(ValueError):
        RasaBackend("ftp://x", fallback=engine, risk_check=risk_check)
    with pytest.raises(ValueError):
        RasaBackend("http://x", fallback=engine, risk_check=risk_check, timeout=0)
