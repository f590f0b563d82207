"""Sign-in, the queue and the case page: parse the request, call one service, render."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import mimetypes
import re
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_session import get_session
from aiohttp_sse import sse_response
from sqlalchemy import select

from actions import casework
from actions import workspace_actions as desk
from actions.casework import NotAllowed
from actions.desk import DeskService
from actions.reveal import Revealed, may_reveal
from actions.reveal import reveal as reveal_case
from bot.i18n import t
from bot.workspace.common import (
    ALL_ROLES,
    CLOSING,
    DESK,
    FETCH_FILE,
    FORMS,
    SETTINGS,
    STAFF,
    STORE,
    flash,
    language,
    refuse,
    render,
    requires,
    safe_next,
    viewer,
)
from bot.workspace.passwords import acceptable, hash_password, verify_password
from bot.workspace.security import end_session, start_session, still_signed_in
from storage import accounts
from storage.cases import Actor
from storage.errors import (
    AlreadyClaimed,
    CaseNotFound,
    CentreNotFound,
    InvalidTransition,
    MediatorInactive,
)
from storage.models import Case, CaseEvent, CaseStatus, Centre, CentreLevel, Outcome, RiskLevel
from storage.summons import SummonsState

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
REFERENCE = re.compile(r"^[A-Za-z]{2,6}-\d{8}-\d{4,6}$")
PAGE_SIZE = 25
#: How often the live views look for new timeline events (any process may write them).
POLL_SECONDS = 1.0
#: How many polls between checks that the viewer is still signed in (disabled users).
CHECK_EVERY = 5
SHA256 = re.compile(r"^(local|wechat):([0-9a-f]{64})$")


# ------------------------------------------------------------------------------ sign-in


@routes.get("/signin")
async def signin_page(request: web.Request) -> web.Response:
    return await render(request, "signin.html", {"next": safe_next(request.query.get("next"))})


@routes.post("/signin")
async def signin(request: web.Request) -> web.Response:
    form = await request.post()
    username = str(form.get("username") or "").strip().lower()[:64]
    password = str(form.get("password") or "")
    target = safe_next(str(form.get("next") or ""))
    store = request.app[STORE]
    async with store.sessions.begin() as session:
        if await accounts.locked_out(session, username):
            await accounts.record_attempt(session, username, False, request.remote)
            return await render(
                request, "signin.html", {"next": target, "error": "signin.locked"}, 429
            )
        user = await accounts.find_user(session, username)
    # Hashing takes a quarter second: off the event loop, outside any transaction.
    ok = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
    ok = ok and user is not None and user.active
    async with store.sessions.begin() as session:
        await accounts.record_attempt(session, username, ok, request.remote)
        if ok and user is not None:
            found = await accounts.get_user(session, user.id)
            if found is not None:
                found.last_sign_in = datetime.now(ZoneInfo("UTC"))
    if not ok or user is None:
        log.info("workspace sign-in refused for a user name")
        return await render(request, "signin.html", {"next": target, "error": "signin.wrong"}, 401)
    await start_session(request, user)
    raise web.HTTPSeeOther(target)


@routes.post("/signout")
async def signout(request: web.Request) -> web.Response:
    await end_session(request)
    raise web.HTTPSeeOther("/desk/signin")


@routes.get("/link/{token}")
async def link_page(request: web.Request) -> web.Response:
    async with request.app[STORE].sessions() as session:
        user = await accounts.peek_link(session, request.match_info["token"])
    if user is None:
        return await refuse(request, 404, "workspace.errors.link")
    return await render(request, "link.html", {"username": user.username})


@routes.post("/link/{token}")
async def link_use(request: web.Request) -> web.Response:
    form = await request.post()
    password = str(form.get("password") or "")
    if not acceptable(password) or password != str(form.get("again") or ""):
        async with request.app[STORE].sessions() as session:
            user = await accounts.peek_link(session, request.match_info["token"])
        if user is None:
            return await refuse(request, 404, "workspace.errors.link")
        return await render(
            request, "link.html", {"username": user.username, "error": "link.weak"}, 400
        )
    hashed = await asyncio.to_thread(hash_password, password)
    async with request.app[STORE].sessions.begin() as session:
        user = await accounts.use_link(session, request.match_info["token"])
        if user is None:
            return await refuse(request, 404, "workspace.errors.link")
        await accounts.set_password(session, user, hashed)
    await start_session(request, user)
    raise web.HTTPSeeOther("/desk/")


@routes.post("/lang")
async def switch_language(request: web.Request) -> web.Response:
    form = await request.post()
    chosen = "en" if form.get("to") == "en" else "zh"
    session = await get_session(request)
    session["lang"] = chosen
    raise web.HTTPSeeOther(safe_next(str(form.get("next") or "")))


# -------------------------------------------------------------------------------- queue


def parse_filters(request: web.Request, default_open: bool = True) -> desk.Filters:
    """Query-string filters; anything malformed is ignored rather than an error."""
    query = request.query
    statuses = tuple(CaseStatus(s) for s in query.getall("status", []) if s in _values(CaseStatus))
    if not statuses and default_open and query.get("all") != "1":
        statuses = desk.open_statuses()
    risk = query.get("risk")
    zone = ZoneInfo(request.app[SETTINGS].timezone)
    return desk.Filters(
        statuses=statuses,
        category=query.get("kind") or None,
        risk=RiskLevel(risk) if risk in _values(RiskLevel) else None,
        street=query.get("street") or None,
        community=query.get("community") or None,
        since=_date(query.get("from"), zone),
        until=_date(query.get("to"), zone, next_day=True),
        search=(query.get("q") or "").strip()[:100] or None,
        centre_code=query.get("centre") or None,
        mine=query.get("mine") == "1",
    )


def _values(kind: type[StrEnum]) -> set[str]:
    return {member.value for member in kind}


def _date(value: str | None, zone: ZoneInfo, next_day: bool = False) -> datetime | None:
    try:
        day = datetime.strptime(value or "", "%Y-%m-%d").replace(tzinfo=zone)
    except ValueError:
        return None
    return day + timedelta(days=1) if next_day else day


def _page(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("page", "1")), 10_000))
    except ValueError:
        return 1


def kind_name(request: web.Request, category: str, lang: str) -> str:
    forms = request.app[FORMS]
    if category in forms.by_category:
        return forms.by_category[category].title.get(lang)
    return t(f"workspace.kinds.{category}", lang)


async def _listing(request: web.Request) -> dict[str, Any]:
    me = viewer(request)
    filters = parse_filters(request)
    lang = await language(request)
    async with request.app[STORE].sessions() as session:
        if filters.mine:  # cases the same person took on Telegram count as theirs too
            ids = tuple(await accounts.linked_mediator_ids(session, me.user))
            filters = dataclasses.replace(filters, mine_ids=ids)
        page = await desk.list_cases(
            session, me.mediator, filters, page=_page(request), page_size=PAGE_SIZE
        )
        streets = list(
            (
                await session.execute(
                    select(Centre).where(Centre.level == CentreLevel.STREET).order_by(Centre.id)
                )
            ).scalars()
        )
        last = await desk.last_event_id(session)
    rows = [_row(request, case, lang) for case in page.items]
    kinds = [(c, kind_name(request, c, lang)) for c in request.app[FORMS].categories]
    kinds += [(c, kind_name(request, c, lang)) for c in ("emergency", "legal_consultation")]
    query = request.query
    return {
        "rows": rows,
        "page": page,
        "filters": filters,
        "kinds": kinds,
        "streets": [s.street for s in streets if s.street],
        "statuses": list(CaseStatus),
        "risks": list(RiskLevel),
        "query": query,
        "last_event": last,
        "qs": urlencode([(k, v) for k, v in query.items() if k != "page"]),
    }


def _row(request: web.Request, case: Case, lang: str) -> dict[str, Any]:
    return {
        "reference": case.reference,
        "kind": kind_name(request, case.category, lang),
        "status": case.status.value,
        "risk": case.risk_level.value,
        "place": " ".join(x for x in (case.street, case.community) if x) or "-",
        "summary": desk.mask_numbers(case.summary or case.resident_words)[:120],
        "phone": case.phone_masked or "-",
        "holder": case.mediator.display_alias if case.mediator else None,
        "created": case.created_at,
        "channel": case.channel,
    }


@routes.get("/")
@requires(*ALL_ROLES)
async def queue(request: web.Request) -> web.Response:
    return await render(request, "queue.html", await _listing(request))


@routes.get("/rows")
@requires(*ALL_ROLES)
async def queue_rows(request: web.Request) -> web.Response:
    """The queue's table alone, for the live refresh."""
    return await render(request, "_rows.html", await _listing(request))


@routes.get("/live")
@requires(*ALL_ROLES)
async def queue_live(request: web.Request) -> web.StreamResponse:
    return await _stream(request, None)


async def _stream(request: web.Request, reference: str | None) -> web.StreamResponse:
    """Server-Sent Events: one ``change`` per new timeline event the viewer may see.

    Only references, kinds and risk travel; the page fetches what changed through its
    own authorised routes. It polls the store, so writes of other processes show too.
    """
    me = viewer(request)
    store = request.app[STORE]
    try:
        after = int(request.headers.get("Last-Event-ID") or request.query.get("after", "0"))
    except ValueError:
        after = 0
    async with sse_response(request) as stream:
        if after <= 0:
            async with store.sessions() as session:
                after = await desk.last_event_id(session)
        polls = 0
        while stream.is_connected():
            polls += 1
            if polls % CHECK_EVERY == 0 and not await still_signed_in(
                store, request.app[SETTINGS], await get_session(request)
            ):
                break  # disabled or signed out elsewhere: the stream ends too
            async with store.sessions() as session:
                after, changes = await desk.changes_since(session, me.mediator, after, reference)
            for ref, kind, risk in changes:
                await stream.send(f"{ref} {kind} {risk}", event="change", id=str(after))
            try:  # the server's shutdown ends every stream at once
                await asyncio.wait_for(request.app[CLOSING].wait(), POLL_SECONDS)
                break
            except TimeoutError:
                pass
    return stream


# ---------------------------------------------------------------------------- case page


def _reference(request: web.Request) -> str:
    reference = request.match_info["ref"]
    if not REFERENCE.match(reference):
        raise web.HTTPNotFound()
    return reference.upper()


async def _case_context(
    request: web.Request, revealed: Revealed | None = None
) -> dict[str, Any] | web.Response:
    """The case page's data: personal numbers masked, or — ``revealed``, for the case's
    own mediator after the audited click — the phone and the words as said."""
    me = viewer(request)
    lang = await language(request)
    reference = _reference(request)
    store = request.app[STORE]
    try:
        async with store.sessions.begin() as session:
            case, events, summons = await desk.open_case(session, reference, me.mediator)
            network = await casework.Network.load(session)
            departments = await desk.department_users(session)
            mediators = {
                m.id: m.display_alias
                for m in (await session.execute(select(casework.Mediator))).scalars()
            }
    except CaseNotFound:
        return await refuse(request, 404, "workspace.errors.no_case")
    except NotAllowed:
        log.warning("workspace: case %s refused to mediator %s", reference, me.mediator.id)
        return await refuse(request, 403, "workspace.errors.forbidden")
    order = {CentreLevel.DISTRICT: 0, CentreLevel.STREET: 1, CentreLevel.COMMUNITY: 2}
    centres = sorted(
        (c for c in network.by_id.values() if c.active), key=lambda c: (order[c.level], c.code)
    )
    forms = request.app[FORMS]
    form = forms.by_category.get(case.category)
    labels = {s.name: s.label.get(lang) for s in form.slots} if form else {}
    fields = revealed.fields if revealed else (case.fields or {})
    shown = (lambda text: text) if revealed else desk.mask_numbers
    return {
        "case": case,
        "kind": kind_name(request, case.category, lang),
        "events": [
            _event_view(e, mediators, revealed.data_of(e) if revealed else None) for e in events
        ],
        "summons": summons,
        "summons_answer": {k: v[1] for k, v in revealed.summons.items()} if revealed else {},
        "my_summons": next(
            (s for s in summons if s.department_mediator_id == me.mediator.id), None
        ),
        "fields": [(labels.get(k, k), shown(str(v))) for k, v in fields.items()],
        "words": revealed.words if revealed else desk.mask_numbers(case.resident_words),
        "phone": (revealed.phone or "-") if revealed else None,
        "revealed": revealed is not None,
        "may_reveal": may_reveal(case, me.mediator) and _has_personal(case, events, summons),
        "is_mine": case.mediator_id == me.mediator.id,
        "may_work": desk.may_work(me.mediator, case, network),
        "may_claim": case.status == CaseStatus.NEW
        and case.mediator_id is None
        and casework.may_claim(me.mediator, case, network),
        "is_department": me.role.value == "department",
        "centres": centres,
        "departments": departments,
        "kinds": [(c, kind_name(request, c, lang)) for c in forms.categories],
        "outcomes": [o for o in Outcome if o != Outcome.WITHDRAWN],
        "next_statuses": _next_statuses(case.status),
        "last_event": max((e.id for e in events), default=0),
    }


def _next_statuses(status: CaseStatus) -> list[str]:
    from storage.cases import TRANSITIONS

    return [s.value for s in TRANSITIONS[status] if s not in (CaseStatus.NEW, CaseStatus.CLAIMED)]


def _has_personal(case: Case, events: list[CaseEvent], summons: list[Any]) -> bool:
    """Whether anything of the case is kept sealed (a reveal would show more)."""
    return bool(
        case.phone_encrypted
        or case.resident_words_sealed
        or case.summary_sealed
        or case.fields_sealed
        or case.rating_comment_sealed
        or any(e.data_sealed for e in events)
        or any(s.request_sealed or s.answer_sealed for s in summons)
    )


def _event_view(
    event: CaseEvent, mediators: dict[int, str], original: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One timeline entry for the page; ``original``: its data as written (revealed)."""
    data = dict(event.data or {}) if original is None else dict(original)
    who = event.actor_type
    if event.actor_type == "mediator" and event.actor_id and event.actor_id.isdigit():
        who = mediators.get(int(event.actor_id), who)
    text = data.get("text")
    return {
        "id": event.id,
        "kind": event.kind,
        "who": who,
        "actor_type": event.actor_type,
        "at": event.created_at,
        "text": (str(text) if original is not None else desk.mask_numbers(str(text)))
        if text
        else None,
        "file": data.get("kind") if data.get("file_id") else None,
        "file_name": data.get("file_name"),
        "data": {
            k: v
            for k, v in data.items()
            if k not in ("text", "file_id", "chat_id", "message_id", "size")
        },
    }


@routes.get("/cases/{ref}")
@requires(*ALL_ROLES)
async def case_page(request: web.Request) -> web.Response:
    context = await _case_context(request)
    if isinstance(context, web.Response):
        return context
    return await render(request, "case.html", context)


@routes.get("/cases/{ref}/timeline")
@requires(*ALL_ROLES)
async def case_timeline(request: web.Request) -> web.Response:
    """The timeline alone, for the live refresh (the refresh is not a new 'view')."""
    me = viewer(request)
    reference = _reference(request)
    try:
        async with request.app[STORE].sessions() as session:
            case = await desk.visible_case(session, reference, me.mediator)
            events = await casework.case_repo.case_events(session, case)
            mediators = {
                m.id: m.display_alias
                for m in (await session.execute(select(casework.Mediator))).scalars()
            }
    except CaseNotFound:
        return await refuse(request, 404, "workspace.errors.no_case")
    except NotAllowed:
        return await refuse(request, 403, "workspace.errors.forbidden")
    views = [_event_view(e, mediators) for e in events]
    return await render(request, "_timeline.html", {"case": case, "events": views})


@routes.get("/cases/{ref}/live")
@requires(*ALL_ROLES)
async def case_live(request: web.Request) -> web.StreamResponse:
    me = viewer(request)
    reference = _reference(request)
    try:
        async with request.app[STORE].sessions() as session:
            await desk.visible_case(session, reference, me.mediator)
    except (CaseNotFound, NotAllowed):
        return await refuse(request, 403, "workspace.errors.forbidden")
    return await _stream(request, reference)


@routes.get("/cases/{ref}/evidence/{event_id:\\d+}")
@requires(*ALL_ROLES)
async def evidence(request: web.Request) -> web.StreamResponse:
    """A photo or document of the case, for those who may see the case only."""
    me = viewer(request)
    reference = _reference(request)
    try:
        async with request.app[STORE].sessions.begin() as session:
            case = await desk.visible_case(session, reference, me.mediator)
            item = await session.get(CaseEvent, int(request.match_info["event_id"]))
            if item is None or item.case_id != case.id or not (item.data or {}).get("file_id"):
                return await refuse(request, 404, "workspace.errors.no_file")
            await casework.case_repo.add_event(
                session, case, "evidence_viewed", Actor.of(me.mediator), {"event": item.id}
            )
    except CaseNotFound:
        return await refuse(request, 404, "workspace.errors.no_case")
    except NotAllowed:
        return await refuse(request, 403, "workspace.errors.forbidden")
    data = item.data or {}
    file_id = str(data["file_id"])
    body = await _file_bytes(request, file_id)
    if body is None:
        return await refuse(request, 404, "workspace.errors.no_file")
    mime = str(data.get("mime_type") or "") or (
        "image/jpeg" if data.get("kind") == "photo" else "application/octet-stream"
    )
    name = str(data.get("file_name") or f"{reference}-{item.id}")
    inline = mime.startswith("image/") and mime != "image/svg+xml"
    headers = {
        "Content-Disposition": ("inline" if inline else "attachment")
        + f"; filename*=UTF-8''{_quote(name)}",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    return web.Response(
        body=body, content_type=mime if inline else _safe_mime(mime, name), headers=headers
    )


def _quote(name: str) -> str:
    return quote(name, safe="")


def _safe_mime(mime: str, name: str) -> str:
    return mime if "/" in mime else (mimetypes.guess_type(name)[0] or "application/octet-stream")


async def _file_bytes(request: web.Request, file_id: str) -> bytes | None:
    found = SHA256.match(file_id)
    if found:
        folder = Path(request.app[SETTINGS].data_dir) / "evidence"
        for path in (folder / found.group(2), *sorted(folder.glob(found.group(2) + ".*"))):
            if path.is_file():
                return path.read_bytes()
        return None
    fetch = request.app.get(FETCH_FILE)
    if fetch is None:
        return None
    return await fetch(file_id)  # type: ignore[operator,no-any-return]


# ------------------------------------------------------------------------- case actions


async def _act(request: web.Request, work: Any, ok_key: str, **values: Any) -> web.Response:
    """One change written here in a transaction (``work(session, reference, mediator)``,
    for what the desk service does not do: summons, report-back); answered like
    :func:`_desk_act`. A callable result runs after the commit."""
    store = request.app[STORE]

    async def call(_service: DeskService, reference: str, mediator: Any) -> None:
        async with store.sessions.begin() as session:
            result = await work(session, reference, mediator)
        if callable(result):
            await result()

    return await _desk_act(request, call, ok_key, **values)


async def _desk_act(request: web.Request, call: Any, ok_key: str, **values: Any) -> web.Response:
    """One change through the desk service (its own transaction; the resident and the
    cards are told after the commit, as from the Telegram desk); answer with the case
    page and a message. ``call(desk, reference, mediator)`` may return a flash key."""
    service = request.app[DESK]
    me = viewer(request)
    reference = _reference(request)
    target = f"/desk/cases/{reference}"
    try:
        result = await call(service, reference, me.mediator)
    except CaseNotFound:
        return await refuse(request, 404, "workspace.errors.no_case")
    except NotAllowed:
        return await refuse(request, 403, "workspace.errors.forbidden")
    except AlreadyClaimed as error:
        await flash(request, "flash.already_claimed", "warn", alias=error.claimed_by or "-")
        raise web.HTTPSeeOther(target) from None
    except (InvalidTransition, MediatorInactive):
        await flash(request, "flash.invalid", "warn")
        raise web.HTTPSeeOther(target) from None
    except (ValueError, CentreNotFound):
        await flash(request, "flash.bad_input", "warn")
        raise web.HTTPSeeOther(target) from None
    if isinstance(result, str) and result.startswith("flash."):
        await flash(request, result, "warn")
    else:
        await flash(request, ok_key, **values)
    raise web.HTTPSeeOther(target)


async def _field(request: web.Request, name: str, limit: int = 4000) -> str:
    value = str((await request.post()).get(name) or "").strip()
    if not value:
        raise ValueError(name)
    return value[:limit]


@routes.post("/cases/{ref}/claim")
@requires(*STAFF)
async def claim(request: web.Request) -> web.Response:
    return await _desk_act(request, lambda d, r, m: d.claim(r, m), "flash.claimed")


@routes.post("/cases/{ref}/release")
@requires(*STAFF)
async def release(request: web.Request) -> web.Response:
    return await _desk_act(request, lambda d, r, m: d.release(r, m), "flash.released")


@routes.post("/cases/{ref}/note")
@requires(*ALL_ROLES)
async def add_note(request: web.Request) -> web.Response:
    try:
        text = await _field(request, "text")
    except ValueError:
        return await refuse(request, 400, "workspace.errors.empty")
    return await _desk_act(request, lambda d, r, m: d.note(r, m, text), "flash.noted")


@routes.post("/cases/{ref}/reply")
@requires(*STAFF)
async def send_reply(request: web.Request) -> web.Response:
    try:
        text = await _field(request, "text")
    except ValueError:
        return await refuse(request, 400, "workspace.errors.empty")

    async def work(service: DeskService, reference: str, mediator: Any) -> str | None:
        delivered = await service.reply(reference, mediator, text)
        # Not delivered now: it is on the timeline (delivery_failed says why), and a
        # REST/console resident reads it from the outbox with their next message.
        return None if delivered else "flash.not_delivered"

    return await _desk_act(request, work, "flash.replied")


@routes.post("/cases/{ref}/status")
@requires(*STAFF)
async def change_status(request: web.Request) -> web.Response:
    value = str((await request.post()).get("status") or "")
    if value not in _values(CaseStatus) or value in ("new", "claimed"):
        return await refuse(request, 400, "workspace.errors.bad_input")
    # Resolved: the desk asks the resident for a rating on their own channel.
    return await _desk_act(
        request,
        lambda d, r, m: d.set_status(r, m, CaseStatus(value)),
        "flash.status",
        status=value,
    )


@routes.post("/cases/{ref}/outcome")
@requires(*STAFF)
async def set_outcome(request: web.Request) -> web.Response:
    value = str((await request.post()).get("outcome") or "")
    if value not in _values(Outcome):
        return await refuse(request, 400, "workspace.errors.bad_input")
    return await _desk_act(
        request, lambda d, r, m: d.set_outcome(r, m, Outcome(value)), "flash.outcome"
    )


@routes.post("/cases/{ref}/recategorise")
@requires(*STAFF)
async def recategorise(request: web.Request) -> web.Response:
    value = str((await request.post()).get("kind") or "")
    known = request.app[FORMS].categories

    async def work(service: DeskService, reference: str, mediator: Any) -> Any:
        if value not in known:
            raise ValueError(value)  # answered with the "bad input" message
        return await service.recategorise(reference, mediator, value)

    return await _desk_act(request, work, "flash.recategorised")


@routes.post("/cases/{ref}/transfer")
@requires(*STAFF)
async def transfer(request: web.Request) -> web.Response:
    form = await request.post()
    code = str(form.get("centre") or "")
    reason = str(form.get("reason") or "").strip()[:500]
    if not code or not reason:
        return await refuse(request, 400, "workspace.errors.reason")
    return await _desk_act(
        request, lambda d, r, m: d.transfer(r, m, code, reason), "flash.transferred"
    )


@routes.post("/cases/{ref}/summon")
@requires(*STAFF)
async def summon(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        department = int(str(form.get("department") or ""))
    except ValueError:
        return await refuse(request, 400, "workspace.errors.bad_input")
    text = str(form.get("request") or "").strip()
    return await _act(
        request, lambda s, r, m: desk.summon(s, r, m, department, text), "flash.summoned"
    )


@routes.post("/cases/{ref}/report-back")
@requires(*ALL_ROLES)
async def report_back(request: web.Request) -> web.Response:
    form = await request.post()
    state = str(form.get("state") or "")
    reason = str(form.get("reason") or "").strip()
    if state not in ("handled", "declined") or not reason:
        return await refuse(request, 400, "workspace.errors.reason")
    return await _act(
        request,
        lambda s, r, m: desk.report_back(s, r, m, SummonsState(state), reason),
        "flash.reported",
    )


@routes.post("/cases/{ref}/phone")
@requires(*STAFF)
async def reveal_phone(request: web.Request) -> web.Response:
    """The full number and the words as said, shown in this answer only, for the case's
    own mediator; the look is on the timeline (``phone_revealed``)."""
    me = viewer(request)
    reference = _reference(request)
    store = request.app[STORE]
    try:
        async with store.sessions.begin() as session:
            case = await casework.case_repo.get_case(session, reference)
            revealed = await reveal_case(session, case, me.mediator, store.vault, via="web")
    except CaseNotFound:
        return await refuse(request, 404, "workspace.errors.no_case")
    except NotAllowed:
        log.warning("workspace: reveal of %s refused to mediator %s", reference, me.mediator.id)
        return await refuse(request, 403, "workspace.errors.forbidden")
    context = await _case_context(request, revealed=revealed)
    if isinstance(context, web.Response):
        return context
    return await render(request, "case.html", context)
