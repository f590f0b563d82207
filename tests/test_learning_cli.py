"""`tiaojie review …` and `tiaojie nlu activate|rollback` against a real store."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from actions import learning
from bot.cli import app
from bot.runtime import Store
from storage.nlu_registry import ModelStatus, get_model, register
from storage.review import InboxFilter, is_holdout

ROOT = Path(__file__).resolve().parent.parent
PHONE = "13912345678"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str, env: dict[str, str | None]) -> Ran:
    """The real command in this process (a thread: the commands run their own loop)."""
    result = CliRunner().invoke(app, list(args), env=env)
    return Ran(result.exit_code, result.stdout, result.stderr)


def cli_env(db_url: str, tmp_path: Path, models: Path) -> dict[str, str | None]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TIAOJIE_")}
    env.update(
        TIAOJIE_DATABASE_URL=db_url,
        TIAOJIE_DATA_DIR=str(tmp_path / "var"),
        TIAOJIE_LANGUAGE="en",
        TIAOJIE_MODEL_DIR=str(models),
        COLUMNS="200",
    )
    return env


async def _seed(store: Store) -> list[int]:
    ids = []
    async with store.sessions.begin() as session:
        for i, (words, ranking) in enumerate(
            [
                ("外卖站长扣我钱", [("dispute_labor", 0.45), ("dispute_gig_work", 0.44)]),
                (f"房东不退押金 {PHONE}", [("dispute_tenancy", 0.9), ("dispute_debt", 0.05)]),
            ]
        ):
            parse = {
                "intent": {"name": ranking[0][0], "confidence": ranking[0][1]},
                "intent_ranking": [{"name": n, "confidence": c} for n, c in ranking],
            }
            row = await learning.capture_first_message(
                session,
                text=words,
                parse=parse,
                channel="rest",
                chat_id=str(i),
                model_version="v1",
            )
            ids.append(row.id)
    return ids


async def test_review_cli_list_label_import_export(
    store: Store, db_url: str, tmp_path: Path, nlu_model_dir: Path
) -> None:
    ids = await _seed(store)
    env = cli_env(db_url, tmp_path, nlu_model_dir)
    listed = await asyncio.to_thread(
        run, "review", "list", "--format", "json", "--limit", "5", env=env
    )
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert [i["id"] for i in items] == ids  # the small margin first
    assert items[0]["top"][0]["name"] == "dispute_labor" and "small_margin" in items[0]["signals"]
    assert PHONE not in listed.stdout and "139****5678" in listed.stdout

    labelled = await asyncio.to_thread(
        run, "review", "label", str(ids[0]), "dispute_gig_work", "--by", "admin:li", env=env
    )
    assert labelled.returncode == 0, labelled.stderr
    wrong = await asyncio.to_thread(
        run, "review", "label", str(ids[1]), "dispute_nonsense", env=env
    )
    assert wrong.returncode == 1 and "dispute_nonsense" in wrong.stderr
    missing = await asyncio.to_thread(run, "review", "label", "999999", "dispute_debt", env=env)
    assert missing.returncode == 1 and "999999" in missing.stderr
    async with store.sessions() as session:
        done = await learning.inbox(session, InboxFilter(status=None))
    by_id = {i.id: i for i in done}
    assert (by_id[ids[0]].label, by_id[ids[0]].labelled_by) == ("dispute_gig_work", "admin:li")
    assert by_id[ids[1]].label is None

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "text,label\n欠钱不还,dispute_debt\n邻居吵,not_an_intent\n,dispute_debt\n", "utf-8"
    )
    refused = await asyncio.to_thread(run, "review", "import", str(bad), env=env)
    assert refused.returncode == 1
    assert f"{bad}:3:" in refused.stderr and f"{bad}:4:" in refused.stderr
    good = tmp_path / "good.csv"
    good.write_text(
        "text,label\n" + "".join(f"第{i}笔借款不还,dispute_debt\n" for i in range(30)), "utf-8"
    )
    imported = await asyncio.to_thread(run, "review", "import", str(good), env=env)
    assert imported.returncode == 0 and "30" in imported.stdout
    exported = await asyncio.to_thread(
        run, "review", "export", "--out", str(tmp_path / "rasa"), env=env
    )
    assert exported.returncode == 0, exported.stderr
    text = (tmp_path / "rasa" / "reviewed.yml").read_text("utf-8")
    assert "- intent: dispute_debt" in text
    # The labelled message goes to training unless its hash put it in the holdout slice.
    assert ("外卖站长扣我钱" in text) is not is_holdout("外卖站长扣我钱")


async def test_activate_needs_reason_when_gate_failed_and_rollback(
    store: Store, db_url: str, tmp_path: Path, nlu_model_dir: Path
) -> None:
    folder = await asyncio.to_thread(lambda: next(nlu_model_dir.glob("nlu-*")))
    async with store.sessions.begin() as session:
        first = await register(
            session, "v-first", trained_by="t", status=ModelStatus.CANDIDATE, path=str(folder)
        )
        first.gate = {"passed": True}
        bad = await register(
            session, "v-bad", trained_by="t", status=ModelStatus.CANDIDATE, path=str(folder)
        )
        bad.gate = {
            "passed": False,
            "fell": ["dispute_tenancy"],
            "datasets": [
                {
                    "name": "nlu_test.yml",
                    "failures": [
                        {
                            "rule": "kind_f1",
                            "intent": "dispute_tenancy",
                            "before": 0.9,
                            "after": 0.1,
                        }
                    ],
                }
            ],
        }
    env = cli_env(db_url, tmp_path, nlu_model_dir)
    ok = await asyncio.to_thread(run, "nlu", "activate", "v-first", "--by", "admin:wang", env=env)
    assert ok.returncode == 0, ok.stderr
    refused = await asyncio.to_thread(run, "nlu", "activate", "v-bad", env=env)
    assert refused.returncode == 1 and "dispute_tenancy" in refused.stderr
    short = await asyncio.to_thread(
        run, "nlu", "activate", "v-bad", "--override-reason", "ok", env=env
    )
    assert short.returncode == 1
    reason = "tenancy examples in the test file are mislabelled; confirmed by the centre"
    forced = await asyncio.to_thread(
        run, "nlu", "activate", "v-bad", "--override-reason", reason, "--by", "admin:wang", env=env
    )
    assert forced.returncode == 0, forced.stderr
    async with store.sessions() as session:
        row = await get_model(session, "v-bad")
        assert row is not None and row.status == ModelStatus.ACTIVE
        assert row.override_reason == reason and row.history[-1]["action"] == "override"
        assert row.history[-1]["by"] == "admin:wang"
        assert (await get_model(session, "v-first")).status == ModelStatus.RETIRED  # type: ignore[union-attr]
    back = await asyncio.to_thread(run, "nlu", "rollback", env=env)
    assert back.returncode == 0 and "v-first" in back.stdout
    async with store.sessions() as session:
        assert (await get_model(session, "v-first")).status == ModelStatus.ACTIVE  # type: ignore[union-attr]
        assert (await get_model(session, "v-bad")).status == ModelStatus.RETIRED  # type: ignore[union-attr]
    listed = await asyncio.to_thread(run, "nlu", "models", "--format", "json", env=env)
    assert {m["version"]: m["status"] for m in json.loads(listed.stdout)} == {
        "v-first": "active",
        "v-bad": "retired",
    }
