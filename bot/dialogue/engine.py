"""The intake conversation as a pure function: ``handle(state, event, ctx) → Outcome``.

No I/O happens here. The runner loads the state, parses text with the NLU, calls
:func:`handle`, carries out the returned actions (file a case, look up status …), feeds
their results back in as events, and saves the new state. Because of that split every
conversation, including emergencies at any step, can be tested as a list of events.

State is a JSON-able dict (it is stored in the ``conversations`` table):
``step``, ``lang``, ``lang_set``, ``draft`` (the case being written), ``offered``
(button titles of the last question, so typing a title counts as pressing it),
``resume`` (step to go back to after a cancel question) and ``cases`` (references filed
from this chat).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

from bot.dialogue.forms import Form, Forms, Slot
from bot.dialogue.geography import Geography, Street
from bot.dialogue.model import (
    Action,
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
    Outcome,
    RateCase,
    Reply,
    RequestHuman,
    StatusResult,
    TextEvent,
    UnsupportedEvent,
    UpdateCase,
)
from bot.dialogue.values import entity_value, prefill, read_slot
from bot.i18n import LANGUAGES, raw, t
from storage.phone import mask_phone, normalise_phone

#: Telegram's own limit for uploads through a bot is 20 MB; larger files are refused.
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
ALLOWED_DOCUMENT_TYPES = re.compile(
    r"^(image/.+|application/pdf|application/msword|application/vnd\.ms-excel|"
    r"application/vnd\.openxmlformats-officedocument\..+|text/plain|video/mp4|audio/.+)$"
)
ANYTIME_INTENTS = frozenset({"cancel", "help", "request_human", "change_language", "check_status"})
#: Steps whose answer is free text: an anytime intent must be surer there to interrupt.
FREE_TEXT_STEPS = frozenset({"describe", "slot", "edit_words", "community"})


def _answer_words(key: str) -> frozenset[str]:
    """Plain yes/no answers from both catalogs (a resident may answer in either)."""
    words: set[str] = set()
    for language in LANGUAGES:
        words.update(str(w).lower() for w in raw(f"dialogue.{key}", language) or [])
    return frozenset(words)


YES_WORDS = _answer_words("yes_words")
NO_WORDS = _answer_words("no_words")


@dataclass(frozen=True, slots=True)
class Context:
    """Everything the engine reads besides state and event: all plain data."""

    forms: Forms
    geography: Geography
    threshold: float = 0.3
    anytime_threshold: float = 0.6
    max_words: int = 20_000


@dataclass(slots=True)
class _Turn:
    """What one call collects before it becomes an :class:`Outcome`."""

    state: dict[str, Any]
    ctx: Context
    replies: list[Reply] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    offered_now: bool = False

    @property
    def lang(self) -> str:
        return str(self.state.get("lang", "zh"))

    @property
    def draft(self) -> dict[str, Any]:
        if self.state.get("draft") is None:
            self.state["draft"] = new_draft()
        return self.state["draft"]

    def say(self, key: str, buttons: list[list[Button]] | None = None, **values: Any) -> None:
        self.reply(t(f"dialogue.{key}", self.lang, **values), buttons)

    def reply(
        self, text: str, buttons: list[list[Button]] | None = None, request: str | None = None
    ) -> None:
        rows = tuple(tuple(row) for row in (buttons or []) if row)
        self.replies.append(Reply(text=text, buttons=rows, request=request))  # type: ignore[arg-type]
        if rows:
            self.state["offered"] = {b.title: b.payload for row in rows for b in row}
            self.offered_now = True


def new_draft() -> dict[str, Any]:
    return {
        "words": [],
        "category": None,
        "confidence": 0.0,
        "candidates": [],
        "entities": [],
        "slots": {},
        "skipped": [],
        "prefill": {},
        "street": None,
        "community": None,
        "location_done": False,
        "phone": None,
        "phone_done": False,
        "consent": None,
        "risk": "normal",
        "risk_kinds": [],
        "attachments": [],
        "reference": None,
        "editing": False,
        "human": False,
    }


def initial_state() -> dict[str, Any]:
    return {"step": "new", "lang": "zh", "lang_set": False, "draft": None, "cases": []}


# ------------------------------------------------------------------------- entry point


def handle(state: dict[str, Any], event: Event, ctx: Context) -> Outcome:
    """Advance the conversation by one event. Never mutates ``state``."""
    # State is JSON (it is stored as JSON); a JSON round trip copies it several times
    # faster than copy.deepcopy, and keeps the engine from mutating its input.
    turn = _Turn(state=json.loads(json.dumps(state)) if state else initial_state(), ctx=ctx)
    step = turn.state.get("step")
    offered = turn.state.get("offered") or {}
    if isinstance(event, TextEvent) and event.text.strip() in offered:
        event = ButtonEvent(offered[event.text.strip()])
    _dispatch(turn, event)
    if turn.state.get("step") != step and not turn.offered_now:
        # Buttons of a question that is no longer asked must not be pressed by typing.
        turn.state.pop("offered", None)
    return Outcome(turn.state, tuple(turn.replies), tuple(turn.actions))


def _dispatch(turn: _Turn, event: Event) -> None:
    match event:
        case CaseFiled() | StatusResult() | ActionDone():
            _on_result(turn, event)
        case CommandEvent():
            _on_command(turn, event)
        case UnsupportedEvent():
            turn.say("unsupported")
            _ask(turn)
        case AttachmentEvent():
            _on_attachment(turn, event)
        case TextEvent():
            _on_text(turn, event)
        case ButtonEvent(payload=payload) if payload.startswith("lang:"):
            _set_language(turn, payload.removeprefix("lang:"))
        case ButtonEvent(payload=payload) if payload.startswith("rate:"):
            _on_rating(turn, payload)
        case ButtonEvent(payload="skip") if turn.state.get("comment_for"):
            turn.state.pop("comment_for")
            turn.say("comment_thanks")
        case ButtonEvent() | LocationEvent() | ContactEvent():
            _on_answer(turn, event)


# ------------------------------------------------------------------------------- text


def detect_language(text: str) -> str:
    """English when the text has Latin letters and no Chinese characters at all."""
    if re.search(r"[\u3400-\u9fff]", text):
        return "zh"
    return "en" if len(re.findall(r"[A-Za-z]", text)) >= 2 else "zh"


def _intent(parse: dict[str, Any]) -> tuple[str, float]:
    intent = parse.get("intent") or {}
    return str(intent.get("name") or "nlu_fallback"), float(intent.get("confidence") or 0.0)


def _is_emergency(turn: _Turn, parse: dict[str, Any]) -> bool:
    name, confidence = _intent(parse)
    risk = parse.get("risk") or {}
    return bool(risk.get("flagged")) or (name == "emergency" and confidence >= turn.ctx.threshold)


def _on_text(turn: _Turn, event: TextEvent) -> None:
    text = event.text.strip()
    state = turn.state
    if not state.get("lang_set") and text and state.get("step") in ("new", "describe"):
        state["lang"] = detect_language(text)
    if not text:
        turn.say("empty")
        _ask(turn)
        return
    if _is_emergency(turn, event.parse):
        _on_emergency(turn, event)
        return
    if state.get("comment_for"):
        reference = state.pop("comment_for")
        turn.actions.append(CommentCase(reference, text))
        turn.say("comment_thanks")
        return
    name, confidence = _intent(event.parse)
    needed = turn.ctx.anytime_threshold if state["step"] in FREE_TEXT_STEPS else turn.ctx.threshold
    if name in ANYTIME_INTENTS and confidence >= needed and len(text) <= 60:
        _on_anytime(turn, name, text)
        return
    _on_answer(turn, event)


def _on_anytime(turn: _Turn, intent: str, text: str = "") -> None:
    if intent == "cancel":
        _ask_cancel(turn)
    elif intent == "help":
        turn.say("help")
        _ask(turn)
    elif intent == "request_human":
        _request_human(turn)
    elif intent == "change_language":
        lowered = text.lower()
        if "english" in lowered or "英文" in text or "英语" in text:
            target = "en"
        elif "中文" in text or "chinese" in lowered or "汉语" in text or "普通话" in text:
            target = "zh"
        else:
            target = "en" if turn.lang == "zh" else "zh"
        _set_language(turn, target)
    elif intent == "check_status":
        turn.actions.append(LookupStatus())


def _set_language(turn: _Turn, language: str) -> None:
    turn.state["lang"] = "en" if language == "en" else "zh"
    turn.state["lang_set"] = True
    turn.say("language_set")
    _ask(turn)


# ------------------------------------------------------------------------- emergencies


def _best_dispute(parse: dict[str, Any]) -> str:
    for item in parse.get("intent_ranking") or []:
        if str(item.get("name", "")).startswith("dispute_"):
            return str(item["name"])
    return "dispute_other"


def _on_emergency(turn: _Turn, event: TextEvent) -> None:
    """Answer with emergency contacts at once and get a person on it, whatever the step."""
    risk = event.parse.get("risk") or {}
    kinds = [str(kind) for kind in risk.get("kinds") or []]
    turn.say("emergency")
    state = turn.state
    draft = state.get("draft")
    if draft is None and state.get("cases") and state["step"] == "done":
        turn.actions.append(FlagUrgent(state["cases"][-1], tuple(kinds)))
        return
    draft = turn.draft
    if state["step"] in ("new", "describe", "done"):
        _add_words(turn, event.text)
        draft["entities"] = list(event.parse.get("entities") or [])
        draft["category"] = draft["category"] or _best_dispute(event.parse)
        draft["confidence"] = 0.0
        state["step"] = "confirm_category"
    if not draft["words"]:
        _add_words(turn, event.text)
    draft["category"] = draft["category"] or _best_dispute(event.parse)
    _raise_urgent(turn, kinds, say=False)


def _raise_urgent(turn: _Turn, kinds: list[str], *, say: bool = True) -> None:
    """Mark the draft urgent and get a person on it now: file it, or flag the filed case."""
    draft = turn.draft
    if say:
        turn.say("emergency")
    draft["risk"] = "urgent"
    draft["risk_kinds"] = sorted(set(draft["risk_kinds"]) | set(kinds))
    if draft.get("reference"):
        turn.actions.append(FlagUrgent(draft["reference"], tuple(kinds)))
    else:
        turn.actions.append(FileCase(copy.deepcopy(draft), "emergency"))


# ------------------------------------------------------------------------------ ratings


def _on_rating(turn: _Turn, payload: str) -> None:
    """A 1–5 rating button from the message that told the resident the outcome."""
    _, reference, value = payload.split(":")
    turn.actions.append(RateCase(reference, int(value)))
    turn.state["comment_for"] = reference
    turn.say("rating_thanks", [[Button(t("dialogue.skip", turn.lang), "skip")]])


# ------------------------------------------------------------------------------ results


def _on_result(turn: _Turn, event: CaseFiled | StatusResult | ActionDone) -> None:
    state = turn.state
    if isinstance(event, StatusResult):
        if not event.cases:
            turn.say("status_none")
        else:
            lines = [
                t(
                    "dialogue.status_line",
                    turn.lang,
                    reference=item["reference"],
                    category=_category_title(turn, str(item["category"])),
                    status=t(f"dialogue.status_names.{item['status']}", turn.lang),
                    last=item.get("last", ""),
                )
                for item in event.cases
            ]
            turn.say("status_list", lines="\n".join(lines))
        _ask(turn)
        return
    if isinstance(event, ActionDone):
        key = {"attach": "evidence_attached", "request_human": "human_requested"}.get(
            event.action, "flagged_urgent"
        )
        turn.say(key, reference=event.reference or "")
        if event.action != "urgent":
            _ask(turn)
        return
    cases = state.setdefault("cases", [])
    if event.reference not in cases:
        cases.append(event.reference)
    if event.reason == "submit":
        _filed(turn, event)
        return
    turn.draft["reference"] = event.reference
    turn.say(
        "urgent_filed" if event.reason == "emergency" else "human_filed", reference=event.reference
    )
    _ask(turn)


def _filed(turn: _Turn, event: CaseFiled) -> None:
    draft = turn.draft
    form = turn.ctx.forms.get(draft["category"] or "dispute_other")
    centre = event.centre_en if turn.lang == "en" else event.centre_zh
    turn.say(
        "filed", reference=event.reference, centre=centre or t("dialogue.centre_default", turn.lang)
    )
    turn.reply(form.self_help.get(turn.lang).strip())
    turn.state["draft"] = None
    turn.state["step"] = "done"


# ----------------------------------------------------------------------------- commands


def _on_command(turn: _Turn, event: CommandEvent) -> None:
    name = event.name.lower()
    state = turn.state
    if name == "start":
        if state.get("draft"):
            turn.say("welcome_back")
            _ask(turn)
        else:
            state["step"] = "describe"
            turn.say("greeting")
            turn.say("privacy")
            _ask(turn)
    elif name == "new":
        if state.get("draft") and not state["draft"].get("reference"):
            _ask_cancel(turn)
        else:
            state["draft"] = None
            state["step"] = "describe"
            _ask(turn)
    elif name in ("language", "lang"):
        arg = event.args.strip().lower()
        if arg in ("en", "zh"):
            _set_language(turn, arg)
        else:
            turn.say("choose_language", [[Button("中文", "lang:zh"), Button("English", "lang:en")]])
    else:
        intent = {
            "help": "help",
            "cancel": "cancel",
            "status": "check_status",
            "human": "request_human",
        }.get(name)
        if intent is None:
            turn.say("unknown_command", command=event.name[:32])
            _ask(turn)
        else:
            _on_anytime(turn, intent)


def _ask_cancel(turn: _Turn) -> None:
    state = turn.state
    if not state.get("draft"):
        turn.say("nothing_to_cancel")
        _ask(turn)
        return
    if state["step"] != "confirm_cancel":
        state["resume"] = state["step"]
    state["step"] = "confirm_cancel"
    _ask(turn)


def _request_human(turn: _Turn) -> None:
    state = turn.state
    draft = state.get("draft")
    if draft and draft.get("reference"):
        turn.actions.append(RequestHuman(draft["reference"]))
    elif draft and draft["words"]:
        draft["human"] = True
        draft["category"] = draft["category"] or "dispute_other"
        turn.actions.append(FileCase(copy.deepcopy(draft), "human"))
    elif state.get("cases"):
        turn.actions.append(RequestHuman(state["cases"][-1]))
    else:
        turn.draft["human"] = True
        state["step"] = "describe"
        turn.say("human_describe_first")


# -------------------------------------------------------------------------- attachments


def _on_attachment(turn: _Turn, event: AttachmentEvent) -> None:
    allowed = event.kind == "photo" or (
        event.kind == "document" and ALLOWED_DOCUMENT_TYPES.match(event.mime_type or "")
    )
    if not allowed:
        turn.say("attachment_type")
        _ask(turn)
        return
    if event.size is not None and event.size > MAX_ATTACHMENT_BYTES:
        turn.say("attachment_too_big")
        _ask(turn)
        return
    item = {
        "kind": event.kind,
        "file_id": event.file_id,
        "size": event.size,
        "mime_type": event.mime_type,
        "file_name": event.file_name,
    }
    draft = turn.state.get("draft")
    reference = (draft or {}).get("reference") or (
        turn.state["cases"][-1] if draft is None and turn.state.get("cases") else None
    )
    if reference:
        turn.actions.append(AttachEvidence(reference, item))
        return
    turn.draft["attachments"].append(item)
    turn.say("attachment_kept")
    _ask(turn)


# ------------------------------------------------------------------------------ answers


def _yes_no(event: Event, turn: _Turn) -> bool | None:
    if isinstance(event, ButtonEvent) and event.payload in ("yes", "no"):
        return event.payload == "yes"
    if isinstance(event, TextEvent):
        text = event.text.strip().lower().rstrip("!！。.~")
        if text in YES_WORDS:
            return True
        if text in NO_WORDS:
            return False
        name, confidence = _intent(event.parse)
        if name in ("affirm", "deny") and confidence >= turn.ctx.threshold:
            return name == "affirm"
    return None


def _add_words(turn: _Turn, text: str) -> None:
    words = turn.draft["words"]
    used = sum(len(w) for w in words)
    room = turn.ctx.max_words - used
    if room <= 0:
        turn.say("too_long")
        return
    if len(text) > room:
        turn.say("too_long")
    words.append(text[:room])


def _on_answer(turn: _Turn, event: Event) -> None:
    step = turn.state.get("step", "new")
    handler = _STEPS.get(step, _step_describe)
    handler(turn, event)


def _step_describe(turn: _Turn, event: Event) -> None:
    state = turn.state
    if state["step"] == "new":
        state["step"] = "describe"
        turn.say("greeting")
        turn.say("privacy")
        if not isinstance(event, TextEvent):
            _ask(turn)
            return
    if not isinstance(event, TextEvent):
        _ask(turn)
        return
    name, confidence = _intent(event.parse)
    draft = state.get("draft")
    if name in ("greet", "thank", "goodbye", "affirm", "deny") and not (draft and draft["words"]):
        if name in ("thank", "goodbye"):
            turn.say(name)
        _ask(turn)
        return
    if name == "out_of_scope" and confidence >= turn.ctx.threshold:
        turn.say("out_of_scope")
        _ask(turn)
        return
    _describe(turn, event)


def _describe(turn: _Turn, event: TextEvent) -> None:
    """Take a description, then confirm the category or offer the likely ones."""
    draft = turn.draft
    _add_words(turn, event.text.strip())
    draft["entities"] = list(draft["entities"]) + list(event.parse.get("entities") or [])
    name, confidence = _intent(event.parse)
    ranking = [
        str(item.get("name"))
        for item in event.parse.get("intent_ranking") or []
        if str(item.get("name", "")).startswith("dispute_")
    ]
    draft["candidates"] = [c for c in ranking if c != "dispute_other"][:3]
    if draft.get("human"):
        draft["category"] = name if name.startswith("dispute_") else _best_dispute(event.parse)
        turn.actions.append(FileCase(copy.deepcopy(draft), "human"))
        turn.state["step"] = "confirm_category"
        return
    if name.startswith("dispute_") and confidence >= turn.ctx.threshold:
        draft["category"] = name
        draft["confidence"] = confidence
        turn.state["step"] = "confirm_category"
    else:
        turn.state["step"] = "choose_category"
    _ask(turn)


def _step_confirm_category(turn: _Turn, event: Event) -> None:
    answer = _yes_no(event, turn)
    if answer is True:
        _start_form(turn)
    elif answer is False:
        rejected = turn.draft["category"]
        turn.draft["candidates"] = [c for c in turn.draft["candidates"] if c != rejected][:3]
        turn.state["step"] = "choose_category"
        _ask(turn)
    elif isinstance(event, TextEvent):
        _describe(turn, event)
    else:
        _ask(turn)


def _step_choose_category(turn: _Turn, event: Event) -> None:
    if isinstance(event, ButtonEvent) and event.payload.startswith("cat:"):
        category = event.payload.removeprefix("cat:")
        if category in turn.ctx.forms.by_category:
            turn.draft["category"] = category
            turn.draft["confidence"] = 1.0
            if turn.draft.get("editing"):
                turn.draft["slots"], turn.draft["skipped"] = {}, []
                turn.draft["editing"] = False
            _start_form(turn)
            return
    if isinstance(event, TextEvent):
        _describe(turn, event)
        return
    _ask(turn)


def _start_form(turn: _Turn) -> None:
    draft = turn.draft
    form = turn.ctx.forms.get(draft["category"])
    found = prefill(form.slots, {"entities": draft["entities"]})
    found = {k: v for k, v in found.items() if k not in draft["slots"]}
    location = _prefill_location(turn)
    phone = entity_value({"entities": draft["entities"]}, "phone")
    phone = normalise_phone(str(phone)) if phone else None
    draft["prefill"] = {"slots": found, "location": location, "phone": phone}
    if found or location or (phone and not draft["phone_done"]):
        turn.state["step"] = "confirm_prefill"
    else:
        _next(turn)
        return
    _ask(turn)


def _prefill_location(turn: _Turn) -> list[str | None] | None:
    draft = turn.draft
    if draft["location_done"]:
        return None
    text = " ".join(draft["words"])
    street, community = turn.ctx.geography.find_in_text(text)
    if street is None:
        for item in draft["entities"]:
            if item.get("entity") == "location":
                street, community = turn.ctx.geography.find_in_text(str(item.get("value", "")))
                if street:
                    break
    return [street.code, community] if street else None


def _step_confirm_prefill(turn: _Turn, event: Event) -> None:
    answer = _yes_no(event, turn)
    if answer is None:
        if isinstance(event, TextEvent):
            turn.say("please_yes_no")
        _ask(turn)
        return
    draft = turn.draft
    found = draft.pop("prefill", None) or {}
    if answer:
        draft["slots"].update(found.get("slots") or {})
        if found.get("location"):
            draft["street"], draft["community"] = found["location"]
            # A street without its community still gets the community question.
            draft["location_done"] = draft["community"] is not None
        if found.get("phone"):
            draft["phone"] = found["phone"]
            draft["phone_done"] = True
    _next(turn)


def _next(turn: _Turn) -> None:
    """Go to the first unanswered question, or to the review."""
    draft = turn.draft
    state = turn.state
    form = turn.ctx.forms.get(draft["category"])
    if draft.get("editing"):
        draft["editing"] = False
        state["step"] = "review"
    else:
        pending = [
            s for s in form.slots if s.name not in draft["slots"] and s.name not in draft["skipped"]
        ]
        if pending:
            state["step"] = "slot"
            draft["slot"] = pending[0].name
        elif not draft["location_done"]:
            state["step"] = "community" if draft["street"] else "street"
        elif not draft["phone_done"]:
            state["step"] = "phone"
        elif draft["consent"] is None:
            state["step"] = "consent"
        else:
            state["step"] = "review"
    _ask(turn)


def _current_slot(turn: _Turn) -> tuple[Form, Slot | None]:
    form = turn.ctx.forms.get(turn.draft["category"])
    return form, form.slot(str(turn.draft.get("slot")))


def _step_slot(turn: _Turn, event: Event) -> None:
    _form, slot = _current_slot(turn)
    draft = turn.draft
    if slot is None:
        _next(turn)
        return
    value: Any = None
    if isinstance(event, ButtonEvent):
        if event.payload == "skip" and not slot.required:
            draft["skipped"].append(slot.name)
            draft["slots"].pop(slot.name, None)
            _next(turn)
            return
        if event.payload.startswith("choice:"):
            choice = event.payload.removeprefix("choice:")
            value = choice if any(c.value == choice for c in slot.choices) else None
    elif isinstance(event, TextEvent):
        value = read_slot(slot, event.text, event.parse)
    if value is None:
        if isinstance(event, TextEvent | ButtonEvent):
            turn.say("invalid_answer")
        _ask(turn)
        return
    draft["slots"][slot.name] = value
    if slot.name in draft["skipped"]:
        draft["skipped"].remove(slot.name)
    risk = next((c.risk for c in slot.choices if c.value == value and c.risk), None)
    if risk == "urgent" and draft["risk"] != "urgent":
        _raise_urgent(turn, [f"{draft['category']}:{slot.name}:{value}"])
    elif risk == "elevated" and draft["risk"] == "normal":
        draft["risk"] = "elevated"
    _next(turn)


def _step_street(turn: _Turn, event: Event) -> None:
    geo = turn.ctx.geography
    if isinstance(event, ButtonEvent) and event.payload.startswith("street:"):
        code = event.payload.removeprefix("street:")
        if code == "none":  # outside Bao'an, or not sure: the district centre takes it
            _place(turn, None, None)
            return
        if geo.street(code):
            _place(turn, geo.street(code), None)
            return
    elif isinstance(event, LocationEvent):
        street = geo.nearest(event.latitude, event.longitude)
        if street is None:
            turn.say("location_outside")
        else:
            turn.say("location_mapped", street=street.name(turn.lang))
            _place(turn, street, None)
            return
    elif isinstance(event, TextEvent):
        street, community = geo.find_in_text(event.text)
        if street:
            _place(turn, street, community)
            return
        turn.say("invalid_answer")
    _ask(turn)


def _place(turn: _Turn, street: Street | None, community: str | None) -> None:
    """Record the street (and community, if known); ask for the community if not."""
    draft = turn.draft
    draft["street"] = street.code if street else None
    draft["community"] = community
    if street is None or community:
        draft["location_done"] = True
        _next(turn)
    else:
        turn.state["step"] = "community"
        _ask(turn)


def _step_community(turn: _Turn, event: Event) -> None:
    draft = turn.draft
    street = turn.ctx.geography.street(draft["street"])
    community: str | None = None
    if isinstance(event, ButtonEvent) and event.payload.startswith("comm:"):
        community = event.payload.removeprefix("comm:") or None
        if street and community and community not in street.communities:
            _ask(turn)
            return
    elif isinstance(event, TextEvent):
        text = event.text.strip()
        known = [c for c in (street.communities if street else ()) if c in text]
        community = known[0] if known else (text[:30] if text else None)
    else:
        _ask(turn)
        return
    draft["community"] = community
    draft["location_done"] = True
    _next(turn)


def _step_phone(turn: _Turn, event: Event) -> None:
    draft = turn.draft
    phone: str | None = None
    if isinstance(event, ButtonEvent) and event.payload == "skip":
        draft["phone"], draft["phone_done"] = None, True
        _next(turn)
        return
    if isinstance(event, ContactEvent):
        phone = normalise_phone(event.phone)
    elif isinstance(event, TextEvent):
        found = entity_value(event.parse, "phone")
        phone = normalise_phone(str(found)) if found else normalise_phone(event.text)
    if phone is None:
        turn.say("invalid_phone")
        _ask(turn)
        return
    draft["phone"], draft["phone_done"] = phone, True
    _next(turn)


def _step_consent(turn: _Turn, event: Event) -> None:
    answer = _yes_no(event, turn)
    if answer is None:
        _ask(turn)
        return
    turn.draft["consent"] = answer
    _next(turn)


def _step_review(turn: _Turn, event: Event) -> None:
    draft = turn.draft
    if (isinstance(event, ButtonEvent) and event.payload == "submit") or _yes_no(event, turn):
        _submit(turn)
        return
    if isinstance(event, ButtonEvent) and event.payload.startswith("edit:"):
        target = event.payload.removeprefix("edit:")
        draft["editing"] = True
        if target == "category":
            turn.state["step"] = "choose_category"
        elif target == "words":
            turn.state["step"] = "edit_words"
        elif target == "location":
            turn.state["step"] = "street"
        elif target == "phone":
            turn.state["step"] = "phone"
        elif target == "consent":
            turn.state["step"] = "consent"
        elif target.startswith("slot:") and _current_form(turn).slot(target[5:]):
            draft["slot"] = target[5:]
            turn.state["step"] = "slot"
        else:
            draft["editing"] = False
        _ask(turn)
        return
    _ask(turn)


def _current_form(turn: _Turn) -> Form:
    return turn.ctx.forms.get(turn.draft["category"])


def _step_edit_words(turn: _Turn, event: Event) -> None:
    if isinstance(event, TextEvent) and event.text.strip():
        turn.draft["words"] = []
        _add_words(turn, event.text.strip())
        _next(turn)
        return
    _ask(turn)


def _submit(turn: _Turn) -> None:
    draft = turn.draft
    if draft.get("reference"):
        turn.actions.append(UpdateCase(draft["reference"], copy.deepcopy(draft)))
        _filed(turn, CaseFiled(draft["reference"], "submit"))
        return
    turn.state["step"] = "filing"
    turn.actions.append(FileCase(copy.deepcopy(draft), "submit"))


def _step_confirm_cancel(turn: _Turn, event: Event) -> None:
    answer = _yes_no(event, turn)
    state = turn.state
    if answer is True:
        reference = (state.get("draft") or {}).get("reference")
        state["draft"] = None
        state["step"] = "describe"
        state.pop("resume", None)
        turn.say("cancelled_filed" if reference else "cancelled", reference=reference or "")
        return
    if answer is False:
        state["step"] = state.pop("resume", "describe")
        turn.say("not_cancelled")
    _ask(turn)


def _step_filing(turn: _Turn, event: Event) -> None:
    turn.say("filing_wait")


def _step_done(turn: _Turn, event: Event) -> None:
    if isinstance(event, TextEvent):
        name, confidence = _intent(event.parse)
        if name.startswith("dispute_") and confidence >= turn.ctx.threshold:
            turn.state["draft"] = None
            _describe(turn, event)
            return
        if name in ("thank", "goodbye", "greet") and confidence >= turn.ctx.threshold:
            turn.say(name)
            return
    cases = turn.state.get("cases") or []
    turn.say("done_hint", reference=cases[-1] if cases else "")


_STEPS = {
    "new": _step_describe,
    "describe": _step_describe,
    "confirm_category": _step_confirm_category,
    "choose_category": _step_choose_category,
    "confirm_prefill": _step_confirm_prefill,
    "slot": _step_slot,
    "street": _step_street,
    "community": _step_community,
    "phone": _step_phone,
    "consent": _step_consent,
    "review": _step_review,
    "edit_words": _step_edit_words,
    "confirm_cancel": _step_confirm_cancel,
    "filing": _step_filing,
    "done": _step_done,
}

# ------------------------------------------------------------------------------ prompts


def _category_title(turn: _Turn, category: str) -> str:
    form = turn.ctx.forms.by_category.get(category)
    return form.title.get(turn.lang) if form else category


def _yes_no_buttons(turn: _Turn) -> list[list[Button]]:
    return [
        [Button(t("dialogue.yes", turn.lang), "yes"), Button(t("dialogue.no", turn.lang), "no")]
    ]


def _format_value(turn: _Turn, slot: Slot, value: Any) -> str:
    if slot.type == "choice":
        return next((c.label(turn.lang) for c in slot.choices if c.value == value), str(value))
    if slot.type == "amount":
        return t("dialogue.amount_value", turn.lang, amount=f"{value:,}")
    return str(value)


def _location_text(turn: _Turn, street_code: str | None, community: str | None) -> str:
    street = turn.ctx.geography.street(street_code)
    if street is None:
        return t("dialogue.location_unknown", turn.lang)
    return street.name(turn.lang) + (f" · {community}" if community else "")


def _ask(turn: _Turn) -> None:
    """Ask the question of the current step (again)."""
    step = turn.state.get("step", "new")
    draft = turn.state.get("draft") or {}
    lang = turn.lang
    if step in ("new", "describe", "edit_words"):
        turn.say("ask_describe" if step != "edit_words" else "ask_words")
    elif step == "confirm_category":
        turn.say(
            "confirm_category",
            _yes_no_buttons(turn),
            category=_category_title(turn, draft.get("category") or "dispute_other"),
        )
    elif step == "choose_category":
        candidates = [c for c in draft.get("candidates") or [] if c in turn.ctx.forms.by_category]
        if not candidates:
            candidates = [c for c in turn.ctx.forms.categories if c != "dispute_other"]
        rows = [[Button(_category_title(turn, c), f"cat:{c}")] for c in candidates]
        rows.append([Button(_category_title(turn, "dispute_other"), "cat:dispute_other")])
        turn.say("choose_category", rows)
    elif step == "confirm_prefill":
        found = draft.get("prefill") or {}
        form = _current_form(turn)
        lines = []
        for name, value in (found.get("slots") or {}).items():
            slot = form.slot(name)
            if slot:
                lines.append(f"• {slot.label.get(lang)}: {_format_value(turn, slot, value)}")
        if found.get("location"):
            street, community = found["location"]
            lines.append(
                f"• {t('dialogue.field_location', lang)}: {_location_text(turn, street, community)}"
            )
        if found.get("phone"):
            lines.append(f"• {t('dialogue.field_phone', lang)}: {mask_phone(found['phone'])}")
        turn.say("confirm_prefill", _yes_no_buttons(turn), lines="\n".join(lines))
    elif step == "slot":
        form, slot = _current_slot(turn)
        if slot is None:
            return
        rows = [[Button(c.label(lang), f"choice:{c.value}")] for c in slot.choices]
        if not slot.required:
            rows.append([Button(t("dialogue.skip", lang), "skip")])
        turn.reply(slot.prompt.get(lang), rows)
    elif step == "street":
        streets = list(turn.ctx.geography.streets)
        rows = [
            [Button(s.name(lang), f"street:{s.code}") for s in streets[i : i + 3]]
            for i in range(0, len(streets), 3)
        ]
        rows.append([Button(t("dialogue.street_none", lang), "street:none")])
        turn.say("ask_street", rows)
        turn.replies.append(Reply(t("dialogue.share_location_hint", lang), request="location"))
    elif step == "community":
        street = turn.ctx.geography.street(draft.get("street"))
        names = list(street.communities) if street else []
        rows = [[Button(c, f"comm:{c}") for c in names[i : i + 3]] for i in range(0, len(names), 3)]
        rows.append([Button(t("dialogue.community_unknown", lang), "comm:")])
        turn.say("ask_community", rows)
    elif step == "phone":
        turn.reply(t("dialogue.ask_phone", lang), [[Button(t("dialogue.skip", lang), "skip")]])
        turn.replies.append(Reply(t("dialogue.share_contact_hint", lang), request="contact"))
    elif step == "consent":
        turn.say("ask_consent", _yes_no_buttons(turn))
    elif step == "review":
        _review(turn)
    elif step == "confirm_cancel":
        turn.say("confirm_cancel", _yes_no_buttons(turn))
    elif step == "filing":
        turn.say("filing_wait")


def review_lines(turn: _Turn) -> list[str]:
    draft = turn.draft
    lang = turn.lang
    form = _current_form(turn)
    words = " ".join(draft["words"])
    lines = [
        f"{t('dialogue.field_category', lang)}: {form.title.get(lang)}",
        f"{t('dialogue.field_words', lang)}: {words[:300]}{'…' if len(words) > 300 else ''}",
    ]
    for slot in form.slots:
        if slot.name in draft["slots"]:
            shown = _format_value(turn, slot, draft["slots"][slot.name])
        else:
            shown = t("dialogue.not_given", lang)
        lines.append(f"{slot.label.get(lang)}: {shown}")
    lines.append(
        f"{t('dialogue.field_location', lang)}: "
        f"{_location_text(turn, draft['street'], draft['community'])}"
    )
    phone = mask_phone(draft["phone"]) if draft["phone"] else t("dialogue.not_given", lang)
    lines.append(f"{t('dialogue.field_phone', lang)}: {phone}")
    consent = t("dialogue.yes" if draft["consent"] else "dialogue.no", lang)
    lines.append(f"{t('dialogue.field_consent', lang)}: {consent}")
    if draft["attachments"]:
        lines.append(t("dialogue.field_attachments", lang, count=len(draft["attachments"])))
    return lines


def _review(turn: _Turn) -> None:
    lang = turn.lang
    form = _current_form(turn)
    edit = t("dialogue.edit", lang)
    rows = [
        [
            Button(f"{edit}: {t('dialogue.field_category', lang)}", "edit:category"),
            Button(f"{edit}: {t('dialogue.field_words', lang)}", "edit:words"),
        ],
        *[
            [Button(f"{edit}: {slot.label.get(lang)}", f"edit:slot:{slot.name}")]
            for slot in form.slots
        ],
        [
            Button(f"{edit}: {t('dialogue.field_location', lang)}", "edit:location"),
            Button(f"{edit}: {t('dialogue.field_phone', lang)}", "edit:phone"),
        ],
        [Button(f"{edit}: {t('dialogue.field_consent', lang)}", "edit:consent")],
        [Button(t("dialogue.submit", lang), "submit")],
    ]
    turn.say("review", rows, lines="\n".join(review_lines(turn)))
