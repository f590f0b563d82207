"""Runs the pure dialogue engine against the real world: NLU, store, actions.

One call handles one event of one chat: load the state, parse text, step the engine,
carry out its actions (feeding their results back into the engine), save the state —
all in one transaction, so a database failure leaves nothing half written and the
resident is asked to send the message again. Events of one chat run one at a time in
this process (a lock per chat). Between workers (issue 16) the database orders them:
the state's version column catches a concurrent save and the whole event is retried on
fresh state, for as long as ``chat_wait`` seconds (a bounded wait, never a count of
tries that gives up on a burst). With ``TIAOJIE_CHAT_LOCK`` on PostgreSQL, a
transaction-scoped advisory lock per chat (tried first in one round trip, then waited
for under a bounded ``lock_timeout``) makes the later message wait instead of redoing
its turn; the benchmark found the version check alone slightly cheaper in ordinary
traffic, so the lock is an option (docs/scaling.md).
A delivery id (Telegram's update id, a REST bridge's message id) is recorded in the same
transaction, so a delivery reaching two workers is handled once, and the second gets
the first one's answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from actions import casework, intake, learning
from actions.metrics import CHAT_LOCK_WAIT_SECONDS, DIALOGUE_RETRIES, MESSAGES_FAILED
from bot import privacy_chat
from bot.dialogue.engine import Context, detect_language, handle
from bot.dialogue.model import (
    Action,
    ActionDone,
    AttachEvidence,
    AttachmentEvent,
    Button,
    ButtonEvent,
    CaseFiled,
    CaseWords,
    CommentCase,
    Event,
    FileCase,
    FlagUrgent,
    GiveReferral,
    LookupStatus,
    Outcome,
    RateCase,
    Reply,
    RequestHuman,
    StatusResult,
    TextEvent,
    UpdateCase,
)
from bot.i18n import t
from bot.intake_metrics import measured
from bot.notices import CaseNotice, LogNotifier, Notice, Notifier, RelayNotice
from bot.runtime import Store
from nlu.interface import NLUBackend
from storage.cases import Actor
from storage.conversations import load_conversation, save_conversation
from storage.db import DatabaseUnavailable
from storage.errors import StaleState, StoreError
from storage.models import Resident
from storage.people import get_or_create_resident
from storage.updates import delivery_number, keep_replies, record_processed_update, replies_of

log = logging.getLogger(__name__)

#: How many chats' states one process keeps in memory between their messages.
STATE_CACHE_SIZE = 10_000
#: Steps whose answer the learning loop keeps (the resident confirming or correcting the
#: model's kind): never taken on the session-less fast path.
DECISION_STEPS = frozenset({"confirm_category", "choose_category"})
#: What each channel can show; the engine never mentions a button the channel lacks.
CHANNEL_FEATURES = {"telegram": frozenset({"buttons", "contact", "location"})}
#: REST and callback bridges, the console and WeChat show choices (as buttons or
#: numbered options) but have no share-my-number or share-my-location button.
DEFAULT_FEATURES = frozenset({"buttons"})
#: A resident's single message longer than this is refused politely (nothing stored).
MAX_MESSAGE_CHARS = 20_000
#: A value the database refuses (not a race) is tried this often, then answered.
INTEGRITY_ATTEMPTS = 5
#: One round trip on PostgreSQL when nobody holds the chat: try its lock (held until
#: commit) and set the bounded wait for the blocking lock that follows only when taken.
_TRY_CHAT_LOCK = text(
    "SELECT set_config('lock_timeout', :timeout, true), pg_try_advisory_xact_lock(:key)"
)
_CHAT_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def chat_lock_key(channel: str, chat_id: str) -> int:
    """The advisory-lock key of one conversation: a stable signed 64-bit number."""
    return delivery_number(f"{channel}\x1f{chat_id}") - (1 << 62)


def reply_record(reply: Reply) -> dict[str, Any]:
    """A reply as JSON, to answer a duplicate delivery the same way."""
    record: dict[str, Any] = {"text": reply.text}
    if reply.buttons:
        record["buttons"] = [[[b.title, b.payload] for b in row] for row in reply.buttons]
    if reply.request:
        record["request"] = reply.request
    if reply.attachment:
        record["attachment"] = dict(reply.attachment)
    return record


def reply_from_record(record: dict[str, Any]) -> Reply:
    buttons = tuple(
        tuple(Button(str(title), str(payload)) for title, payload in row)
        for row in record.get("buttons") or []
    )
    return Reply(
        str(record.get("text", "")),
        buttons,
        request=record.get("request"),
        attachment=record.get("attachment"),
    )


@dataclass(frozen=True, slots=True)
class Sender:
    """Who an event comes from: channel, chat and the person's id on that channel."""

    channel: str
    chat_id: str
    user_id: str


class IntakeService:
    """The one place channels hand events to; returns the replies to send."""

    def __init__(
        self,
        store: Store,
        nlu: NLUBackend,
        ctx: Context,
        *,
        reference_prefix: str = "BA",
        timezone: str = "Asia/Shanghai",
        notifier: Notifier | None = None,
        review_thresholds: learning.Thresholds | None = None,
        data_dir: Path | str = "var",
        chat_wait: float = 30.0,
        chat_lock: bool = False,
    ) -> None:
        self.store = store
        #: How long a message may wait for its chat's previous one (lock and retries).
        self.chat_wait = chat_wait
        #: Order a chat's messages across workers with a PostgreSQL advisory lock (else
        #: the version check and retries alone); see ``benchmarks/scale_bench.py``.
        self.chat_lock = chat_lock and store.engine.dialect.name == "postgresql"
        self.review_thresholds = review_thresholds or learning.Thresholds()
        self.data_dir = Path(data_dir)  # where /mydata exports and evidence files live
        self.notifier: Notifier = notifier or LogNotifier()
        self.nlu = nlu
        self.ctx = ctx
        self.reference_prefix = reference_prefix
        self.timezone = timezone
        #: Recently saved (state, version) per chat, oldest first; only a hint.
        self._states: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
        #: Each recent chat's language, kept even when its cached state is dropped, so
        #: an error is answered in the conversation's language, not a guess.
        self._languages: dict[tuple[str, str], str] = {}
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def context_for(self, channel: str) -> Context:
        """The engine's context for one channel: what it can show (a share-my-number
        button only on Telegram) and the resident's today in the district's zone."""
        features = CHANNEL_FEATURES.get(channel, DEFAULT_FEATURES)
        today = datetime.now(ZoneInfo(self.timezone)).date()
        return replace(self.ctx, features=features, today=today)

    def _remember(self, key: tuple[str, str], state: dict[str, Any], version: int) -> None:
        """Keep the last saved state of recent chats, saving a read per message."""
        self._states[key] = (state, version)
        self._languages[key] = str(state.get("lang") or "zh")
        if len(self._states) > STATE_CACHE_SIZE:
            self._states.pop(next(iter(self._states)))
        if len(self._languages) > STATE_CACHE_SIZE:
            self._languages.pop(next(iter(self._languages)))

    def _lock(self, sender: Sender) -> asyncio.Lock:
        key = (sender.channel, sender.chat_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    @measured  # messages in and out per channel, step latency (issue 16)
    async def handle(
        self,
        sender: Sender,
        event: Event,
        update_id: int | None = None,
        *,
        replay: bool = False,
    ) -> list[Reply]:
        """Handle one event; on a store failure, a polite "please send again".

        ``update_id`` (a channel's delivery id) is recorded in the same transaction as
        the event's effects, so a redelivered update is handled exactly once. With
        ``replay`` the replies are kept with it and a duplicate delivery gets them
        again (a REST bridge that lost the first answer); without, a duplicate gets no
        reply (Telegram: the first delivery's replies went to the chat already).
        """
        if isinstance(event, TextEvent) and len(event.text) > MAX_MESSAGE_CHARS:
            language = detect_language(event.text[:200])
            return [Reply(t("dialogue.message_too_long", language, limit=MAX_MESSAGE_CHARS))]
        lock = self._lock(sender)
        try:
            # The lock comes first: updates of one chat queue here in arrival order.
            async with lock:
                # --- privacy (issue 14): /mydata, /forget and its yes/no, before the engine
                if privacy_chat.concerns(event):
                    who = privacy_chat.Who(sender.channel, sender.chat_id, sender.user_id)
                    mine = await privacy_chat.answer(
                        self.store, self.data_dir, self.timezone, who, event
                    )
                    if mine is not None:
                        self._states.pop((sender.channel, sender.chat_id), None)
                        if mine[1]:
                            await self._deliver(mine[1])
                        return mine[0]
                # --- end privacy
                if isinstance(event, TextEvent) and not event.parse and event.text.strip():
                    event = TextEvent(event.text, await self.nlu.parse(event.text))
                async for attempt in AsyncRetrying(
                    # A lost race (another process saved first, or inserted the same row)
                    # passes on fresh state; anything else is not retried here.
                    retry=retry_if_exception_type((StaleState, IntegrityError)),
                    stop=self._give_up,
                    wait=wait_random_exponential(multiplier=0.01, max=0.5),
                    before_sleep=self._count_retry,
                    reraise=True,
                ):
                    with attempt:
                        replies, notices = await self._handle_once(
                            sender, event, update_id, replay
                        )
            if notices:
                await self._deliver(notices)
            return replies
        except (SQLAlchemyError, DatabaseUnavailable, OSError, StaleState) as error:
            # The error text may quote the resident's words: details only at DEBUG.
            log.warning(
                "event for %s chat %s not saved: %s",
                sender.channel,
                sender.chat_id,
                type(error).__name__,
            )
            log.debug("store failure", exc_info=error)
            key = "db_refused" if _permanent(error) else "db_unavailable"
            MESSAGES_FAILED.labels(sender.channel, key).inc()
            return [Reply(t(f"dialogue.{key}", self._language_of(sender, event)))]
        raise AssertionError("unreachable: tenacity either returns or reraises")

    def _give_up(self, retry_state: RetryCallState) -> bool:
        """Lost races are retried for ``chat_wait`` seconds; a refused value a few times."""
        outcome = retry_state.outcome
        if outcome is not None and isinstance(outcome.exception(), IntegrityError):
            return retry_state.attempt_number >= INTEGRITY_ATTEMPTS
        return (retry_state.seconds_since_start or 0.0) >= self.chat_wait

    def _count_retry(self, retry_state: RetryCallState) -> None:
        DIALOGUE_RETRIES.inc()

    async def _lock_chat(self, connection: Any, key: tuple[str, str]) -> None:
        """Wait (at most ``chat_wait``) for this chat's lock, held until commit."""
        if not self.chat_lock:
            return
        number = chat_lock_key(*key)
        timeout = f"{int(self.chat_wait * 1000)}ms"
        taken = (await connection.execute(_TRY_CHAT_LOCK, {"timeout": timeout, "key": number}))
        if taken.one()[1]:
            return
        started = time.perf_counter()  # another worker has this chat: wait our turn
        await connection.execute(_CHAT_LOCK, {"key": number})
        CHAT_LOCK_WAIT_SECONDS.observe(time.perf_counter() - started)

    async def _deliver(self, notices: list[Notice]) -> None:
        try:
            await self.notifier.deliver(notices)
        except Exception as error:  # the resident's reply must not depend on the desk
            log.warning("could not deliver %d notice(s): %s", len(notices), type(error).__name__)

    async def _handle_once(
        self, sender: Sender, event: Event, update_id: int | None, replay: bool = False
    ) -> tuple[list[Reply], list[Notice]]:
        key = (sender.channel, sender.chat_id)
        ctx = self.context_for(sender.channel)
        # Safe without re-reading: a save only succeeds if nobody else saved since this
        # version (else StaleState, and the retry starts from the store).
        cached = self._states.pop(key, None)
        outcome: Outcome | None = None
        if update_id is None and cached is not None and cached[0].get("draft"):
            # Most messages only answer a question (no relay while an intake is open):
            # with the state in memory, the engine plus one UPDATE, no ORM session.
            state, version = cached
            outcome = handle(state, event, ctx)
            if not outcome.actions and state.get("step") not in DECISION_STEPS:
                async with self.store.engine.begin() as connection:
                    await self._lock_chat(connection, key)
                    saved = await save_conversation(
                        connection, *key, outcome.state, version, vault=self.store.vault
                    )
                return self._done(key, outcome.state, saved, list(outcome.replies)), []
        notices: list[Notice] = []
        async with self.store.sessions.begin() as session:
            await self._lock_chat(await session.connection(), key)
            if update_id is not None and not await record_processed_update(
                session, sender.channel, update_id
            ):
                log.info("update %s of %s already handled", update_id, sender.channel)
                if not replay:
                    return [], []
                kept = await replies_of(session, sender.channel, update_id)
                return [reply_from_record(r) for r in kept], []
            if cached is None:
                state, version = await load_conversation(session, *key)
            else:
                state, version = cached
            if outcome is None:
                relayed = await self._relay(session, sender, state, event, notices)
                if relayed is not None:
                    saved = await save_conversation(session, *key, relayed[1], version)
                    await self._keep_for_replay(session, sender, update_id, replay, relayed[0])
                    return self._done(key, relayed[1], saved, relayed[0]), notices
                outcome = handle(state, event, ctx)
            # Learning loop (issue 13): what the model decided at a decision point. Also
            # when the in-memory fast path above already ran the engine: the answer to
            # "is it this kind?" arrives that way, and its signal must not be lost.
            await self._capture(session, sender, state, outcome.state, event)
            state = outcome.state
            replies = list(outcome.replies)
            pending: list[Action] = list(outcome.actions)
            resident: Resident | None = None
            while pending:
                action = pending.pop(0)
                if resident is None:
                    resident = await get_or_create_resident(
                        session, sender.channel, sender.user_id, str(state.get("lang", "zh"))
                    )
                result = await self._run(session, action, sender, resident, state, notices, event)
                if result is None:
                    continue
                follow = handle(state, result, ctx)
                state = follow.state
                replies.extend(follow.replies)
                pending.extend(follow.actions)
            saved = await save_conversation(session, *key, state, version)
            await self._keep_for_replay(session, sender, update_id, replay, replies)
        return self._done(key, state, saved, replies), notices

    @staticmethod
    async def _keep_for_replay(
        session: AsyncSession,
        sender: Sender,
        update_id: int | None,
        replay: bool,
        replies: list[Reply],
    ) -> None:
        """Keep a delivery's replies with its id, so a duplicate gets them again."""
        if replay and update_id is not None:
            records = [reply_record(r) for r in replies]
            await keep_replies(session, sender.channel, update_id, records)

    def _language_of(self, sender: Sender, event: Event) -> str:
        """The conversation's own language (from its saved state) for an error message;
        guessed from the words only for a chat never seen."""
        known = self._languages.get((sender.channel, sender.chat_id))
        if known is not None:
            return known
        return detect_language(event.text) if isinstance(event, TextEvent) else "zh"

    async def _capture(
        self,
        session: AsyncSession,
        sender: Sender,
        before: dict[str, Any],
        after: dict[str, Any],
        event: Event,
    ) -> None:
        """The learning loop's decision points: the first description the model
        classified, and the resident's answer to the kind it proposed (yes, no, or
        another kind picked). Kept masked for the review inbox; a capture error never
        costs the resident their message (a savepoint keeps it out of the turn)."""
        step, next_step = before.get("step"), after.get("step")
        draft = before.get("draft") or {}
        try:
            async with session.begin_nested():
                if (
                    isinstance(event, TextEvent)
                    and event.parse
                    and step in (None, "new", "describe")
                    and next_step in ("confirm_category", "choose_category")
                ):
                    await learning.capture_first_message(
                        session,
                        text=event.text,
                        parse=event.parse,
                        channel=sender.channel,
                        chat_id=sender.chat_id,
                        model_version=getattr(self.nlu, "version", None),
                        thresholds=self.review_thresholds,
                    )
                elif step == "confirm_category" and next_step != "confirm_category":
                    await learning.capture_kind_answer(
                        session,
                        channel=sender.channel,
                        chat_id=sender.chat_id,
                        proposed=draft.get("category"),
                        affirmed=next_step != "choose_category",
                    )
                elif (
                    step == "choose_category"
                    and isinstance(event, ButtonEvent)
                    and event.payload.startswith("cat:")
                ):
                    candidates = draft.get("candidates") or [None]
                    await learning.capture_kind_answer(
                        session,
                        channel=sender.channel,
                        chat_id=sender.chat_id,
                        proposed=draft.get("category") or candidates[0],
                        chosen=event.payload.removeprefix("cat:"),
                    )
        except SQLAlchemyError as error:
            log.warning("capture for review failed: %s", type(error).__name__)

    def _done(
        self, key: tuple[str, str], state: dict[str, Any], version: int, replies: list[Reply]
    ) -> list[Reply]:
        """Remember the saved state and log the step (never the words)."""
        self._remember(key, state, version)
        log.info("chat %s:%s step=%s replies=%d", *key, state.get("step"), len(replies))
        return replies

    async def _relay(
        self,
        session: AsyncSession,
        sender: Sender,
        state: dict[str, Any],
        event: Event,
        notices: list[Notice],
    ) -> tuple[list[Reply], dict[str, Any]] | None:
        """While a mediator works the resident's case, their words go to the mediator.

        Only when no new intake is in progress, and never for commands, buttons or an
        alarm (those still reach the engine: /status and /cancel keep working, and a
        risk is answered at once).
        """
        if state.get("draft") or state.get("comment_for"):
            return None
        text = attachment = None
        flagged = False
        if isinstance(event, TextEvent):
            if not event.text.strip():
                return None
            flagged = bool(event.parse.get("risk", {}).get("flagged"))
            text = event.text
        elif isinstance(event, AttachmentEvent):
            attachment = {
                "kind": event.kind,
                "file_id": event.file_id,
                "size": event.size,
                "mime_type": event.mime_type,
                "file_name": event.file_name,
            }
        else:
            return None
        case = await casework.active_case_for_chat(session, sender.channel, sender.chat_id)
        if case is None or case.mediator is None:
            return None
        actor = Actor("resident", str(case.resident_id))
        data: dict[str, Any] = {"text": text} if text is not None else dict(attachment or {})
        if flagged:
            data["flagged"] = True
        await casework.record_message(session, case, "message_in", actor, data)
        notices.append(
            RelayNotice(case.reference, case.mediator.external_id, text, attachment, flagged)
        )
        if flagged:
            # The mediator sees the message, marked; the engine still answers the danger
            # (help numbers, urgent flag, alert to the centre) as in every other state.
            return None
        # What the mediator said reaches every channel through its output port (the
        # REST bridge's outbox, the callback URL, Telegram, WeChat): nothing to add here.
        replies: list[Reply] = []
        return replies, state

    async def _run(
        self,
        session: AsyncSession,
        action: Action,
        sender: Sender,
        resident: Resident,
        state: dict[str, object],
        notices: list[Notice],
        event: Event | None = None,
    ) -> Event | None:
        """Carry out one action; its result goes back into the engine as an event."""
        language = str(state.get("lang", "zh"))
        try:
            match action:
                case FileCase(draft=draft, reason=reason):
                    filed = await intake.file_case(
                        session,
                        draft,
                        resident=resident,
                        channel=sender.channel,
                        chat_id=sender.chat_id,
                        language=language,
                        vault=self.store.vault,
                        reason=reason,
                        prefix=self.reference_prefix,
                        timezone=self.timezone,
                    )
                    await learning.attach_case_by_reference(
                        session,
                        channel=sender.channel,
                        chat_id=sender.chat_id,
                        reference=filed.reference,
                    )
                    kind = {"emergency": "urgent", "human": "human"}.get(reason, "filed")
                    notices.append(CaseNotice(kind, filed.reference))  # type: ignore[arg-type]
                    return CaseFiled(filed.reference, reason, filed.centre_zh, filed.centre_en)
                case UpdateCase(reference=reference, draft=draft):
                    moved = await intake.update_case(
                        session, reference, draft, resident=resident, vault=self.store.vault
                    )
                    if moved:
                        notices.append(CaseNotice("moved", reference))
                    return None
                case FlagUrgent(reference=reference, kinds=kinds):
                    words = action.words or _event_text(event)
                    moved = await intake.flag_urgent(
                        session,
                        reference,
                        list(kinds),
                        resident,
                        words,
                        street=action.street,
                        community=action.community,
                    )
                    if moved:
                        notices.append(CaseNotice("moved", reference))
                    notices.append(CaseNotice("urgent", reference))
                    return ActionDone("urgent", reference)
                case CaseWords(reference=reference, text=text):
                    relay = await intake.add_words(session, reference, text, resident)
                    if relay is not None:
                        notices.append(RelayNotice(reference, relay, text))
                    return None
                case GiveReferral(topic=topic):
                    chosen = state.get("draft")
                    street = (
                        str(chosen.get("street") or "") or None
                        if isinstance(chosen, dict)
                        else None
                    )
                    await intake.record_referral(
                        session, topic, channel=sender.channel, street=street, language=language
                    )
                    return None
                case RequestHuman(reference=reference):
                    await intake.request_human(session, reference, resident)
                    notices.append(CaseNotice("human", reference))
                    return ActionDone("request_human", reference)
                case AttachEvidence(reference=reference, attachment=attachment):
                    await intake.attach_evidence(session, reference, attachment, resident)
                    return ActionDone("attach", reference)
                case RateCase(reference=reference, rating=rating):
                    try:
                        _, follow_up = await casework.rate(
                            session, reference, rating, (sender.channel, sender.chat_id)
                        )
                    except casework.NotAllowed:
                        return ActionDone("rate_refused", reference)
                    if follow_up:
                        notices.append(CaseNotice("follow_up", reference))
                    return ActionDone("rated", reference)
                case CommentCase(reference=reference, text=text):
                    case = await casework.comment(
                        session, reference, text, (sender.channel, sender.chat_id)
                    )
                    if await casework.follow_up_requested(session, case):
                        # The supervisors were asked at the rating; now the words.
                        notices.append(CaseNotice("follow_up", reference))
                    return None
                case LookupStatus():
                    cases = await intake.lookup_status(session, resident)
                    return StatusResult(
                        tuple(_status_item(item, language, self.timezone) for item in cases)
                    )
        except StoreError as error:
            # A case vanished or refused a change: say so rather than pretend it worked.
            log.warning("action %s failed: %s", type(action).__name__, type(error).__name__)
            return None
        return None


def _permanent(error: BaseException) -> bool:
    """An error that the same message will meet again (a value the database refuses),
    as opposed to one that passes (the database down, a lock, a lost race)."""
    if isinstance(error, IntegrityError | DataError):
        return True  # retried already: a race would have passed on fresh state
    return isinstance(error, StatementError) and not isinstance(
        error, OperationalError | InterfaceError
    )


def _event_text(event: Event | None) -> str:
    return event.text if isinstance(event, TextEvent) else ""


def _status_item(item: dict[str, object], language: str, timezone: str) -> dict[str, object]:
    last = item.get("last_event")
    shown = ""
    if last:
        label = t(f"dialogue.event_names.{last}", language)
        when = datetime.fromisoformat(str(item["last_at"])).astimezone(ZoneInfo(timezone))
        at = when.strftime("%Y-%m-%d %H:%M")
        shown = t("dialogue.status_last", language, event=label, at=at)
    return {**item, "last": shown}
