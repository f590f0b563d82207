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
from bot.dialogue.steps.describe import best_dispute
from bot.dialogue.steps.finish import filed
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
    return flagged or (name == "emergency" and confidence >= turn.ctx.threshold)


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


def on_emergency(turn: Turn, event: TextEvent) -> None:
    """Answer with emergency contacts at once and get a person on it, whatever the step."""
    risk = event.parse.get("risk")
    kinds = [str(kind) for kind in (risk.get("kinds") if risk else None) or []]
    turn.say("emergency")
    state = turn.state
    draft = state.get("draft")
    cases = state.get("cases") or []
    if draft is None and cases and turn.step == Step.DONE:
        turn.actions.append(FlagUrgent(cases[-1], tuple(kinds)))
        return
    draft = turn.draft
    if turn.step in (Step.NEW, Step.DESCRIBE, Step.DONE):
        turn.add_words(event.text)
        draft["entities"] = list(event.parse.get("entities") or [])
        draft["category"] = draft["category"] or best_dispute(event.parse)
        draft["confidence"] = 0.0
        turn.go(Step.CONFIRM_CATEGORY)
    if not draft["words"]:
        turn.add_words(event.text)
    draft["category"] = draft["category"] or best_dispute(event.parse)
    raise_urgent(turn, kinds, say=False)


def raise_urgent(turn: Turn, kinds: list[str], *, say: bool = True) -> None:
    """Mark the draft urgent and get a person on it now: file it, or flag the filed case."""
    draft = turn.draft
    if say:
        turn.say("emergency")
    draft["risk"] = "urgent"
    draft["risk_kinds"] = sorted(set(draft["risk_kinds"]) | set(kinds))
    reference = draft.get("reference")
    if reference:
        turn.actions.append(FlagUrgent(reference, tuple(kinds)))
    else:
        turn.actions.append(FileCase(copy.deepcopy(dict(draft)), "emergency"))


# ------------------------------------------------------------------------------ ratings


def on_rating(turn: Turn, payload: str) -> None:
    """A 1–5 rating button from the message that told the resident the outcome."""
    _, reference, value = payload.split(":")
    turn.actions.append(RateCase(reference, int(value)))
    turn.state["comment_for"] = reference
    turn.say("rating_thanks", [[Button(turn.text("skip"), "skip")]])


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
    turn.say(
        "urgent_filed" if event.reason == "emergency" else "human_filed", reference=event.reference
    )
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
