"""Learning from residents in the workspace: the review inbox, retraining, the gate, models.

Administrators only. Every handler parses the request and calls the same service
functions the command line calls (``tiaojie review …``, ``tiaojie nlu
train|activate|rollback|models``): :mod:`actions.learning` for the inbox and labels,
:mod:`actions.retraining` for training, the gate and the registry. Nothing here decides
anything of its own, so a label or an activation means the same from either desk.

- ``/learn`` lists the inbox most-instructive first; each choice is a POST button (it
  works without JavaScript), and ``learn.js`` adds the keyboard (j/k, 1/2/3, s, n) by
  sending the same forms with ``fetch`` and swapping in the item as the server renders it.
- ``/learn/train`` starts the background training process (never inside the request);
  ``/learn/models/VERSION`` shows its progress live over Server-Sent Events, then the
  evaluation gate's comparison stored with the model.
- ``/learn/models`` is the registry: activate a candidate that passed, override a failed
  gate with a written reason (kept in the model's history), roll back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp_session import get_session
from aiohttp_sse import sse_response
from sqlalchemy.engine import URL

from actions import learning, retraining
from bot.i18n import has, t
from bot.workspace.common import (
    CLOSING,
    FORMS,
    SETTINGS,
    STORE,
    language,
    render,
    requires,
    safe_next,
    viewer,
)
from bot.workspace.security import still_signed_in
from nlu.gate import DISPUTE_PREFIX, MAX_KIND_F1_DROP, MAX_MACRO_F1_DROP
from storage.models import MediatorRole, utcnow
from storage.nlu_registry import ModelStatus, get_model, list_models
from storage.redact import redact_text
from storage.review import CaptureStatus, InboxFilter

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

#: Items on one inbox page: enough to label for a while, small enough to render fast.
PAGE_SIZE = 50
#: The most a bulk label touches at once (the same cap as ``actions.learning``).
BULK_LIMIT = 500
#: How often the progress stream reads the registry row the training process writes.
PROGRESS_SECONDS = 0.5
#: Polls between checks that the viewer is still signed in (as the live queue does).
CHECK_EVERY = 10
#: A ``training`` row younger than this blocks a second start: two trainings at once
#: would halve each other's speed on a small server. An older one is a crashed job.
TRAINING_STALE = timedelta(hours=1)
VERSION = re.compile(r"^[A-Za-z0-9._-]{1,80}$")
INTENT = re.compile(r"^[A-Za-z0-9_]{1,64}$")
STATUSES = ("open", "labelled", "skipped", "not_real", "all")
FINAL = (ModelStatus.CANDIDATE.value, ModelStatus.FAILED.value)
_intents: dict[str, list[str] | None] = {}


class BadInput(ValueError):
    """A filter or form field that makes no sense; answered with a polite 400."""


# ------------------------------------------------------------------------------ helpers


def who(request: web.Request) -> str:
    """How a web label or activation names its author: ``web:<username>`` (the CLI
    writes ``cli:<login>``), within the registry's 64 characters."""
    return f"web:{viewer(request).user.username}"[:64]


async def intents() -> list[str] | None:
    """Intents an item may be labelled with (those of the training data), read once per
    process in a thread; None when the data cannot be read (any label is then taken)."""
    if "known" not in _intents:
        found = await asyncio.to_thread(learning.known_intents)
        _intents["known"] = sorted(found) if found is not None else None
    return _intents["known"]


def intent_name(request: web.Request, intent: str, lang: str) -> str:
    """A readable name next to the code: the form's title for a dispute kind."""
    forms = request.app[FORMS]
    if intent in forms.by_category:
        return f"{intent} · {forms.by_category[intent].title.get(lang)}"
    if has(f"workspace.kinds.{intent}", lang):
        return f"{intent} · {t(f'workspace.kinds.{intent}', lang)}"
    return intent


async def page(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """:func:`render` with ``lt`` (this feature's catalogue block) and intent names."""
    lang = await language(request)
    base: dict[str, Any] = {
        "lt": lambda key, **values: t(f"learn.{key}", lang, **values),
        "intent_name": lambda intent: intent_name(request, intent, lang),
        "parse_time": _parse_time,
    }
    base.update(context)
    return await render(request, template, base, status)


async def say(request: web.Request, key: str, kind: str = "ok", **values: Any) -> None:
    """A message shown once on the next page (this feature's catalogue block)."""
    lang = await language(request)
    session = await get_session(request)
    session["flash"] = {"kind": kind, "text": t(f"learn.{key}", lang, **values)}


def fetched(request: web.Request) -> bool:
    """Sent by ``learn.js`` (answered with a fragment), not by a plain form."""
    return request.headers.get("X-Requested-With") == "fetch"


async def refused(request: web.Request, status: int, message: str) -> web.Response:
    """A polite refusal with its reason: plain text for ``learn.js``, else a page."""
    if fetched(request):
        return web.Response(status=status, text=message)
    return await page(request, "learn_error.html", {"status": status, "message": message}, status)


async def learning_refused(request: web.Request, error: learning.LearningError) -> web.Response:
    """A service refusal (unknown item, unknown intent, gate failed …) in the viewer's
    language; the gate's own message names the web form's field, not the CLI option."""
    lang = await language(request)
    key = "learn.errors.gate_failed" if error.key == "review.gate_failed" else error.key
    status = 404 if error.key in ("review.not_found", "review.model_not_found") else 400
    return await refused(request, status, t(key, lang, **error.values))


async def bad_input(request: web.Request) -> web.Response:
    return await refused(request, 400, t("learn.errors.bad_input", await language(request)))


def filters_from(query: Mapping[str, str], known: list[str] | None) -> tuple[InboxFilter, dict]:
    """The inbox filter a query (or a bulk form) asks for, and the values to show.

    Raises :class:`BadInput` for a status, signal or intent that does not exist."""
    status = (query.get("status") or "open").strip()
    signal = (query.get("signal") or "").strip()
    predicted = (query.get("predicted") or "").strip()
    search = (query.get("q") or "").strip()
    if status not in STATUSES:
        raise BadInput("status")
    if signal and signal not in learning.SIGNALS:
        raise BadInput("signal")
    if predicted and (
        not INTENT.match(predicted) or (known is not None and predicted not in known)
    ):
        raise BadInput("predicted")
    if len(search) > 200:
        raise BadInput("q")
    filters = InboxFilter(
        status=None if status == "all" else CaptureStatus(status),
        search=search or None,
        signal=signal or None,
        predicted=predicted or None,
    )
    shown = {"status": status, "signal": signal, "predicted": predicted, "q": search}
    return filters, shown


def query_string(shown: Mapping[str, str]) -> str:
    return urlencode({k: v for k, v in shown.items() if v and not (k == "status" and v == "open")})


# -------------------------------------------------------------------------------- inbox


@routes.get("/learn")
@requires(MediatorRole.ADMIN)
async def inbox(request: web.Request) -> web.Response:
    """The review inbox: disagreements first, then the smallest margins."""
    known = await intents()
    try:
        filters, shown = filters_from(request.query, known)
    except BadInput:
        return await bad_input(request)
    async with request.app[STORE].sessions() as session:
        items = await learning.inbox(session, filters, PAGE_SIZE)
    narrowed = bool(filters.search or filters.signal or filters.predicted)
    return await page(
        request,
        "learn_inbox.html",
        {
            "items": items,
            "shown": shown,
            "statuses": STATUSES,
            "signals": sorted(learning.SIGNALS),
            "intents": known or [],
            "narrowed": narrowed,
            "here": request.path_qs,
            "page_size": PAGE_SIZE,
        },
    )


@routes.post("/learn/items/{capture_id:\\d+}")
@requires(MediatorRole.ADMIN)
async def label_item(request: web.Request) -> web.StreamResponse:
    """One choice on one item: an intent (``intent``) or ``status`` skipped / not_real."""
    form = await request.post()
    intent = str(form.get("intent") or "").strip()
    status = str(form.get("status") or "").strip()
    capture_id = int(request.match_info["capture_id"])
    if bool(intent) == bool(status) or (status and status not in ("skipped", "not_real")):
        return await bad_input(request)
    if intent and not INTENT.match(intent):
        return await bad_input(request)
    known = await intents()
    try:
        async with request.app[STORE].sessions.begin() as session:
            if intent:
                item = await learning.label(
                    session, capture_id, intent, by=who(request), allowed=known
                )
            else:
                item = await learning.set_status(
                    session, capture_id, CaptureStatus(status), by=who(request)
                )
    except learning.LearningError as error:
        return await learning_refused(request, error)
    log.info(
        "review item %s %s by workspace user %s", capture_id, item.status, viewer(request).user.id
    )
    if fetched(request):
        return await page(request, "learn_item.html", {"item": item, "intents": known or []})
    if intent:
        await say(request, "flash.labelled", id=capture_id, intent=intent)
    else:
        await say(request, f"flash.{status}", id=capture_id)
    raise web.HTTPSeeOther(safe_next(str(form.get("next") or "/desk/learn")))


@routes.post("/learn/bulk")
@requires(MediatorRole.ADMIN)
async def bulk(request: web.Request) -> web.Response:
    """Label every item a search finds with one intent: first a confirmation page with
    the count and the first items, then (``confirm=1``) the labels."""
    form = await request.post()
    known = await intents()
    values = {k: str(form.get(k) or "") for k in ("status", "signal", "predicted", "q")}
    intent = str(form.get("intent") or "").strip()
    try:
        filters, shown = filters_from(values, known)
    except BadInput:
        return await bad_input(request)
    lang = await language(request)
    if not (filters.search or filters.signal or filters.predicted):
        return await refused(request, 400, t("learn.errors.bulk_needs_filter", lang))
    if not INTENT.match(intent) or (known is not None and intent not in known):
        return await refused(request, 400, t("review.unknown_intent", lang, intent=intent[:64]))
    back = "/desk/learn" + (f"?{query_string(shown)}" if query_string(shown) else "")
    if form.get("confirm") != "1":
        async with request.app[STORE].sessions() as session:
            matching = await learning.inbox(session, filters, BULK_LIMIT)
        if not matching:
            return await refused(request, 400, t("learn.errors.bulk_nothing", lang))
        return await page(
            request,
            "learn_bulk.html",
            {
                "count": len(matching),
                "capped": len(matching) >= BULK_LIMIT,
                "sample": matching[:10],
                "intent": intent,
                "shown": shown,
                "back": back,
            },
        )
    try:
        async with request.app[STORE].sessions.begin() as session:
            count = await learning.bulk_label(
                session, filters, intent, by=who(request), allowed=known, limit=BULK_LIMIT
            )
    except learning.LearningError as error:
        return await learning_refused(request, error)
    log.info("bulk label: %d items by workspace user %s", count, viewer(request).user.id)
    await say(request, "flash.bulk", count=count, intent=intent)
    raise web.HTTPSeeOther(back)


# ------------------------------------------------------------------------------- models


def _version(request: web.Request) -> str:
    version = request.match_info["version"]
    if not VERSION.match(version):
        raise web.HTTPNotFound()
    return version


@routes.get("/learn/models")
@requires(MediatorRole.ADMIN)
async def models(request: web.Request) -> web.Response:
    """The registry: every model with its fingerprint, metrics, gate and history."""
    async with request.app[STORE].sessions() as session:
        found = await list_models(session)
        rows = [
            {**retraining.describe(row), "data_fingerprint": row.data_fingerprint} for row in found
        ]
    has_active = any(row["status"] == ModelStatus.ACTIVE.value for row in rows)
    return await page(
        request,
        "learn_models.html",
        {
            "models": rows,
            "has_active": has_active,
            "min_reason": retraining.MIN_REASON_CHARS,
        },
    )


def _parse_time(value: str | None) -> datetime | None:
    """``describe()`` gives ISO times; the page shows them in the configured zone."""
    return datetime.fromisoformat(value) if value else None


async def _running_job(request: web.Request) -> str | None:
    """A training job started less than :data:`TRAINING_STALE` ago, if any."""
    async with request.app[STORE].sessions() as session:
        rows = await list_models(session, limit=20)
    now = utcnow()
    for row in rows:
        if row.status == ModelStatus.TRAINING and now - row.trained_at < TRAINING_STALE:
            return row.version
    return None


def _child_url(url: URL) -> str:
    """The database URL for the training process: the very database this workspace
    reads, with a relative SQLite path made absolute (the child runs in the project
    folder, which need not be this server's working directory)."""
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        url = url.set(database=str(Path(url.database).resolve()))
    return url.render_as_string(hide_password=False)


@routes.post("/learn/train")
@requires(MediatorRole.ADMIN)
async def train(request: web.Request) -> web.Response:
    """Start training in a background process (as ``tiaojie nlu train --include-reviewed
    --job``) and show its progress; the request only registers the row."""
    running = await _running_job(request)
    if running is not None:
        await say(request, "flash.already_training", "warn", version=running)
        raise web.HTTPSeeOther(f"/desk/learn/models/{running}")
    store = request.app[STORE]
    settings = request.app[SETTINGS]
    url = await asyncio.to_thread(_child_url, store.engine.url)
    models_dir = await asyncio.to_thread(Path(settings.model_dir).resolve)
    async with store.sessions.begin() as session:
        job = await retraining.start_training(
            session, database_url=url, by=who(request), models_dir=models_dir
        )
    log.info("training %s started by workspace user %s", job.version, viewer(request).user.id)
    await say(request, "flash.training", version=job.version)
    raise web.HTTPSeeOther(f"/desk/learn/models/{job.version}")


@routes.get("/learn/models/{version}")
@requires(MediatorRole.ADMIN)
async def model(request: web.Request) -> web.Response:
    """One model: its progress while training, then the gate's comparison."""
    version = _version(request)
    async with request.app[STORE].sessions() as session:
        row = await get_model(session, version)
        if row is None:
            lang = await language(request)
            return await refused(request, 404, t("review.model_not_found", lang, version=version))
        described = retraining.describe(row)
        gate = row.gate or {}
        fingerprint = row.data_fingerprint
    return await page(
        request,
        "learn_model.html",
        {
            "model": described,
            "fingerprint": fingerprint,
            "datasets": [_dataset_view(d) for d in gate.get("datasets", [])],
            "gate": gate,
            "min_reason": retraining.MIN_REASON_CHARS,
            "rules": {"macro": MAX_MACRO_F1_DROP, "kind": MAX_KIND_F1_DROP},
        },
    )


def _dataset_view(data: Mapping[str, Any]) -> dict[str, Any]:
    """One data set of the stored gate, ready to show: deltas classed, dispute kinds'
    drops listed, changed messages masked (held-out files are ours, the slice is
    already masked; masking again costs nothing and guards both)."""
    per_intent = []
    for row in data.get("per_intent", []):
        delta = float(row.get("delta") or 0)
        dispute = str(row.get("intent", "")).startswith(DISPUTE_PREFIX)
        fell = dispute and delta < -MAX_KIND_F1_DROP
        per_intent.append(
            {
                **row,
                "dispute": dispute,
                "fell": fell,
                "trend": "fell" if fell else "down" if delta < 0 else "up" if delta > 0 else "same",
            }
        )
    drops = [r for r in per_intent if r["dispute"] and float(r["delta"]) < 0]
    changed = [{**c, "text": redact_text(str(c.get("text", "")))} for c in data.get("changed", [])]
    macro = data.get("macro_f1") or {}
    macro_delta = (
        round(float(macro["candidate"]) - float(macro["active"]), 4)
        if "active" in macro and "candidate" in macro
        else None
    )
    return {
        **data,
        "per_intent": per_intent,
        "drops": sorted(drops, key=lambda r: float(r["delta"])),
        "changed": changed,
        "macro_delta": macro_delta,
    }


@routes.get("/learn/models/{version}/live")
@requires(MediatorRole.ADMIN)
async def live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the training row's status, progress and stage, until it is
    a candidate or failed (the training process writes them; any process may serve)."""
    version = _version(request)
    store = request.app[STORE]
    lang = await language(request)
    async with sse_response(request) as stream:
        polls = 0
        sent = None
        while stream.is_connected():
            polls += 1
            if polls % CHECK_EVERY == 0 and not await still_signed_in(
                store, request.app[SETTINGS], await get_session(request)
            ):
                break
            async with store.sessions() as session:
                status = await retraining.training_status(session, version)
            if status is None:
                await stream.send(json.dumps({"status": "missing"}), event="progress")
                break
            shown = _progress_event(status, lang)
            if shown != sent:
                await stream.send(json.dumps(shown, ensure_ascii=False), event="progress")
                sent = shown
            if status["status"] != ModelStatus.TRAINING.value:
                break
            try:  # the server's shutdown ends the stream at once
                await asyncio.wait_for(request.app[CLOSING].wait(), PROGRESS_SECONDS)
                break
            except TimeoutError:
                pass
    return stream


def _progress_event(status: Mapping[str, Any], lang: str) -> dict[str, Any]:
    """What the page shows, already translated (the script only places it)."""
    stage = str(status.get("stage") or "")
    state = str(status["status"])
    verdict = None
    if state == ModelStatus.CANDIDATE.value:
        verdict = t("learn.gate.passed" if status.get("gate_passed") else "learn.gate.failed", lang)
    return {
        "status": state,
        "status_label": t(f"learn.model_status.{state}", lang),
        "progress": round(float(status.get("progress") or 0), 3),
        "stage": stage,
        "stage_label": t(f"learn.stages.{stage}", lang) if stage else "",
        "final": state != ModelStatus.TRAINING.value,
        "verdict": verdict,
        "error": status.get("error"),
    }


@routes.post("/learn/models/{version}/activate")
@requires(MediatorRole.ADMIN)
async def activate(request: web.Request) -> web.Response:
    """Activate a candidate whose gate passed; a failed gate needs ``reason`` (the
    override and its reason go into the model's history, as from the CLI)."""
    version = _version(request)
    reason = str((await request.post()).get("reason") or "").strip()[:2000] or None
    try:
        async with request.app[STORE].sessions.begin() as session:
            row = await retraining.activate(
                session, version, by=who(request), override_reason=reason
            )
            overridden = bool(row.override_reason)
    except learning.LearningError as error:
        return await learning_refused(request, error)
    log.info(
        "model %s activated by workspace user %s%s",
        version,
        viewer(request).user.id,
        " (gate overridden)" if overridden else "",
    )
    await say(request, "flash.activated", version=version)
    raise web.HTTPSeeOther("/desk/learn/models")


@routes.post("/learn/rollback")
@requires(MediatorRole.ADMIN)
async def rollback(request: web.Request) -> web.Response:
    """Re-activate the model that was active before the current one."""
    try:
        async with request.app[STORE].sessions.begin() as session:
            row = await retraining.rollback(session, by=who(request))
            version = row.version
    except learning.LearningError as error:
        return await learning_refused(request, error)
    log.info("model rolled back to %s by workspace user %s", version, viewer(request).user.id)
    await say(request, "flash.rolled_back", version=version)
    raise web.HTTPSeeOther("/desk/learn/models")
