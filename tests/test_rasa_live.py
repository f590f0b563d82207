"""RasaBackend against a real Rasa server (``make test-rasa`` / ``scripts/rasa.sh test``).

Skipped unless a Rasa server answers ``GET {RASA_URL}/status`` with a loaded model, so
the normal suite never needs the 2.7 GB Rasa install. The messages below are not in
the training data; the checks are about the contract (shape, entities, risk, no
fallback), with the category asserted only where the wording leaves no doubt.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest

from nlu.interface import FALLBACK_INTENT, ParseResult, Risk
from nlu.rasa_backend import RasaBackend

pytestmark = pytest.mark.rasa_live

RASA_URL = os.environ.get("RASA_URL", "http://127.0.0.1:5005")


def _rasa_status() -> str | None:
    """Why the live tests cannot run, or None if a Rasa with a model answers."""
    try:
        with urllib.request.urlopen(RASA_URL.rstrip("/") + "/status", timeout=3) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as error:
        return f"no Rasa server at {RASA_URL} ({error}); start one: scripts/rasa.sh serve"
    if not isinstance(body, dict) or not body.get("model_file"):
        return f"Rasa at {RASA_URL} has no model loaded"
    return None


_SKIP = _rasa_status()
if _SKIP:
    pytestmark = [pytest.mark.rasa_live, pytest.mark.skip(reason=_SKIP)]


class NeverUsed:
    """A fallback that fails the test if Rasa did not answer."""

    async def parse(self, text: str) -> ParseResult:
        raise AssertionError("the live Rasa server should have answered")

    async def health(self) -> dict[str, object]:
        return {"backend": "never-used"}


def risk_check(text: str) -> Risk:
    found = [word for word in ("刀", "杀") if word in text]
    return Risk(flagged=bool(found), kinds=["violence"] if found else [], matches=found)


@pytest.fixture
async def rasa() -> AsyncIterator[RasaBackend]:
    async with RasaBackend(
        RASA_URL, fallback=NeverUsed(), risk_check=risk_check, timeout=10.0
    ) as backend:
        yield backend


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("厂里老板跑路了，拖欠我们四十多个工人两个月工资", "dispute_labor"),
        ("我在饿了么跑外卖，平台说我超时扣了我三百块", "dispute_gig_work"),
        ("房东到期不退押金，还说要扣清洁费", "dispute_tenancy"),
        ("你好", "greet"),
    ],
)
async def test_real_rasa_parses(rasa: RasaBackend, text: str, intent: str) -> None:
    result = await rasa.parse(text)
    assert set(result) == {"text", "intent", "entities", "intent_ranking", "risk"}
    assert result["text"] == text
    assert result["intent"]["name"] == intent
    assert 0.0 <= result["intent"]["confidence"] <= 1.0
    assert result["risk"]["flagged"] is False
    health = await rasa.health()
    assert health["status"] == "ok" and health["active"] == "rasa"


async def test_real_rasa_entities_index_the_text(rasa: RasaBackend) -> None:
    text = "老板欠我8000元工资，厂在沙井"
    result = await rasa.parse(text)
    for entity in result["entities"]:
        assert text[entity["start"] : entity["end"]]
    assert "amount" in {entity["entity"] for entity in result["entities"]}


async def test_real_rasa_odd_input_and_risk(rasa: RasaBackend) -> None:
    empty = await rasa.parse("")
    assert empty["intent"]["name"] == FALLBACK_INTENT
    threat = await rasa.parse("他拿着刀说要杀了我")
    assert threat["risk"]["flagged"] is True
    long = await rasa.parse("欠薪" * 3000)
    assert long["intent"]["name"]
    assert (await rasa.health())["status"] == "ok"


async def test_end_to_end_intake_with_rasa_backend(sqlite_url, nlu_model_dir, tmp_path) -> None:
    """A whole intake through the REST channel while a real Rasa server does the NLU."""
    from aiohttp.test_utils import TestClient, TestServer

    from bot.nlu_setup import open_nlu
    from bot.runtime import Store
    from bot.settings import load_settings
    from bot.web import create_app
    from storage import cases as case_repo

    settings = load_settings(
        database_url=sqlite_url,
        data_dir=tmp_path / "var",
        model_dir=nlu_model_dir,
        nlu_backend="rasa",
        rasa_url=RASA_URL,
        rasa_timeout=10,
    )
    store = Store.open(settings)
    try:
        async with open_nlu(settings) as (nlu, threshold):
            assert isinstance(nlu, RasaBackend)
            app = create_app(settings, nlu, threshold=threshold, store=store)
            async with TestClient(TestServer(app)) as http:
                health = await (await http.get("/healthz")).json()
                assert health["nlu"]["status"] == "ok", health["nlu"]

                async def say(message: str) -> list[dict]:
                    response = await http.post(
                        "/webhooks/rest/webhook", json={"sender": "rasa-e2e", "message": message}
                    )
                    return await response.json()

                body = await say("老板拖欠我三个月工资一共八千块,厂在福永,我要讨回工资")
                buttons = [b["payload"] for item in body for b in item.get("buttons", [])]
                assert "劳动争议" in body[-1]["text"] or "cat:dispute_labor" in buttons, body
                body = await say("yes" if "yes" in buttons else "cat:dispute_labor")
                for _ in range(12):
                    texts = " ".join(item["text"] for item in body)
                    if "案件编号" in texts:
                        break
                    buttons = [b["payload"] for item in body for b in item.get("buttons", [])]
                    if "submit" in buttons:
                        answer = "submit"
                    elif buttons[:2] == ["yes", "no"]:
                        answer = "yes"
                    elif any(p.startswith(("choice:", "street:", "comm:")) for p in buttons):
                        answer = next(
                            p for p in buttons if p.startswith(("choice:", "street:", "comm:"))
                        )
                    elif "手机" in texts:
                        answer = "13812345678"
                    elif "skip" in buttons:
                        answer = "skip"
                    else:
                        answer = "宏达电子厂"
                    body = await say(answer)
                texts = " ".join(item["text"] for item in body)
                reference = texts.split("案件编号:")[1][:16]
        async with store.sessions() as session:
            case = await case_repo.get_case(session, reference)
        assert case.category == "dispute_labor" and case.channel == "rest"
    finally:
        await store.close()
