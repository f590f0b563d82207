"""The shared case store's tables, as SQLAlchemy 2.0 typed declarative models.

Everything that must survive a restart or be shared by several bot processes lives
here: the centre directory, mediators, residents, conversation state, cases and their
append-only timeline, and the ids of Telegram updates already handled.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage import sealed

#: Stable constraint names so Alembic migrations work the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timestamps are stored in UTC; presentation converts to the district's zone."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend.

    SQLite has no time zones and hands back naive values; comparing those with aware
    ones fails at run time, so everything is normalised to aware UTC here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
    }


class CentreLevel(enum.StrEnum):
    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"


class MediatorRole(enum.StrEnum):
    MEDIATOR = "mediator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    #: A partner department's user in the web workspace: sees only summoned cases.
    DEPARTMENT = "department"


class CaseStatus(enum.StrEnum):
    NEW = "new"
    CLAIMED = "claimed"
    IN_MEDIATION = "in_mediation"
    RESOLVED = "resolved"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class RiskLevel(enum.StrEnum):
    NORMAL = "normal"
    ELEVATED = "elevated"
    URGENT = "urgent"


class Outcome(enum.StrEnum):
    AGREEMENT = "agreement"
    JUDICIAL_CONFIRMATION = "judicial_confirmation"
    NOTARIZED = "notarized"
    REFERRED_TO_COURT = "referred_to_court"
    REFERRED_TO_ARBITRATION = "referred_to_arbitration"
    WITHDRAWN = "withdrawn"
    UNRESOLVED = "unresolved"


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    """Store enum *values* as VARCHAR + CHECK, portable across SQLite and PostgreSQL."""
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class CentreDepartment(Base):
    """Which partner departments work with which centre (社区发令, 部门报到)."""

    __tablename__ = "centre_departments"

    centre_id: Mapped[int] = mapped_column(
        ForeignKey("centres.id", ondelete="CASCADE"), primary_key=True
    )
    department_id: Mapped[int] = mapped_column(
        ForeignKey("departments.id", ondelete="CASCADE"), primary_key=True
    )


class Centre(Base):
    """A mediation centre of the 1+5+N network: district, street or community level."""

    __tablename__ = "centres"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    level: Mapped[CentreLevel] = mapped_column(_enum(CentreLevel, "centre_level"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("centres.id"), index=True)
    street: Mapped[str | None] = mapped_column(String(64))
    community: Mapped[str | None] = mapped_column(String(64))
    communities: Mapped[list[str]] = mapped_column(JSON, default=list)
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    telegram_thread_id: Mapped[int | None] = mapped_column(Integer)
    claim_minutes_normal: Mapped[int | None] = mapped_column(Integer)
    claim_minutes_urgent: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    parent: Mapped[Centre | None] = relationship(remote_side=[id], lazy="raise")
    departments: Mapped[list[Department]] = relationship(
        secondary="centre_departments", lazy="selectin"
    )


class Department(Base):
    """A partner department: labour bureau, court, women's federation …"""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)


class Mediator(Base):
    """A person who may claim and work cases; identified by their chat-channel id."""

    __tablename__ = "mediators"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(64))
    display_alias: Mapped[str] = mapped_column(String(64))
    centre_id: Mapped[int] = mapped_column(ForeignKey("centres.id"), index=True)
    role: Mapped[MediatorRole] = mapped_column(_enum(MediatorRole, "mediator_role"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    centre: Mapped[Centre] = relationship(lazy="selectin")


class Resident(Base):
    """A resident as known to one channel; the phone is stored encrypted."""

    __tablename__ = "residents"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    phone_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_masked: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    """Dialogue state of one chat; ``version`` gives optimistic concurrency."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("channel", "chat_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The draft's original when it holds personal numbers (see :mod:`storage.sealed`).
    state_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReferenceCounter(Base):
    """Per-day sequence behind readable reference numbers (BA-20261125-0042)."""

    __tablename__ = "reference_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


class Case(Base):
    """A filed dispute: what happened, where, who handles it, how it ended."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_centre_status", "centre_id", "status"),
        Index("ix_cases_status_risk", "status", "risk_level"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    category: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[CaseStatus] = mapped_column(
        _enum(CaseStatus, "case_status"), default=CaseStatus.NEW
    )
    risk_level: Mapped[RiskLevel] = mapped_column(
        _enum(RiskLevel, "risk_level"), default=RiskLevel.NORMAL
    )
    #: Free texts hold personal numbers masked; the ``…_sealed`` column beside each
    #: holds its original, encrypted (:mod:`storage.sealed`).
    resident_words: Mapped[str] = mapped_column(Text)
    resident_words_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    summary: Mapped[str] = mapped_column(Text, default="")
    summary_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fields_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    street: Mapped[str | None] = mapped_column(String(64))
    community: Mapped[str | None] = mapped_column(String(64))
    #: Where the case is now (moves up on escalation, across on transfer). Never empty:
    #: a case nobody can see is a resident nobody answers (the district if nothing else).
    centre_id: Mapped[int] = mapped_column(ForeignKey("centres.id"))
    #: Where it was routed to (its street or station); its people may still claim it
    #: after it moved up, and the cards there keep showing who has it.
    home_centre_id: Mapped[int | None] = mapped_column(ForeignKey("centres.id"))
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    mediator_id: Mapped[int | None] = mapped_column(ForeignKey("mediators.id"), index=True)
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    phone_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_masked: Mapped[str | None] = mapped_column(String(32))
    contact_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[Outcome | None] = mapped_column(_enum(Outcome, "case_outcome"))
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rating_comment_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalate_at: Mapped[datetime | None] = mapped_column(index=True)
    #: An emergency alert not yet acknowledged by a person must be by then, or it goes
    #: up a level (``alert_level`` counts how far it went).
    ack_due_at: Mapped[datetime | None] = mapped_column(index=True)
    alert_level: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    claimed_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    centre: Mapped[Centre] = relationship(lazy="selectin", foreign_keys=[centre_id])
    home_centre: Mapped[Centre | None] = relationship(
        lazy="selectin", foreign_keys=[home_centre_id]
    )
    department: Mapped[Department] = relationship(lazy="selectin")
    mediator: Mapped[Mediator | None] = relationship(lazy="selectin")
    resident: Mapped[Resident | None] = relationship(lazy="selectin")


class CaseEvent(Base):
    """One entry of a case's timeline; never updated or deleted (it is the audit log)."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: ``data`` as written when it held personal numbers (``data`` has them masked).
    data_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProcessedUpdate(Base):
    """Ids of channel updates already handled, so a redelivery is processed once."""

    __tablename__ = "processed_updates"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: What the first handling answered (text and buttons, as a channel sends them), so
    #: a duplicate delivery — a bridge retrying after a lost response, the same update
    #: at two workers — gets the same truthful answer instead of nothing.
    replies: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    #: Those replies as sent when they quote personal numbers (a review of the draft
    #: does); ``replies`` has them masked (:mod:`storage.sealed`).
    replies_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)


class JobLease(Base):
    """Who runs a periodic job (or leads) now: one holder at a time across processes.

    Taken and renewed with one conditional UPDATE, so two processes never both believe
    they hold it; a holder that dies loses it when ``expires_at`` passes.
    """

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]


class ReferralGiven(Base):
    """A resident was told mediation is not the way and where to go (a first-class
    outcome in the reports, whether or not they booked a legal consultation)."""

    __tablename__ = "referrals"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(40), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    street: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class AppendOnlyError(RuntimeError):
    """Raised when code tries to change or delete a timeline entry."""


@event.listens_for(CaseEvent, "before_update")
@event.listens_for(CaseEvent, "before_delete")
def _refuse_change(*_: object) -> None:
    raise AppendOnlyError("case events are append-only")


# Free texts kept masked with their original sealed (issue 14, :mod:`storage.sealed`).
sealed.register(Case, "resident_words", "resident_words_sealed")
sealed.register(Case, "summary", "summary_sealed")
sealed.register(Case, "fields", "fields_sealed", json=True)
sealed.register(Case, "rating_comment", "rating_comment_sealed")
sealed.register(CaseEvent, "data", "data_sealed", json=True)
sealed.register(Conversation, "state", "state_sealed", json=True)
sealed.register(ProcessedUpdate, "replies", "replies_sealed", json=True)
