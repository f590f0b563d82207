"""Staff intake: a mediator files a case for a walk-in resident or after a grid visit.

The same forms as the chat (``bot/forms/<kind>.yml`` rendered as an HTML form), the same
routing (``actions.intake.file_case``) and the same risk rules (``nlu.risk``): a case
filed here goes where the chat would have sent it, urgent when the words are alarming.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from actions import workspace_actions as desk
from actions.casework import NotAllowed
from bot.dialogue.forms import Form
from bot.workspace.common import (
    FORMS,
    RISK_RULES,
    SETTINGS,
    STAFF,
    STORE,
    flash,
    language,
    render,
    requires,
    viewer,
)
from storage.models import Centre, CentreLevel

routes = web.RouteTableDef()
RISK_ORDER = {"normal": 0, "elevated": 1, "urgent": 2}


async def _streets(request: web.Request) -> list[Centre]:
    async with request.app[STORE].sessions() as session:
        query = select(Centre).where(Centre.level == CentreLevel.STREET).order_by(Centre.id)
        return list((await session.execute(query)).scalars())


def _form(request: web.Request, kind: str | None) -> Form:
    return request.app[FORMS].get(kind or "dispute_other")


async def _page(
    request: web.Request, kind: str, values: dict[str, Any], error: str | None, status: int = 200
) -> web.Response:
    lang = await language(request)
    forms = request.app[FORMS]
    return await render(
        request,
        "intake.html",
        {
            "form": _form(request, kind),
            "kinds": [(c, forms.by_category[c].title.get(lang)) for c in forms.categories],
            "streets": await _streets(request),
            "values": values,
            "error": error,
        },
        status,
    )


@routes.get("/intake")
@requires(*STAFF)
async def intake_page(request: web.Request) -> web.Response:
    kind = request.query.get("kind") or "dispute_other"
    if kind not in request.app[FORMS].by_category:
        kind = "dispute_other"
    return await _page(request, kind, {"kind": kind}, None)


@routes.post("/intake")
@requires(*STAFF)
async def intake_submit(request: web.Request) -> web.Response:
    posted = await request.post()
    values = {k: str(v).strip() for k, v in posted.items() if isinstance(v, str)}
    kind = values.get("kind") or "dispute_other"
    if kind not in request.app[FORMS].by_category:
        kind = "dispute_other"
    form = _form(request, kind)
    words = values.get("words", "")[:4000]
    if not words:
        return await _page(request, kind, values, "intake.need_words", 400)
    if values.get("consent") != "yes":
        return await _page(request, kind, values, "intake.need_consent", 400)
    slots: dict[str, Any] = {}
    risk = "normal"
    for slot in form.slots:
        answer = values.get(f"slot_{slot.name}", "")[: slot.max_length]
        if not answer:
            continue
        slots[slot.name] = answer
        chosen = next((c for c in slot.choices if c.value == answer), None)
        if chosen is not None and chosen.risk and RISK_ORDER[chosen.risk] > RISK_ORDER[risk]:
            risk = chosen.risk
    found = request.app[RISK_RULES].check(words)  # type: ignore[attr-defined]
    if found.get("flagged"):
        risk = "urgent"
    settings = request.app[SETTINGS]
    intake = desk.StaffIntake(
        category=kind,
        words=words,
        street=values.get("street") or None,
        community=values.get("community") or None,
        phone=values.get("phone") or None,
        consent=True,
        slots=slots,
        risk_kinds=tuple(found.get("kinds") or ()),
        risk=risk,
        language="en" if values.get("language") == "en" else "zh",
    )
    try:
        async with request.app[STORE].sessions.begin() as session:
            reference = await desk.file_for_resident(
                session,
                viewer(request).mediator,
                intake,
                vault=request.app[STORE].vault,
                prefix=settings.reference_prefix,
                timezone=settings.timezone,
            )
    except NotAllowed:
        return await _page(request, kind, values, "intake.not_allowed", 403)
    except ValueError:
        return await _page(request, kind, values, "intake.bad_phone", 400)
    await flash(request, "flash.filed", reference=reference)
    try:  # the case may have gone to a station below the filer's own centre
        async with request.app[STORE].sessions() as session:
            await desk.visible_case(session, reference, viewer(request).mediator)
    except NotAllowed:
        raise web.HTTPSeeOther("/desk/intake") from None
    raise web.HTTPSeeOther(f"/desk/cases/{reference}")
