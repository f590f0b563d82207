"""``/mydata`` and ``/forget`` in the chat, answered before the dialogue engine.

The engine is pure and knows nothing of exports or erasure; the intake service calls
:func:`answer` first (one delimited block in ``IntakeService.handle``) and only falls
through to the engine when it returns None.

``/forget`` asks for confirmation with yes/no buttons. The pending question lives in
the conversation state under ``state["privacy"]`` with the version the state had when
it was saved: any later message the engine handles bumps the version, so a stale
"yes" (pressed on an old question, or meant for the engine's own yes/no) is never
taken as consent to delete. A question older than :data:`CONFIRM_TTL` has expired too.

What each channel does with the export: the reply carries the rendered text file as a
``local:<sha256>`` document attachment (stored under ``data_dir/exports/``) and the same
text inline, split into parts. The REST bridge hands both to the client (the outbox
keeps the attachment dict); Telegram cannot send a ``local:`` file by id, so it sends
the text parts only; the console shows the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from actions import privacy
from bot.dialogue.model import Button, ButtonEvent, CommandEvent, Event, Reply
from bot.i18n import t
from bot.notices import Notice, RelayNotice
from bot.runtime import Store
from storage.cases import Actor
from storage.conversations import load_conversation, save_conversation
from storage.models import utcnow

KEY = "privacy"
COMMANDS = frozenset({"mydata", "forget"})
CONFIRM_TTL = timedelta(minutes=10)
#: Telegram's limit is 4096 characters per message; leave room for the header.
INLINE_CHARS = 3500
STAFF_LANGUAGE = "zh"


@dataclass(frozen=True, slots=True)
class Who:
    channel: str
    chat_id: str
    user_id: str


def concerns(event: Event) -> bool:
    """Cheap test, no I/O: could this event be ours?"""
    if isinstance(event, CommandEvent):
        return event.name in COMMANDS
    return isinstance(event, ButtonEvent) and event.payload in ("yes", "no")


async def answer(
    store: Store, data_dir: Path | str, timezone: str, who: Who, event: Event
) -> tuple[list[Reply], list[Notice]] | None:
    """Replies and notices (sent after the commit) when the event is ours, else None."""
    async with store.sessions.begin() as session:
        state, version = await load_conversation(session, who.channel, who.chat_id)
        lang = str(state.get("lang") or "zh")
        if isinstance(event, CommandEvent) and event.name == "mydata":
            export = await privacy.export_resident(session, who.channel, who.user_id, lang)
            return _mydata(export, data_dir, timezone), []
        if isinstance(event, CommandEvent) and event.name == "forget":
            cases = await privacy.queries.cases_of(session, who.channel, who.user_id)
            open_ = await privacy.open_cases_of(session, who.channel, who.user_id)
            state = {
                **state,
                KEY: {"confirm": "forget", "version": version + 1, "at": utcnow().isoformat()},
            }
            await save_conversation(session, who.channel, who.chat_id, state, version)
            buttons = (
                (
                    Button(t("privacy.forget_yes", lang), "yes"),
                    Button(t("privacy.forget_no", lang), "no"),
                ),
            )
            text = t("privacy.forget_explain", lang, open=len(open_), total=len(cases))
            return [Reply(text, buttons)], []
        pending = state.get(KEY)
        if not isinstance(pending, dict) or pending.get("confirm") != "forget":
            return None
        if pending.get("version") != version:
            return None  # the conversation moved on: this yes/no is the engine's
        rest = {k: v for k, v in state.items() if k != KEY}
        assert isinstance(event, ButtonEvent)
        if event.payload == "no" or _expired(pending):
            await save_conversation(session, who.channel, who.chat_id, rest, version)
            key = "privacy.forget_cancelled" if event.payload == "no" else "privacy.forget_expired"
            return [Reply(t(key, lang))], []
        result = await privacy.forget_resident(
            session, who.channel, who.user_id, Actor("resident", None), keep_conversation=True
        )
        # The chat's state is reset to its language only (drafts, phone and all gone).
        await save_conversation(session, who.channel, who.chat_id, {"lang": lang}, version)
    privacy.delete_files(data_dir, result.files)
    notices: list[Notice] = [
        RelayNotice(
            item.reference,
            item.mediator_external_id,
            t("privacy.mediator_told", STAFF_LANGUAGE, reference=item.reference),
        )
        for item in result.withdrawn
        if item.mediator_external_id
    ]
    counts = result.counts()
    reply = t("privacy.forget_done", lang, withdrawn=counts["withdrawn"], cases=counts["cases"])
    return [Reply(reply)], notices


def _expired(pending: dict[str, Any]) -> bool:
    try:
        at = datetime.fromisoformat(str(pending.get("at")))
    except ValueError:
        return True
    return utcnow() - at > CONFIRM_TTL


def _mydata(export: dict[str, Any], data_dir: Path | str, timezone: str) -> list[Reply]:
    lang = str(export.get("language") or "zh")
    text = privacy.render_export(export, timezone)
    attachment = privacy.write_export(data_dir, text)
    parts = [text[i : i + INLINE_CHARS] for i in range(0, len(text), INLINE_CHARS)] or [""]
    replies = [Reply(t("privacy.mydata_sent", lang), attachment=attachment)]
    replies += [
        Reply(t("privacy.mydata_inline", lang, part=n, parts=len(parts), text=part))
        for n, part in enumerate(parts, 1)
    ]
    return replies
