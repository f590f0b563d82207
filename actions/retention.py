"""Retention that runs by itself (PIPL article 19: kept no longer than needed).

One daily job on the scheduler (:func:`retention_job`, registered in
``bot.web.add_scheduler``) and ``tiaojie retention run [--dry-run]`` do the same:

* unfinished drafts untouched for ``TIAOJIE_RETAIN_DRAFT_DAYS`` (30): the draft (words,
  phone typed at the phone step) is cleared, the conversation row and language stay;
* processed update ids older than ``TIAOJIE_RETAIN_UPDATE_IDS_DAYS`` (7);
* cases closed or withdrawn more than ``TIAOJIE_RETAIN_CLOSED_YEARS`` (3) ago are
  anonymised as on a resident's request (:mod:`actions.privacy`), their stored evidence
  files deleted, and residents left without any case since then deleted; the NLU
  review inbox's captures of those cases go with them;
* captured NLU messages that never led to a case, older than
  ``TIAOJIE_RETAIN_CAPTURE_DAYS`` (365);
* rendered exports under ``data_dir/exports/`` older than a day.

Each run logs counts, never content. The clock is injectable (``now``) for tests and
the scheduler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from actions.privacy import EXPORT_DIR, Forgotten, anonymise_case, delete_files
from actions.privacy import stored_files as privacy_files
from actions.scheduler import Job
from bot.runtime import Store
from bot.settings import Settings
from storage import retention as queries
from storage.cases import Actor
from storage.models import utcnow
from storage.updates import forget_old_updates

log = logging.getLogger(__name__)

#: How long a rendered /mydata export stays on disk.
EXPORT_TTL = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    draft_days: int = 30
    update_ids_days: int = 7
    closed_years: int = 3
    capture_days: int = 365

    def closed_cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=365 * self.closed_years)


def _old_exports(data_dir: Path, now: datetime) -> list[Path]:
    folder = data_dir / EXPORT_DIR
    if not folder.is_dir():
        return []
    limit = now.timestamp() - EXPORT_TTL.total_seconds()
    return [p for p in folder.iterdir() if p.is_file() and p.stat().st_mtime < limit]


async def run_retention(
    store: Store,
    policy: RetentionPolicy,
    data_dir: Path | str,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> dict[str, int]:
    """One retention pass; returns counts of what went (or would go, with ``dry_run``)."""
    now = now or utcnow()
    data_dir = Path(data_dir)
    counts = {
        "drafts": 0,
        "update_ids": 0,
        "cases": 0,
        "events": 0,
        "files": 0,
        "residents": 0,
        "captures": 0,
    }
    closed_cutoff = policy.closed_cutoff(now)
    done = Forgotten()
    # A dry run does the very same work in a transaction it rolls back: its counts are
    # exactly what a real run would delete, files included (counted, not touched).
    session = store.sessions()
    try:
        async with session.begin():
            drafts = await queries.stale_drafts(session, now - timedelta(days=policy.draft_days))
            for conversation in drafts:
                await queries.clear_draft(session, conversation)
            counts["drafts"] = len(drafts)
            # forget_old_updates counts back from the wall clock: hand it the age of
            # this run's cutoff so an injected ``now`` is honoured.
            cutoff = now - timedelta(days=policy.update_ids_days)
            counts["update_ids"] = await forget_old_updates(session, utcnow() - cutoff)
            due = await queries.cases_due(session, closed_cutoff)
            for case in due:
                await anonymise_case(session, case, Actor.system(), "retention", done)
            counts["cases"] = len(due)
            counts["events"] = done.erased_events
            orphans = await queries.orphaned_residents(session, closed_cutoff)
            for resident in orphans:
                await queries.forget_resident_row(session, resident)
            counts["residents"] = len(orphans)
            counts["captures"] = done.captures + await queries.old_unattached_captures(
                session, now - timedelta(days=policy.capture_days), delete_them=True
            )
            if dry_run:
                await session.rollback()
    finally:
        await session.close()
    exports = _old_exports(data_dir, now)
    if dry_run:
        counts["files"] = len(exports) + sum(1 for _ in privacy_files(data_dir, done.files))
        return counts
    counts["files"] = delete_files(data_dir, done.files)
    for path in exports:
        path.unlink(missing_ok=True)
        counts["files"] += 1
    log.info("retention run: %s", counts)
    return counts


def policy_from(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy(
        draft_days=settings.retain_draft_days,
        update_ids_days=settings.retain_update_ids_days,
        closed_years=settings.retain_closed_years,
        capture_days=settings.retain_capture_days,
    )


def retention_job(store: Store, settings: Settings) -> Job:
    """The scheduler's daily job (its lease makes one process run it)."""

    async def run(now: datetime) -> dict[str, int]:
        return await run_retention(store, policy_from(settings), settings.data_dir, now=now)

    return Job("retention", 24 * 3600.0, run)
