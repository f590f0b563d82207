"""Repository functions for mediators and residents."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import CentreNotFound, MediatorNotFound
from storage.models import Centre, Mediator, MediatorRole, Resident, utcnow
from storage.phone import PhoneVault, mask_phone


async def add_mediator(
    session: AsyncSession,
    *,
    channel: str,
    external_id: str,
    display_alias: str,
    centre_code: str,
    role: MediatorRole = MediatorRole.MEDIATOR,
) -> Mediator:
    """Register a mediator, or update and re-activate one already registered."""
    centre = (
        await session.execute(select(Centre).where(Centre.code == centre_code))
    ).scalar_one_or_none()
    if centre is None:
        raise CentreNotFound(centre_code)
    mediator = await find_mediator(session, channel, external_id)
    if mediator is None:
        mediator = Mediator(channel=channel, external_id=external_id)
        session.add(mediator)
    mediator.display_alias = display_alias
    mediator.centre_id = centre.id
    mediator.role = role
    mediator.active = True
    await session.flush()
    await session.refresh(mediator)
    return mediator


async def find_mediator(session: AsyncSession, channel: str, external_id: str) -> Mediator | None:
    query = select(Mediator).where(
        Mediator.channel == channel, Mediator.external_id == str(external_id)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def get_mediator(session: AsyncSession, mediator_id: int) -> Mediator:
    mediator = await session.get(Mediator, mediator_id)
    if mediator is None:
        raise MediatorNotFound(str(mediator_id))
    return mediator


async def list_mediators(
    session: AsyncSession, *, centre_id: int | None = None, include_inactive: bool = True
) -> list[Mediator]:
    query = select(Mediator).order_by(Mediator.id)
    if centre_id is not None:
        query = query.where(Mediator.centre_id == centre_id)
    if not include_inactive:
        query = query.where(Mediator.active.is_(True))
    return list((await session.execute(query)).scalars())


async def deactivate_mediator(session: AsyncSession, channel: str, external_id: str) -> Mediator:
    """Take away a mediator's access without deleting their history."""
    mediator = await find_mediator(session, channel, external_id)
    if mediator is None:
        raise MediatorNotFound(f"{channel}:{external_id}")
    mediator.active = False
    await session.flush()
    return mediator


async def get_or_create_resident(
    session: AsyncSession, channel: str, external_id: str, language: str = "zh"
) -> Resident:
    """The resident behind ``(channel, external_id)``, inserted on first sight.

    Two processes can see the same new resident at once (a redelivered update handled
    by two workers). A plain INSERT would make the loser fail with an IntegrityError
    after the winner committed, so the insert is ``ON CONFLICT DO NOTHING`` and the row
    is read back either way.
    """
    query = select(Resident).where(
        Resident.channel == channel, Resident.external_id == str(external_id)
    )
    resident = (await session.execute(query)).scalar_one_or_none()
    if resident is not None:
        return resident
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(Resident)
        .values(
            channel=channel, external_id=str(external_id), language=language, created_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["channel", "external_id"])
    )
    await session.execute(statement)
    return (await session.execute(query.execution_options(populate_existing=True))).scalar_one()


async def set_resident_phone(
    session: AsyncSession, resident: Resident, phone: str, vault: PhoneVault
) -> None:
    """Keep the number encrypted; only the masked form is stored in clear."""
    resident.phone_encrypted = vault.encrypt(phone)
    resident.phone_masked = mask_phone(phone)
    await session.flush()
