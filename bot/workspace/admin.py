"""Administration: users, the centre directory, any case's full audit trail, and a
resident's data exported or erased on a verified request (PIPL articles 45 and 47).

The resident pages only parse the form and call :mod:`actions.privacy` — the same
functions ``tiaojie resident export|forget`` uses — so the chat, the CLI and the
workspace cannot drift apart. Each is audited: the export puts ``data_exported`` on
every case it covers, the erasure ``data_erased``, both naming the administrator
(``admin`` / ``web:<user name>``) and the request they answer.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from sqlalchemy import select

from actions import privacy
from actions import workspace_actions as desk
from bot.i18n import t
from bot.workspace.common import (
    DESK,
    SETTINGS,
    STORE,
    flash,
    language,
    refuse,
    render,
    requires,
    viewer,
)
from storage import accounts
from storage.cases import Actor, add_event, case_events, get_case
from storage.directory import all_centres, load_directory, parse_directory
from storage.errors import CaseNotFound, DirectoryFileError
from storage.models import Department, Mediator, MediatorRole

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/admin/users")
@requires(MediatorRole.ADMIN)
async def users(request: web.Request) -> web.Response:
    async with request.app[STORE].sessions() as session:
        found = await accounts.list_users(session)
    return await render(request, "admin_users.html", {"users": found})


@routes.post("/admin/users/{user_id:\\d+}/disable")
@requires(MediatorRole.ADMIN)
async def disable(request: web.Request) -> web.Response:
    async with request.app[STORE].sessions.begin() as session:
        user = await accounts.get_user(session, int(request.match_info["user_id"]))
        if user is None:
            return await refuse(request, 404, "workspace.errors.not_found")
        await accounts.disable_user(session, user.username)
    log.info("workspace user %s disabled by %s", user.id, viewer(request).user.id)
    await flash(request, "flash.disabled", username=user.username)
    raise web.HTTPSeeOther("/desk/admin/users")


@routes.get("/admin/centres")
@requires(MediatorRole.ADMIN)
async def centres(request: web.Request) -> web.Response:
    async with request.app[STORE].sessions() as session:
        found = await all_centres(session)
        departments = list((await session.execute(select(Department))).scalars())
        staff = list((await session.execute(select(Mediator))).scalars())
    counts: dict[int, int] = {}
    for person in staff:
        if person.active:
            counts[person.centre_id] = counts.get(person.centre_id, 0) + 1
    return await render(
        request,
        "admin_centres.html",
        {
            "centres": found,
            "departments": departments,
            "counts": counts,
            "file": str(request.app[SETTINGS].centres_file),
        },
    )


@routes.post("/admin/centres/reload")
@requires(MediatorRole.ADMIN)
async def reload_centres(request: web.Request) -> web.Response:
    path = request.app[SETTINGS].centres_file
    try:
        directory = parse_directory(path)
    except DirectoryFileError as error:
        log.warning("centre directory not reloaded: %s", error)
        await flash(request, "flash.bad_input", "warn")
        raise web.HTTPSeeOther("/desk/admin/centres") from None
    async with request.app[STORE].sessions.begin() as session:
        counts = await load_directory(session, directory)
    await flash(
        request,
        "flash.reloaded",
        created=counts.get("created", 0),
        updated=counts.get("updated", 0),
    )
    raise web.HTTPSeeOther("/desk/admin/centres")


@routes.get("/admin/audit")
@requires(MediatorRole.ADMIN)
async def audit(request: web.Request) -> web.Response:
    """Every event of a case — who viewed, changed, exported it or revealed its phone and
    words — with its data as stored (personal numbers masked)."""
    reference = (request.query.get("ref") or "").strip()
    if not reference:
        return await render(request, "admin_audit.html", {"case": None, "events": []})
    me = viewer(request)
    try:
        async with request.app[STORE].sessions.begin() as session:
            case = await get_case(session, reference)
            events = await case_events(session, case)
            await add_event(session, case, "view", Actor.of(me.mediator), {"via": "audit"})
            people = (await session.execute(select(Mediator))).scalars()
            staff = {m.id: m.display_alias for m in people}
    except CaseNotFound:
        return await refuse(request, 404, "workspace.errors.no_case")
    rows = [
        {
            "id": e.id,
            "at": e.created_at,
            "kind": e.kind,
            "actor": _actor(e.actor_type, e.actor_id, staff),
            # Stored masked already (storage.sealed); masked again for rows from before.
            "data": desk.mask_numbers(str(e.data or {})),
        }
        for e in events
    ]
    return await render(request, "admin_audit.html", {"case": case, "events": rows})


def _actor(kind: str, ident: str | None, staff: dict[int, str]) -> str:
    """Who, readable: a mediator by alias (and id), anyone else by kind and id."""
    if kind == "mediator" and ident and ident.isdigit() and int(ident) in staff:
        return f"{staff[int(ident)]} (mediator:{ident})"
    return f"{kind}:{ident or ''}"


# ------------------------------------------------------------- a resident's data

#: Channels a resident can be known by (their id on it is what they wrote from).
CHANNELS = ("telegram", "rest", "wechat", "callback", "console")
_IDENT = re.compile(r"^[\w.:@-]{1,64}$")


def _who(values: Any) -> tuple[str, str] | None:
    """``(channel, id)`` from a form or query, or None when either is not one."""
    channel = str(values.get("channel") or "").strip()
    ident = str(values.get("id") or "").strip()
    if channel not in CHANNELS or not _IDENT.match(ident):
        return None
    return channel, ident


def _operator(request: web.Request) -> Actor:
    return Actor("admin", f"web:{viewer(request).user.username}"[:64])


async def _basis(request: web.Request) -> str | None:
    """The verified request this answers (a letter, a visit): required, kept on the
    timelines with the operator."""
    text = str((await request.post()).get("basis") or "").strip()
    return text[:500] or None


@routes.get("/admin/residents")
@requires(MediatorRole.ADMIN)
async def residents(request: web.Request) -> web.Response:
    return await render(request, "admin_residents.html", {"channels": CHANNELS, "query": {}})


@routes.post("/admin/residents/export")
@requires(MediatorRole.ADMIN)
async def resident_export(request: web.Request) -> web.StreamResponse:
    """Everything held about one resident, as a file to hand over (text or JSON)."""
    form = await request.post()
    who = _who(form)
    basis = await _basis(request)
    if who is None or basis is None:
        return await refuse(request, 400, "privacy.staff.bad_request")
    channel, ident = who
    async with request.app[STORE].sessions.begin() as session:
        export = await privacy.export_on_request(
            session, channel, ident, _operator(request), basis=basis
        )
    if export is None:
        return await _nothing_held(request, channel, ident)
    log.info("resident data exported from the workspace by user %s", viewer(request).user.id)
    if form.get("format") == "json":
        body, mime, suffix = privacy.export_json(export), "application/json", "json"
    else:
        timezone = request.app[SETTINGS].timezone
        body, mime, suffix = privacy.render_export(export, timezone), "text/plain", "txt"
    name = f"tiaojie-{channel}-{ident}.{suffix}"
    return web.Response(
        body=body.encode("utf-8"),
        content_type=mime,
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _nothing_held(request: web.Request, channel: str, ident: str) -> web.Response:
    context = {"channels": CHANNELS, "query": {"channel": channel, "id": ident}, "nothing": True}
    return await render(request, "admin_residents.html", context, 404)


@routes.get("/admin/residents/forget")
@requires(MediatorRole.ADMIN)
async def forget_preview(request: web.Request) -> web.Response:
    """What an erasure would do, and the confirmation form; nothing changes here."""
    who = _who(request.query)
    if who is None:
        return await refuse(request, 400, "privacy.staff.bad_request")
    channel, ident = who
    async with request.app[STORE].sessions() as session:
        preview = await privacy.preview_forget(session, channel, ident)
    if not preview.anything:
        return await _nothing_held(request, channel, ident)
    return await render(
        request,
        "admin_forget.html",
        {"channel": channel, "ident": ident, "preview": preview},
    )


@routes.post("/admin/residents/forget")
@requires(MediatorRole.ADMIN)
async def forget(request: web.Request) -> web.Response:
    """Erase on a confirmed, verified request: open cases withdrawn (their mediators
    told), every case anonymised, files, resident row and chat state deleted."""
    form = await request.post()
    who = _who(form)
    basis = await _basis(request)
    if who is None or basis is None or form.get("confirm") != "yes":
        return await refuse(request, 400, "privacy.staff.bad_request")
    channel, ident = who
    store = request.app[STORE]
    async with store.sessions.begin() as session:
        if not (await privacy.preview_forget(session, channel, ident)).anything:
            return await _nothing_held(request, channel, ident)
        result = await privacy.forget_resident(session, channel, ident, _operator(request))
    privacy.delete_files(request.app[SETTINGS].data_dir, result.files)
    await privacy.tell_mediators(request.app[DESK], result)
    log.info("resident data erased from the workspace by user %s", viewer(request).user.id)
    lang = await language(request)
    session_ = await get_session(request)
    session_["flash"] = {
        "kind": "ok",
        "text": t("privacy.staff.forgotten", lang, **result.counts()),
    }
    raise web.HTTPSeeOther("/desk/admin/residents")
