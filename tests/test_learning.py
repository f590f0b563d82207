"""Capture at decision points, masking, signals, the inbox, labels, import and export."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from actions import learning
from bot.runtime import Store
from storage.directory import first_department_for, get_centre
from storage.models import Case
from storage.review import CaptureStatus, InboxFilter, is_holdout

ID_NUMBER = "11010519491231002X"
BANK_CARD = "6250941006528599"
PHONE = "13812345678"
SECRET_MESSAGE = f"老板欠薪八千,我电话{PHONE},身份证{ID_NUMBER},工资卡{BANK_CARD}"


def parse(
    ranking: list[tuple[str, float]], *, fallback: bool = False, risk: list[str] | None = None
) -> dict:
    items = [{"name": n, "confidence": c} for n, c in ranking]
    intent = {"name": "nlu_fallback", "confidence": 0.3} if fallback else items[0]
    return {
        "text": "x",
        "intent": intent,
        "intent_ranking": ([intent] if fallback else []) + items,
        "entities": [{"entity": "phone", "value": PHONE, "start": 0, "end": 11}],
        "risk": {"flagged": bool(risk), "kinds": risk or [], "matches": []},
    }


CONFIDENT = parse([("dispute_labor", 0.9), ("dispute_gig_work", 0.05)])


async def _raw_dump(store: Store) -> str:
    async with store.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM nlu_captures"))).all()
    return "\n".join(repr(tuple(row)) for row in rows)


async def test_capture_masks_before_writing(store: Store) -> None:
    async with store.sessions.begin() as session:
        row = await learning.capture_first_message(
            session,
            text=SECRET_MESSAGE,
            parse=CONFIDENT,
            channel="rest",
            chat_id="c1",
            model_version="nlu-x",
        )
        assert row.id
    raw = await _raw_dump(store)
    for secret in (PHONE, ID_NUMBER, BANK_CARD, "6250 9410"):
        assert secret not in raw
    assert "138****5678" in raw and "欠薪八千" in raw and "nlu-x" in raw


@pytest.mark.parametrize(
    ("given", "signal"),
    [
        (parse([("dispute_labor", 0.3), ("dispute_gig_work", 0.2)]), "low_confidence"),
        (parse([("dispute_labor", 0.52), ("dispute_gig_work", 0.48)]), "small_margin"),
        (parse([("dispute_labor", 0.2), ("greet", 0.1)], fallback=True), "nlu_fallback"),
        (
            parse([("dispute_family", 0.9), ("emergency", 0.05)], risk=["violence"]),
            "rules_flagged_classifier_did_not",
        ),
        (parse([("emergency", 0.9), ("dispute_family", 0.05)]), "classifier_flagged_rules_did_not"),
    ],
)
async def test_parse_signals_make_inbox_items(store: Store, given: dict, signal: str) -> None:
    async with store.sessions.begin() as session:
        await learning.capture_first_message(
            session, text="消息", parse=given, channel="rest", chat_id="c1", model_version="v1"
        )
        items = await learning.inbox(session, InboxFilter(signal=signal))
    assert len(items) == 1 and signal in items[0].signals


@pytest.mark.parametrize(
    ("answer", "signal", "weak"),
    [
        ({"affirmed": False}, "resident_denied_kind", None),
        ({"chosen": "dispute_gig_work"}, "resident_chose_other_kind", "dispute_gig_work"),
        ({"chosen": "dispute_other"}, "resident_chose_other", None),
    ],
)
async def test_kind_answers_make_inbox_items(
    store: Store, answer: dict, signal: str, weak: str | None
) -> None:
    async with store.sessions.begin() as session:
        await learning.capture_first_message(
            session,
            text="站长扣钱",
            parse=CONFIDENT,
            channel="rest",
            chat_id="c9",
            model_version="v1",
        )
        assert await learning.inbox(session, InboxFilter(signal=signal)) == []
        row = await learning.capture_kind_answer(
            session, channel="rest", chat_id="c9", proposed="dispute_labor", **answer
        )
        assert row is not None
        items = await learning.inbox(session, InboxFilter(signal=signal))
    assert [i.id for i in items] == [row.id]
    assert items[0].weak_label == weak


async def test_affirmed_kind_adds_no_signal(store: Store) -> None:
    async with store.sessions.begin() as session:
        await learning.capture_first_message(
            session, text="欠薪", parse=CONFIDENT, channel="rest", chat_id="c2", model_version="v"
        )
        row = await learning.capture_kind_answer(
            session, channel="rest", chat_id="c2", proposed="dispute_labor", affirmed=True
        )
        assert row is not None and row.signals == []


async def _case(session, chat_id: str) -> Case:
    centre = await get_centre(session, "xixiang")
    case = Case(
        reference=f"BA-20261130-{chat_id[-4:]:0>4}",
        category="dispute_labor",
        resident_words=f"站长扣了我钱 {PHONE}",
        channel="rest",
        chat_id=chat_id,
        centre=centre,
        department=await first_department_for(session, "dispute_labor"),
    )
    session.add(case)
    await session.flush()
    return case


async def test_recategorisation_is_a_label_and_follows_the_case(store: Store) -> None:
    async with store.sessions.begin() as session:
        first = await learning.capture_first_message(
            session,
            text="站长扣了我钱",
            parse=CONFIDENT,
            channel="rest",
            chat_id="c0003",
            model_version="v",
        )
        case = await _case(session, "c0003")
        linked = await learning.attach_case_by_reference(
            session, channel="rest", chat_id="c0003", reference=case.reference
        )
        assert linked == 1
        row = await learning.record_recategorisation(
            session, case, "dispute_labor", "dispute_gig_work", "mediator:7"
        )
        assert row.id == first.id and row.case_id == case.id
        items = await learning.inbox(
            session, InboxFilter(status=None, signal="mediator_recategorised")
        )
    assert items[0].label == "dispute_gig_work"
    assert items[0].label_source == "mediator_recategorise"
    assert items[0].labelled_by == "mediator:7"
    # A case without a capture: its words are captured now, masked.
    async with store.sessions.begin() as session:
        other = await _case(session, "c0004")
        row = await learning.record_recategorisation(
            session, other, "dispute_labor", "dispute_debt", "m"
        )
        assert row.label == "dispute_debt" and PHONE not in row.text_masked


async def test_inbox_order_disagreements_then_smallest_margin(store: Store) -> None:
    async with store.sessions.begin() as session:
        wide = await learning.capture_first_message(
            session,
            text="a",
            parse=parse([("dispute_labor", 0.6), ("dispute_debt", 0.3)]),
            channel="rest",
            chat_id="1",
            model_version="v",
        )
        narrow = await learning.capture_first_message(
            session,
            text="b",
            parse=parse([("dispute_labor", 0.4), ("dispute_debt", 0.38)]),
            channel="rest",
            chat_id="2",
            model_version="v",
        )
        confident = await learning.capture_first_message(
            session, text="c", parse=CONFIDENT, channel="rest", chat_id="3", model_version="v"
        )
        await learning.capture_kind_answer(
            session, channel="rest", chat_id="3", proposed="dispute_labor", affirmed=False
        )
        items = await learning.inbox(session, limit=10)
    assert [i.id for i in items] == [confident.id, narrow.id, wide.id]
    assert [c["name"] for c in items[1].top] == ["dispute_labor", "dispute_debt"]


async def test_label_skip_not_real_bulk_and_who(store: Store) -> None:
    async with store.sessions.begin() as session:
        ids = []
        for i, words in enumerate(["外卖站长扣钱", "外卖平台罚款", "邻居吵", "测试"]):
            row = await learning.capture_first_message(
                session,
                text=words,
                parse=CONFIDENT,
                channel="rest",
                chat_id=str(i),
                model_version="v",
            )
            ids.append(row.id)
        with pytest.raises(learning.LearningError):
            await learning.label(
                session, ids[2], "no_such", by="admin:1", allowed={"dispute_neighbor"}
            )
        item = await learning.label(session, ids[2], "dispute_neighbor", by="admin:1")
        assert (item.status, item.labelled_by) == ("labelled", "admin:1") and item.labelled_at
        await learning.set_status(session, ids[3], CaptureStatus.NOT_REAL, by="admin:1")
        count = await learning.bulk_label(
            session, InboxFilter(search="外卖"), "dispute_gig_work", by="admin:2"
        )
        assert count == 2
        assert await learning.inbox(session) == []
        done = await learning.inbox(session, InboxFilter(status=CaptureStatus.LABELLED))
    assert {(i.text, i.label, i.labelled_by) for i in done} == {
        ("外卖站长扣钱", "dispute_gig_work", "admin:2"),
        ("外卖平台罚款", "dispute_gig_work", "admin:2"),
        ("邻居吵", "dispute_neighbor", "admin:1"),
    }


def test_holdout_is_stable_and_about_a_fifth() -> None:
    texts = [f"消息 {i} 号" for i in range(2000)]
    share = sum(is_holdout(t) for t in texts) / len(texts)
    assert 0.17 < share < 0.23
    assert is_holdout("消息 7 号") == is_holdout(" 消息7号 ")  # normalised: spacing ignored


async def test_import_all_or_nothing_and_export_training_slice(
    store: Store, tmp_path: Path
) -> None:
    bad = "text,label\n房东不退押金,dispute_tenancy\n,dispute_debt\n欠钱不还,no_such_intent\n"
    async with store.sessions.begin() as session:
        report = await learning.import_labelled(
            session, bad, by="admin", allowed={"dispute_tenancy", "dispute_debt"}
        )
        assert report.imported == 0
        assert report.errors == [(3, "empty text"), (4, "unknown intent 'no_such_intent'")]
        assert await learning.inbox(session, InboxFilter(status=None)) == []
    rows = [(f"第{i}个房东不退押金 {PHONE}", "dispute_tenancy") for i in range(40)]
    good = "text,label\n" + "".join(f"{text},{intent}\n" for text, intent in rows)
    async with store.sessions.begin() as session:
        report = await learning.import_labelled(session, good, by="admin", allowed=None)
        assert report.imported == 40
        path, count = await learning.export_rasa(session, tmp_path / "out")
        holdout = await learning.holdout_examples(session)
    assert 0 < len(holdout) < 40 and count == 40 - len(holdout)
    from nlu.training_data import read_training_data

    exported = read_training_data([path]).examples
    assert len(exported) == count and {e.intent for e in exported} == {"dispute_tenancy"}
    texts = {e.text for e in exported}
    assert not texts & {t for t, _ in holdout}
    assert PHONE not in path.read_text("utf-8")
