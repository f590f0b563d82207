"""Administration: users, the centre directory and any case's full audit trail."""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy import select

from actions import workspace_actions as desk
from bot.workspace.common import SETTINGS, STORE, flash, refuse, render, requires, viewer
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
    """Every event of a case, views included, with the raw data (phones never stored)."""
    reference = (request.query.get("ref") or "").strip()
    if not reference:
        return await render(request, "admin_audit.html", {"case": None, "events": []})
    me = viewer(request)
    try:
        async with request.app[STORE].sessions.begin() as session:
            case = await get_case(session, reference)
            events = await case_events(session, case)
            await add_event(session, case, "view", Actor.of(me.mediator), {"via": "audit"})
    except CaseNotFound:
        return await refuse(request, 404, "workspace.errors.no_case")
    rows = [
        {
            "id": e.id,
            "at": e.created_at,
            "kind": e.kind,
            "actor": f"{e.actor_type}:{e.actor_id or ''}",
            "data": desk.mask_numbers(str(e.data or {})),
        }
        for e in events
    ]
    return await render(request, "admin_audit.html", {"case": case, "events": rows})
