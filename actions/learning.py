"""Learning from residents: capture at decision points, the review inbox, labels.

The runner (``bot/intake_service.py``) calls one function per decision point:

- :func:`capture_first_message` when the first description is classified;
- :func:`capture_kind_answer` when the resident answers "is it this kind?" (yes, no,
  or a kind picked from the buttons);
- :func:`attach_case` when the conversation files a case (retention follows the case);
- :func:`record_recategorisation` when a mediator changes a case's kind (a label).

Everything written here is masked first (:mod:`storage.redact`). The inbox is sorted by
how much a label would teach: disagreements (the resident or a mediator said the model
was wrong, rules and classifier disagreed on an emergency) first, then the smallest
margin between the model's two best intents.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from nlu.training_data import TrainingDataError, read_training_data
from storage.cases import get_case
from storage.models import Case, utcnow
from storage.phone import mask_phone
from storage.redact import redact, redact_text
from storage.review import (
    CaptureStatus,
    InboxFilter,
    LabelSource,
    NluCapture,
    add_capture,
    captures_for_case,
    find_captures,
    get_capture,
    is_holdout,
    labelled,
    latest_for_chat,
    open_captures_for_chat,
    text_hash,
)

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "nlu" / "data"
FALLBACK = "nlu_fallback"
EMERGENCY = "emergency"
OTHER_KIND = "dispute_other"
RANKING_KEPT = 5

#: Signals that say someone or something disagreed with the model: a label there
#: teaches the most, so they sort first.
DISAGREEMENT = frozenset(
    {
        "resident_denied_kind",
        "resident_chose_other_kind",
        "resident_chose_other",
        "mediator_recategorised",
        "rules_flagged_classifier_did_not",
        "classifier_flagged_rules_did_not",
    }
)
DOUBT = frozenset({"nlu_fallback", "low_confidence", "small_margin"})
SIGNALS = DISAGREEMENT | DOUBT


class LearningError(ValueError):
    """A review action that cannot be done; ``key`` names the catalogue message."""

    def __init__(self, key: str, **values: object) -> None:
        self.key = key
        self.values = values
        super().__init__(f"{key}: {values}")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a parse counts as doubtful (``TIAOJIE_REVIEW_LOW_CONFIDENCE`` / ``…_MARGIN``)."""

    low_confidence: float = 0.5
    small_margin: float = 0.1


# --- what a parse says ---------------------------------------------------------------


def ranking(parse: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The model's own ranking, without the fallback pseudo-intent."""
    return [
        {"name": str(item.get("name")), "confidence": round(float(item.get("confidence", 0)), 4)}
        for item in parse.get("intent_ranking") or []
        if item.get("name") and item.get("name") != FALLBACK
    ]


def margin(parse: Mapping[str, Any]) -> float:
    ranked = ranking(parse)
    if not ranked:
        return 0.0
    second = ranked[1]["confidence"] if len(ranked) > 1 else 0.0
    return max(0.0, float(ranked[0]["confidence"]) - float(second))


def parse_signals(parse: Mapping[str, Any], thresholds: Thresholds) -> list[dict[str, Any]]:
    """The signals a parse carries by itself (doubt, rules vs. classifier)."""
    signals: list[dict[str, Any]] = []
    intent = str((parse.get("intent") or {}).get("name") or "")
    ranked = ranking(parse)
    top = ranked[0] if ranked else None
    if intent == FALLBACK:
        signals.append({"name": "nlu_fallback"})
    if top is None or top["confidence"] < thresholds.low_confidence:
        signals.append({"name": "low_confidence", "confidence": top["confidence"] if top else 0})
    if len(ranked) > 1 and margin(parse) < thresholds.small_margin:
        signals.append({"name": "small_margin", "margin": round(margin(parse), 4)})
    risk = parse.get("risk") or {}
    rule_kinds = [k for k in risk.get("kinds") or [] if k != "possible_emergency"]
    classifier_says = top is not None and top["name"] == EMERGENCY
    if risk.get("flagged") and rule_kinds and not classifier_says:
        signals.append({"name": "rules_flagged_classifier_did_not", "kinds": rule_kinds})
    if classifier_says and not rule_kinds:
        signals.append({"name": "classifier_flagged_rules_did_not"})
    return signals


def priority(signals: Iterable[Mapping[str, Any]], parse_margin: float) -> float:
    """Disagreements (tier 4) before doubts (tier 2) before the rest; within a tier the
    smaller the margin the higher."""
    names = {str(s.get("name")) for s in signals}
    tier = 4.0 if names & DISAGREEMENT else 2.0 if names & DOUBT else 0.0
    return round(tier + (1.0 - min(max(parse_margin, 0.0), 1.0)), 6)


def masked_parse(parse: Mapping[str, Any]) -> dict[str, Any]:
    """What is kept of a parse: intent, top five, entities and risk, values masked."""
    entities = []
    for entity in parse.get("entities") or []:
        kept = {
            k: entity.get(k)
            for k in ("entity", "start", "end", "value", "extractor")
            if k in entity
        }
        if isinstance(kept.get("value"), str):
            kept["value"] = redact_text(kept["value"])
        if kept.get("entity") == "phone":  # whatever its shape, a phone is never kept
            kept["value"] = mask_phone(str(kept.get("value", "")))
        entities.append(kept)
    risk = parse.get("risk") or {}
    intent = parse.get("intent") or {}
    return {
        "intent": {
            "name": intent.get("name"),
            "confidence": round(float(intent.get("confidence") or 0), 4),
        },
        "ranking": ranking(parse)[:RANKING_KEPT],
        "entities": entities,
        "risk": {
            "flagged": bool(risk.get("flagged")),
            "kinds": list(risk.get("kinds") or []),
        },
    }


# --- decision points -------------------------------------------------------------------


async def capture(
    session: AsyncSession,
    *,
    text: str,
    parse: Mapping[str, Any],
    channel: str,
    case_id: int | None = None,
    signals: Sequence[Mapping[str, Any]] = (),
    model_version: str | None = None,
    chat_id: str | None = None,
    decision_point: str = "first_message",
    thresholds: Thresholds = Thresholds(),
) -> NluCapture:
    """Keep one classified message, masked, with its signals (the parse's own are
    added to ``signals``)."""
    masked = redact(text).masked_text
    found = [*parse_signals(parse, thresholds), *[dict(s) for s in signals]]
    kept = masked_parse(parse)
    ranked = kept["ranking"]
    row = NluCapture(
        created_at=utcnow(),
        channel=channel,
        chat_id=chat_id,
        case_id=case_id,
        decision_point=decision_point,
        text_masked=masked,
        text_hash=text_hash(masked),
        parse=kept,
        model_version=model_version,
        predicted=ranked[0]["name"] if ranked else None,
        signals=found,
        priority=priority(found, margin(parse)),
        holdout=is_holdout(masked),
        status=CaptureStatus.OPEN,
    )
    return await add_capture(session, row)


async def capture_first_message(
    session: AsyncSession,
    *,
    text: str,
    parse: Mapping[str, Any],
    channel: str,
    chat_id: str | None,
    model_version: str | None,
    thresholds: Thresholds = Thresholds(),
) -> NluCapture:
    """The resident's description, just classified (the runner calls this once the
    engine proposed a kind or offered the choice)."""
    return await capture(
        session,
        text=text,
        parse=parse,
        channel=channel,
        chat_id=chat_id,
        model_version=model_version,
        decision_point="first_message",
        thresholds=thresholds,
    )


def _add_signal(row: NluCapture, signal: dict[str, Any]) -> None:
    row.signals = [*row.signals, signal]
    row.priority = priority(row.signals, margin({"intent_ranking": row.parse.get("ranking")}))


async def capture_kind_answer(
    session: AsyncSession,
    *,
    channel: str,
    chat_id: str,
    proposed: str | None,
    affirmed: bool | None = None,
    chosen: str | None = None,
) -> NluCapture | None:
    """The resident answered "is it ``proposed``?": ``affirmed`` True/False, or picked
    ``chosen`` from the buttons. Adds the signal to the message that was classified
    (the chat's latest first-message capture); returns it, or None when there is none.

    A kind the resident picked is a *weak* label: shown in the inbox as a suggestion,
    used for training only once an administrator confirms it.
    """
    row = await latest_for_chat(session, channel, chat_id, "first_message")
    if row is None:
        return None
    if affirmed is False and proposed:
        _add_signal(row, {"name": "resident_denied_kind", "proposed": proposed})
    if chosen:
        if chosen == OTHER_KIND:
            _add_signal(row, {"name": "resident_chose_other", "proposed": proposed})
        elif chosen != (row.predicted or proposed):
            _add_signal(
                row, {"name": "resident_chose_other_kind", "proposed": proposed, "chosen": chosen}
            )
            row.weak_label = chosen
    await session.flush()
    return row


async def attach_case(session: AsyncSession, *, channel: str, chat_id: str, case_id: int) -> int:
    """Link the chat's unlinked captures to the case just filed (so they are deleted
    with it); returns how many."""
    rows = await open_captures_for_chat(session, channel, chat_id)
    for row in rows:
        row.case_id = case_id
    await session.flush()
    return len(rows)


async def attach_case_by_reference(
    session: AsyncSession, *, channel: str, chat_id: str, reference: str
) -> int:
    """:func:`attach_case` for callers that know the case's reference (the runner's
    ``FileCase`` result)."""
    case = await get_case(session, reference)
    return await attach_case(session, channel=channel, chat_id=chat_id, case_id=case.id)


async def record_recategorisation(
    session: AsyncSession, case: Case, old: str, new: str, mediator: str
) -> NluCapture:
    """A mediator changed the case's kind: a label for the message that started it.

    Labels the case's first-message capture (or captures the case's words now, masked,
    when there is none) with ``new``, source ``mediator_recategorise``.
    """
    rows = [r for r in await _case_captures(session, case) if r.decision_point == "first_message"]
    if rows:
        row = rows[0]
    else:
        row = await capture(
            session,
            text=case.resident_words,
            parse={"intent": {"name": old, "confidence": 0.0}, "intent_ranking": []},
            channel=case.channel,
            chat_id=case.chat_id,
            case_id=case.id,
            decision_point="recategorised",
        )
    _add_signal(row, {"name": "mediator_recategorised", "old": old, "new": new})
    _set_label(row, new, mediator, LabelSource.MEDIATOR_RECATEGORISE)
    await session.flush()
    return row


async def _case_captures(session: AsyncSession, case: Case) -> list[NluCapture]:
    rows = list(await captures_for_case(session, case.id))
    if not rows and case.chat_id:
        rows = list(await open_captures_for_chat(session, case.channel, case.chat_id))
        for row in rows:
            row.case_id = case.id
    return rows


# --- inbox and labels --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One row of the inbox as a page or the CLI shows it."""

    id: int
    created_at: str
    channel: str
    text: str
    predicted: str | None
    top: list[dict[str, Any]]
    signals: list[str]
    weak_label: str | None
    priority: float
    status: str
    label: str | None
    labelled_by: str | None
    labelled_at: str | None
    label_source: str | None
    holdout: bool
    model_version: str | None

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _item(row: NluCapture) -> InboxItem:
    return InboxItem(
        id=row.id,
        created_at=row.created_at.isoformat(),
        channel=row.channel,
        text=row.text_masked,
        predicted=row.predicted,
        top=list(row.parse.get("ranking") or [])[:3],
        signals=[str(s.get("name")) for s in row.signals],
        weak_label=row.weak_label,
        priority=row.priority,
        status=str(row.status),
        label=row.label,
        labelled_by=row.labelled_by,
        labelled_at=row.labelled_at.isoformat() if row.labelled_at else None,
        label_source=str(row.label_source) if row.label_source else None,
        holdout=row.holdout,
        model_version=row.model_version,
    )


async def inbox(
    session: AsyncSession, filters: InboxFilter | None = None, limit: int | None = 50
) -> list[InboxItem]:
    """Open items by how much a label would teach, each with the model's top three."""
    rows = await find_captures(session, filters or InboxFilter(), limit)
    return [_item(row) for row in rows]


async def item(session: AsyncSession, capture_id: int) -> InboxItem:
    return _item(await _get(session, capture_id))


async def _get(session: AsyncSession, capture_id: int) -> NluCapture:
    row = await get_capture(session, capture_id)
    if row is None:
        raise LearningError("review.not_found", id=capture_id)
    return row


def _set_label(row: NluCapture, intent: str, by: str, source: LabelSource) -> None:
    row.label = intent
    row.labelled_by = by
    row.labelled_at = utcnow()
    row.label_source = source
    row.status = CaptureStatus.LABELLED


def _check_intent(intent: str, allowed: Collection[str] | None) -> None:
    if allowed is not None and intent not in allowed:
        raise LearningError("review.unknown_intent", intent=intent)


async def label(
    session: AsyncSession,
    capture_id: int,
    intent: str,
    *,
    by: str,
    allowed: Collection[str] | None = None,
    source: LabelSource = LabelSource.ADMIN,
) -> InboxItem:
    """Label one item (relabelling is allowed; the latest label wins, with its author)."""
    _check_intent(intent, allowed)
    row = await _get(session, capture_id)
    _set_label(row, intent, by, source)
    await session.flush()
    return _item(row)


async def set_status(
    session: AsyncSession, capture_id: int, status: CaptureStatus, *, by: str
) -> InboxItem:
    """Skip an item, or mark it "not a real message" (neither is ever trained on)."""
    if status not in (CaptureStatus.SKIPPED, CaptureStatus.NOT_REAL, CaptureStatus.OPEN):
        raise LearningError("review.bad_status", status=str(status))
    row = await _get(session, capture_id)
    row.status = status
    row.label = None
    row.label_source = None
    row.labelled_by = by
    row.labelled_at = utcnow()
    await session.flush()
    return _item(row)


async def bulk_label(
    session: AsyncSession,
    filters: InboxFilter,
    intent: str,
    *,
    by: str,
    allowed: Collection[str] | None = None,
    limit: int = 500,
) -> int:
    """Label every item a search finds (at most ``limit``); returns how many."""
    _check_intent(intent, allowed)
    rows = await find_captures(session, filters, limit)
    for row in rows:
        _set_label(row, intent, by, LabelSource.ADMIN)
    await session.flush()
    return len(rows)


def known_intents(data_dir: Path = DEFAULT_DATA) -> set[str] | None:
    """Intents an item may be labelled with: those of the training data (None when the
    data cannot be read, and then any label is accepted)."""
    try:
        return set(read_training_data([data_dir]).intents)
    except TrainingDataError:
        return None


# --- import and export -------------------------------------------------------------------


@dataclass(slots=True)
class ImportReport:
    imported: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def read_labelled_csv(
    source: str, allowed: Collection[str] | None
) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
    """Rows ``(text, label)`` of a ``text,label`` CSV and the bad rows as
    ``(line, reason)``; the header line is required."""
    reader = csv.DictReader(io.StringIO(source))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "text" not in header or "label" not in header:
        return [], [(1, "header must have the columns text,label")]
    reader.fieldnames = header
    rows: list[tuple[str, str]] = []
    errors: list[tuple[int, str]] = []
    for record in reader:
        line = reader.line_num
        text = (record.get("text") or "").strip()
        intent = (record.get("label") or "").strip()
        if None in record:
            errors.append((line, "too many columns (quote text that holds a comma)"))
        elif not text:
            errors.append((line, "empty text"))
        elif not intent:
            errors.append((line, "empty label"))
        elif allowed is not None and intent not in allowed:
            errors.append((line, f"unknown intent {intent!r}"))
        else:
            rows.append((text, intent))
    return rows, errors


async def import_labelled(
    session: AsyncSession,
    source: str,
    *,
    by: str,
    allowed: Collection[str] | None = None,
) -> ImportReport:
    """Import an administrator's labelled messages: all rows or, if any row is bad,
    none (the report lists each bad row with its line)."""
    rows, errors = read_labelled_csv(source, allowed)
    if errors:
        return ImportReport(0, errors)
    for text, intent in rows:
        row = await capture(
            session,
            text=text,
            parse={},
            channel="import",
            decision_point="import",
        )
        row.signals = []
        row.priority = 0.0
        _set_label(row, intent, by, LabelSource.IMPORT)
    await session.flush()
    return ImportReport(len(rows), [])


_ANNOTATION_LIKE = re.compile(r"\[[^\]]*\]\s*[({]")


def _example_line(text: str) -> str:
    """One example as a Rasa YAML block line: one line, no accidental entity markup."""
    flat = " ".join(text.split())
    if _ANNOTATION_LIKE.search(flat):
        flat = flat.replace("[", "［").replace("]", "］")
    return flat


async def training_examples(session: AsyncSession) -> list[tuple[str, str]]:
    """``(masked text, label)`` of the training slice (never the holdout)."""
    return [(r.text_masked, str(r.label)) for r in await labelled(session, holdout=False)]


async def holdout_examples(session: AsyncSession) -> list[tuple[str, str]]:
    return [(r.text_masked, str(r.label)) for r in await labelled(session, holdout=True)]


def rasa_yaml(examples: Iterable[tuple[str, str]]) -> str:
    by_intent: dict[str, list[str]] = {}
    for text, intent in examples:
        line = _example_line(text)
        if line and line not in by_intent.setdefault(intent, []):
            by_intent[intent].append(line)
    lines = ['version: "3.1"', "nlu:"]
    for intent in sorted(by_intent):
        lines.append(f"- intent: {intent}")
        lines.append("  examples: |")
        lines.extend(f"    - {text}" for text in by_intent[intent])
    return "\n".join(lines) + "\n"


async def export_rasa(session: AsyncSession, out_dir: Path) -> tuple[Path, int]:
    """Write the training slice as Rasa YAML under ``out_dir``; returns file and count."""
    examples = await training_examples(session)
    path = await asyncio.to_thread(write_rasa_file, out_dir, rasa_yaml(examples))
    return path, len(examples)


def write_rasa_file(out_dir: Path, content: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "reviewed.yml"
    path.write_text(content, "utf-8")
    return path
