"""Reports for supervisors (the figures of ``tiaojie report`` with charts) and exports.

Charts are drawn on the server with matplotlib (Agg, object API, SVG with text as paths,
so Chinese renders without fonts in the browser) and served as images from their own
route; the CSV/XLSX exports list the same filtered cases with phone numbers masked.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from openpyxl import Workbook

from actions import casework
from actions import workspace_actions as desk
from bot.i18n import t
from bot.workspace.common import SETTINGS, STAFF, STORE, language, local_time, render, requires
from bot.workspace.common import viewer as viewer_of
from bot.workspace.desk import kind_name, parse_filters
from storage import cases as case_repo
from storage.cases import Actor
from storage.models import Case, MediatorRole

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
SUPERVISORS = (MediatorRole.SUPERVISOR, MediatorRole.ADMIN)
CJK_FONTS = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC", "DejaVu Sans"]
#: Where Debian puts CJK fonts; added explicitly because matplotlib's font cache may
#: predate their installation (then Chinese would come out as boxes).
CJK_FONT_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


@functools.cache
def _fonts() -> list[str]:
    """The CJK families matplotlib can use here (first found wins), DejaVu as last resort."""
    from matplotlib import font_manager

    for path in CJK_FONT_FILES:
        if Path(path).is_file():
            font_manager.fontManager.addfont(path)
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    return [name for name in CJK_FONTS if name in known] or ["DejaVu Sans"]


EXPORT_LIMIT = 10_000
#: Default report period when none is chosen.
DEFAULT_WEEKS = 12


def _report_filters(request: web.Request) -> desk.Filters:
    """The queue's filters, over every status, for the last 12 weeks unless chosen."""
    filters = parse_filters(request, default_open=False)
    if filters.since is None and "from" not in request.query:
        since = datetime.now(ZoneInfo(request.app[SETTINGS].timezone)) - timedelta(
            weeks=DEFAULT_WEEKS
        )
        filters = desk.Filters(**{**_as_dict(filters), "since": since})
    return filters


def _as_dict(filters: desk.Filters) -> dict[str, Any]:
    return {name: getattr(filters, name) for name in desk.Filters.__dataclass_fields__}


@routes.get("/reports")
@requires(*SUPERVISORS)
async def reports_page(request: web.Request) -> web.Response:
    me = viewer_of(request)
    lang = await language(request)
    filters = _report_filters(request)
    async with request.app[STORE].sessions() as session:
        figures = await desk.figures(session, me.mediator, filters)
        network = await casework.Network.load(session)
    visible = casework.visible_centres(me.mediator, network)
    centres = sorted(
        (c for c in network.by_id.values() if c.id in visible), key=lambda c: (c.level, c.code)
    )
    peak = max((n for row in figures.heat.values() for n in row.values()), default=0)
    return await render(
        request,
        "reports.html",
        {
            "figures": figures,
            "centres": centres,
            "query": request.query,
            "qs": request.query_string,
            "since": local_time(request.app[SETTINGS], filters.since, "%Y-%m-%d"),
            "kind_names": {k: kind_name(request, k, lang) for k in figures.kinds},
            "heat_class": lambda n: f"heat-{0 if not n else min(5, 1 + (4 * n) // max(peak, 1))}",
        },
    )


@routes.get("/reports/chart/{name}.svg")
@requires(*SUPERVISORS)
async def chart(request: web.Request) -> web.Response:
    me = viewer_of(request)
    lang = await language(request)
    name = request.match_info["name"]
    if name not in ("weeks", "kinds", "ratings"):
        raise web.HTTPNotFound()
    async with request.app[STORE].sessions() as session:
        figures = await desk.figures(session, me.mediator, _report_filters(request))
    if name == "weeks":
        labels, values = [w for w, _ in figures.per_week], [n for _, n in figures.per_week]
        title = t("workspace.reports.per_week", lang)
    elif name == "kinds":
        labels = [kind_name(request, k, lang) for k, _ in figures.by_kind]
        values = [n for _, n in figures.by_kind]
        title = t("workspace.reports.by_kind", lang)
    else:
        labels = [f"{n}★" for n in figures.ratings]
        values = list(figures.ratings.values())
        title = t("workspace.reports.ratings", lang)
    svg = await asyncio.to_thread(_bar_chart, title, labels, values, name == "kinds")
    return web.Response(
        body=svg,
        content_type="image/svg+xml",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


def _bar_chart(title: str, labels: list[str], values: list[int], horizontal: bool) -> bytes:
    """One bar chart as SVG (matplotlib's object API: safe off the main thread).

    matplotlib is imported here, on the first chart, not when the server starts: it
    takes seconds to import on a small office machine.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    height = max(3.0, 0.35 * len(labels) + 1.2) if horizontal else 3.2
    figure = Figure(figsize=(6.4, height), layout="constrained")
    axes = figure.add_subplot()
    with_font: dict[str, Any] = {"fontfamily": _fonts()}
    if not labels:
        labels, values = ["-"], [0]
    if horizontal:
        axes.barh(labels[::-1], values[::-1], color="#0b5cad")
        axes.set_yticks(range(len(labels)), labels[::-1], **with_font)
    else:
        axes.bar(labels, values, color="#0b5cad")
        axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", **with_font)
    axes.set_title(title, **with_font)
    counts = axes.xaxis if horizontal else axes.yaxis
    counts.set_major_locator(MaxNLocator(integer=True))
    if horizontal:
        axes.set_xlim(left=0, right=max(1, *values))
    else:
        axes.set_ylim(bottom=0, top=max(1, *values) * 1.1)
    axes.spines[["top", "right"]].set_visible(False)
    out = io.BytesIO()
    figure.savefig(out, format="svg")
    return out.getvalue()


# ----------------------------------------------------------------------------- exports

COLUMNS = (
    "reference",
    "kind",
    "status",
    "risk",
    "street",
    "community",
    "centre",
    "phone",
    "created",
    "claimed",
    "resolved",
    "outcome",
    "rating",
    "summary",
)


async def _export_rows(request: web.Request) -> tuple[list[str], list[list[Any]]]:
    me = viewer_of(request)
    lang = await language(request)
    settings = request.app[SETTINGS]
    filters = parse_filters(request, default_open=False)
    async with request.app[STORE].sessions.begin() as session:
        page = await desk.list_cases(session, me.mediator, filters, page_size=EXPORT_LIMIT)
        # An export is a look at each case it holds: on every exported case's timeline.
        await case_repo.add_events_to_cases(
            session,
            [case.id for case in page.items],
            "exported",
            Actor.of(me.mediator),
            {"format": request.path.rsplit(".", 1)[-1], "rows": len(page.items)},
        )
    log.info("workspace export of %d cases by mediator %s", len(page.items), me.mediator.id)
    header = [t(f"workspace.export.{c}", lang) for c in COLUMNS]
    return header, [_export_row(request, case, lang, settings) for case in page.items]


def _export_row(request: web.Request, case: Case, lang: str, settings: Any) -> list[Any]:
    centre = (
        case.centre.name_zh
        if case.centre and lang == "zh"
        else (case.centre.name_en if case.centre else "")
    )
    return [
        case.reference,
        kind_name(request, case.category, lang),
        t(f"workspace.status.{case.status.value}", lang),
        t(f"workspace.risk.{case.risk_level.value}", lang),
        case.street or "",
        case.community or "",
        centre,
        case.phone_masked or "",
        local_time(settings, case.created_at),
        local_time(settings, case.claimed_at) if case.claimed_at else "",
        local_time(settings, case.resolved_at) if case.resolved_at else "",
        t(f"desk.outcomes.{case.outcome.value}", lang) if case.outcome else "",
        case.rating if case.rating is not None else "",
        desk.mask_numbers(case.summary or case.resident_words),
    ]


def _safe_cell(value: Any) -> Any:
    """No spreadsheet formulas from residents' words (CSV/XLSX injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


@routes.get("/export.csv")
@requires(*STAFF)
async def export_csv(request: web.Request) -> web.Response:
    header, rows = await _export_rows(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([[_safe_cell(v) for v in row] for row in rows])
    return web.Response(
        body=("\ufeff" + out.getvalue()).encode("utf-8"),  # BOM: Excel opens UTF-8 right
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": "attachment; filename=tiaojie-cases.csv"},
    )


@routes.get("/export.xlsx")
@requires(*STAFF)
async def export_xlsx(request: web.Request) -> web.Response:
    header, rows = await _export_rows(request)
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "cases"
    sheet.append(header)
    for row in rows:
        sheet.append([_safe_cell(v) for v in row])
    out = io.BytesIO()
    workbook.save(out)
    return web.Response(
        body=out.getvalue(),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": "attachment; filename=tiaojie-cases.xlsx"},
    )
