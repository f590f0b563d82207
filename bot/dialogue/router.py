"""What is answered the same at every step: commands, anytime intents, emergencies,
attachments, ratings and the runner's results. Everything else goes to the step.
"""

from __future__ import annotations

import copy
import re

from bot.dialogue.model import (
    ActionDone,
    AttachEvidence,
    AttachmentEvent,
    Button,
    ButtonEvent,
    CaseFiled,
    CaseWords,
    CommandEvent,
    CommentCase,
    ContactEvent,
    Event,
    FileCase,
    FlagUrgent,
    LocationEvent,
    LookupStatus,
    RateCase,
    RequestHuman,
    StatusResult,
    TextEvent,
    UnsupportedEvent,
)
from bot.dialogue.registry import STEPS
from bot.dialogue.state import Step
from bot.dialogue.steps.finish import filed
from bot.dialogue.steps.form import advance
from bot.dialogue.turn import Turn, intent_of
from bot.i18n import t
from nlu.interface import ParseResult

#: Telegram's own limit for uploads through a bot is 20 MB; larger files are refused.
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
ALLOWED_DOCUMENT_TYPES = re.compile(
    r"^(image/.+|application/pdf|application/msword|application/vnd\.ms-excel|"
    r"application/vnd\.openxmlformats-officedocument\..+|text/plain|video/mp4|audio/.+)$"
)
ANYTIME_INTENTS = frozenset({"cancel", "help", "request_human", "change_language", "check_status"})
#: Steps whose answer is free text: an anytime intent must be surer there to interrupt.
FREE_TEXT_STEPS = frozenset({Step.DESCRIBE, Step.SLOT, Step.EDIT_WORDS, Step.COMMUNITY})
#: Commands that are the same as an anytime intent.
COMMAND_INTENTS = {
    "help": "help",
    "cancel": "cancel",
    "status": "check_status",
    "human": "request_human",
}


def dispatch(turn: Turn, event: Event) -> None:
    match event:
        case CaseFiled() | StatusResult() | ActionDone():
            on_result(turn, event)
        case CommandEvent():
            on_command(turn, event)
        case UnsupportedEvent():
            turn.say("unsupported")
            turn.ask()
        case AttachmentEvent():
            on_attachment(turn, event)
        case TextEvent():
            on_text(turn, event)
        case ButtonEvent(payload=payload) if payload.startswith("lang:"):
            set_language(turn, payload.removeprefix("lang:"))
        case ButtonEvent(payload=payload) if payload.startswith("rate:"):
            on_rating(turn, payload)
        case ButtonEvent(payload="skip") if turn.state.get("comment_for"):
            turn.state.pop("comment_for")
            turn.say("comment_thanks")
        case ButtonEvent() | LocationEvent() | ContactEvent():
            to_step(turn, event)


def to_step(turn: Turn, event: Event) -> None:
    """The current step's object takes the event."""
    STEPS[turn.step].handle(turn, event)


# ------------------------------------------------------------------------------- text


def detect_language(text: str) -> str:
    """English when the text has Latin letters and no Chinese characters at all."""
    if re.search(r"[\u3400-\u9fff]", text):
        return "zh"
    return "en" if len(re.findall(r"[A-Za-z]", text)) >= 2 else "zh"


def is_emergency(turn: Turn, parse: ParseResult) -> bool:
    name, confidence = intent_of(parse)
    risk = parse.get("risk")
    flagged = bool(risk and risk.get("flagged"))
    # The rules' "benign" verdict (mahjong at 2 a.m., "快点来人" alone) vetoes the
    # classifier's emergency guess, never the rules' own flag.
    benign = bool(risk and risk.get("benign"))
    return flagged or (name == "emergency" and confidence >= turn.ctx.threshold and not benign)


def on_text(turn: Turn, event: TextEvent) -> None:
    text = event.text.strip()
    state = turn.state
    if not state.get("lang_set") and text and turn.step in (Step.NEW, Step.DESCRIBE):
        state["lang"] = detect_language(text)
    if not text:
        turn.say("empty")
        turn.ask()
        return
    if is_emergency(turn, event.parse):
        on_emergency(turn, event)
        return
    comment_for = state.pop("comment_for", None)
    if comment_for:
        turn.actions.append(CommentCase(comment_for, text))
        turn.say("comment_thanks")
        return
    urgent_case = state.get("urgent_case")
    if urgent_case and turn.step != Step.PHONE:
        # An urgent conversation: every later message is on the case for the staff.
        turn.actions.append(CaseWords(urgent_case, text))
    name, confidence = intent_of(event.parse)
    needed = turn.ctx.anytime_threshold if turn.step in FREE_TEXT_STEPS else turn.ctx.threshold
    if name in ANYTIME_INTENTS and confidence >= needed and len(text) <= 60:
        on_anytime(turn, name, text)
        return
    to_step(turn, event)


def on_anytime(turn: Turn, intent: str, text: str = "") -> None:
    if intent == "cancel":
        ask_cancel(turn)
    elif intent == "help":
        turn.say("help")
        turn.ask()
    elif intent == "request_human":
        request_human(turn)
    elif intent == "change_language":
        lowered = text.lower()
        if "english" in lowered or "英文" in text or "英语" in text:
            target = "en"
        elif "中文" in text or "chinese" in lowered or "汉语" in text or "普通话" in text:
            target = "zh"
        else:
            target = "en" if turn.lang == "zh" else "zh"
        set_language(turn, target)
    elif intent == "check_status":
        turn.actions.append(LookupStatus())


def set_language(turn: Turn, language: str) -> None:
    turn.state["lang"] = "en" if language == "en" else "zh"
    turn.state["lang_set"] = True
    turn.say("language_set")
    turn.ask()


# ------------------------------------------------------------------------- emergencies


def emergency_help(turn: Turn, kinds: list[str]) -> None:
    """The numbers and plain safety advice, first thing, in the resident's language.

    A child in danger leads with 110 and the women's and children's line; self-harm
    without violence now leads with the mental-health lines ("want to kill myself"
    also matches a threat rule); anything else leads with 110. Every text names 110.
    """
    if "child_danger" in kinds:
        key = "child_danger"
    elif "self_harm" in kinds and "violence_now" not in kinds:
        key = "self_harm"
    else:
        key = "danger"
    turn.say(f"emergency_help.{key}")


def emergency_kind(turn: Turn, parse: ParseResult) -> tuple[str, float]:
    """The case kind of an emergency: a dispute the classifier is sure of, else
    ``emergency`` (never a guess below the fallback threshold)."""
    name, confidence = intent_of(parse)
    if name.startswith("dispute_") and confidence >= turn.ctx.threshold:
        return name, confidence
    for item in parse.get("intent_ranking") or []:
        ranked = str(item.get("name", ""))
        score = float(item.get("confidence") or 0.0)
        if ranked.startswith("dispute_") and score >= turn.ctx.threshold:
            return ranked, score
    return "emergency", 1.0


#: Steps at which an emergency starts a case of its own (no dispute being written).
FRESH_STEPS = frozenset({Step.NEW, Step.DESCRIBE, Step.OFFER_CONSULTATION})


def state_lang_set(turn: Turn) -> bool:
    return bool(turn.state.get("lang_set"))


def on_emergency(turn: Turn, event: TextEvent) -> None:
    """One path whatever the state: help text now, then get a person on it.

    - an intake with a filed case, or no intake but earlier cases: ``FlagUrgent`` on
      that case (the newest of the chat, whatever its status) with the words;
    - otherwise (nothing yet, or an intake not filed yet): ``FileCase(reason=
      "emergency")`` with the words in ``draft["trigger"]`` and any place they name.
    Afterwards the conversation asks where the resident is if that is unknown, and
    later messages go to the case as words (:class:`CaseWords`).
    """
    risk = event.parse.get("risk")
    kinds = [str(kind) for kind in (risk.get("kinds") if risk else None) or []]
    text = event.text.strip()
    if not state_lang_set(turn):
        turn.state["lang"] = detect_language(text)  # help in the language they wrote in
    emergency_help(turn, kinds)
    state = turn.state
    state.pop("comment_for", None)
    if turn.step == Step.CONFIRM_CANCEL:  # the cancel question is moot now
        turn.go(Step.of(state.pop("resume", Step.DESCRIBE.value)))
    draft = state.get("draft")
    street, community = turn.ctx.geography.find_in_text(text)
    if street is None and draft:
        # A place said earlier in this intake ("我们住在西乡流塘, …") counts as well.
        street, community = turn.ctx.geography.find_in_text(" ".join(draft.get("words") or []))
    cases = state.get("cases") or []
    reference = (draft or {}).get("reference") or (cases[-1] if draft is None and cases else None)
    if reference:
        if draft is not None:
            draft["risk"] = "urgent"
            draft["risk_kinds"] = sorted(set(draft["risk_kinds"]) | set(kinds))
            if street and not draft["street"]:
                draft["street"], draft["community"] = street.code, community
                draft["location_done"] = True
        state["urgent_case"] = reference
        turn.actions.append(
            FlagUrgent(
                reference,
                tuple(kinds),
                words=text,
                street=street.code if street else None,
                community=community,
            )
        )
        return
    fresh = draft is None or not draft["words"] or turn.step in FRESH_STEPS
    draft = turn.draft
    turn.add_words(text)
    draft["entities"] = list(draft["entities"]) + list(event.parse.get("entities") or [])
    draft["trigger"] = {"text": text, "kinds": kinds}
    if street and not draft["street"]:
        draft["street"], draft["community"] = street.code, community
        draft["location_done"] = True
    if fresh or not draft["category"]:
        draft["category"], draft["confidence"] = emergency_kind(turn, event.parse)
    raise_urgent(turn, kinds, say=False)
    if fresh or turn.step in (Step.CHOOSE_CATEGORY, Step.CONFIRM_CATEGORY, Step.DONE):
        advance(turn)
    elif not draft["location_done"]:
        turn.go(Step.STREET)


def raise_urgent(turn: Turn, kinds: list[str], *, say: bool = True) -> None:
    """Mark the draft urgent and get a person on it now: file it, or flag the filed case."""
    draft = turn.draft
    if say:
        emergency_help(turn, kinds)
    draft["risk"] = "urgent"
    draft["risk_kinds"] = sorted(set(draft["risk_kinds"]) | set(kinds))
    reference = draft.get("reference")
    if reference:
        turn.state["urgent_case"] = reference
        turn.actions.append(FlagUrgent(reference, tuple(kinds)))
    else:
        turn.actions.append(FileCase(copy.deepcopy(dict(draft)), "emergency"))


# ------------------------------------------------------------------------------ ratings


def on_rating(turn: Turn, payload: str) -> None:
    """A 1–5 rating button from the message that told the resident the outcome."""
    _, reference, value = payload.split(":")
    # Thanked (and asked for a comment) only once the store took the rating: a press
    # on an old keyboard of a case already rated is refused (ActionDone "rate_refused").
    turn.actions.append(RateCase(reference, int(value)))


# ------------------------------------------------------------------------------ results


def on_result(turn: Turn, event: CaseFiled | StatusResult | ActionDone) -> None:
    state = turn.state
    if isinstance(event, StatusResult):
        if not event.cases:
            turn.say("status_none")
        else:
            lines = [
                turn.text(
                    "status_line",
                    reference=item["reference"],
                    category=turn.category_title(str(item["category"])),
                    status=t(f"dialogue.status_names.{item['status']}", turn.lang),
                    last=item.get("last", ""),
                )
                for item in event.cases
            ]
            turn.say("status_list", lines="\n".join(lines))
        turn.ask()
        return
    if isinstance(event, ActionDone) and event.action == "rated":
        turn.state["comment_for"] = event.reference or ""
        turn.say("rating_thanks", [[Button(turn.text("skip"), "skip")]])
        return
    if isinstance(event, ActionDone) and event.action == "rate_refused":
        turn.say("rating_already", reference=event.reference or "")
        return
    if isinstance(event, ActionDone):
        key = {"attach": "evidence_attached", "request_human": "human_requested"}.get(
            event.action, "flagged_urgent"
        )
        turn.say(key, reference=event.reference or "")
        if event.action != "urgent":
            turn.ask()
        return
    cases = state.setdefault("cases", [])
    if event.reference not in cases:
        cases.append(event.reference)
    if event.reason == "submit":
        filed(turn, event)
        return
    turn.draft["reference"] = event.reference
    if event.reason == "emergency":
        state["urgent_case"] = event.reference
        turn.say("urgent_registered", reference=event.reference)
    else:
        turn.say("human_filed", reference=event.reference)
    turn.ask()


# ----------------------------------------------------------------------------- commands


def on_command(turn: Turn, event: CommandEvent) -> None:
    name = event.name.lower()
    state = turn.state
    draft = state.get("draft")
    if name == "start":
        if draft:
            turn.say("welcome_back")
        else:
            turn.go(Step.DESCRIBE)
            turn.say("greeting")
            turn.say("privacy")
        turn.ask()
    elif name == "new":
        if draft and not draft.get("reference"):
            ask_cancel(turn)
        else:
            state["draft"] = None
            state.pop("urgent_case", None)
            turn.go(Step.DESCRIBE)
            turn.ask()
    elif name in ("language", "lang"):
        arg = event.args.strip().lower()
        if arg in ("en", "zh"):
            set_language(turn, arg)
        else:
            turn.say("choose_language", [[Button("中文", "lang:zh"), Button("English", "lang:en")]])
    elif name in COMMAND_INTENTS:
        on_anytime(turn, COMMAND_INTENTS[name])
    else:
        turn.say("unknown_command", command=event.name[:32])
        turn.ask()


def ask_cancel(turn: Turn) -> None:
    state = turn.state
    if not state.get("draft"):
        turn.say("nothing_to_cancel")
        turn.ask()
        return
    if turn.step != Step.CONFIRM_CANCEL:
        state["resume"] = turn.step.value
    turn.go(Step.CONFIRM_CANCEL)
    turn.ask()


def request_human(turn: Turn) -> None:
    state = turn.state
    draft = state.get("draft")
    cases = state.get("cases") or []
    if draft and draft.get("reference"):
        turn.actions.append(RequestHuman(str(draft["reference"])))
    elif draft and draft["words"]:
        draft["human"] = True
        draft["category"] = draft["category"] or "dispute_other"
        turn.actions.append(FileCase(copy.deepcopy(dict(draft)), "human"))
    elif cases:
        turn.actions.append(RequestHuman(cases[-1]))
    else:
        turn.draft["human"] = True
        turn.go(Step.DESCRIBE)
        turn.say("human_describe_first")


# -------------------------------------------------------------------------- attachments


def on_attachment(turn: Turn, event: AttachmentEvent) -> None:
    allowed = event.kind == "photo" or (
        event.kind == "document" and ALLOWED_DOCUMENT_TYPES.match(event.mime_type or "")
    )
    if not allowed:
        turn.say("attachment_type")
        turn.ask()
        return
    if event.size is not None and event.size > MAX_ATTACHMENT_BYTES:
        turn.say("attachment_too_big")
        turn.ask()
        return
    item = {
        "kind": event.kind,
        "file_id": event.file_id,
        "size": event.size,
        "mime_type": event.mime_type,
        "file_name": event.file_name,
    }
    draft = turn.state.get("draft")
    cases = turn.state.get("cases") or []
    reference = (draft or {}).get("reference") or (cases[-1] if draft is None and cases else None)
    if reference:
        turn.actions.append(AttachEvidence(reference, item))
        return
    turn.draft["attachments"].append(item)
    turn.say("attachment_kept")
    turn.ask()
