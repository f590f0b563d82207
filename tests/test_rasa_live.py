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
