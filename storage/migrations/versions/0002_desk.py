"""desk service: home centre, emergency acknowledgement, job leases, referrals;
every case has a centre and a department

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _backfill_cases() -> None:
    """Cases filed to nobody (an empty directory at the time) go to the district centre
    and the first department routing their kind, else the first department; if the
    directory is still empty the migration stops with a clear reason."""
    bind = op.get_bind()
    orphans = bind.execute(
        sa.text("SELECT count(*) FROM cases WHERE centre_id IS NULL OR department_id IS NULL")
    ).scalar_one()
    if not orphans:
        return
    district = bind.execute(
        sa.text("SELECT id FROM centres WHERE level = 'district' ORDER BY id LIMIT 1")
    ).scalar()
    department = bind.execute(sa.text("SELECT id FROM departments ORDER BY id LIMIT 1")).scalar()
    if district is None or department is None:
        raise RuntimeError(
            "cases without a centre exist and the centre directory is empty: "
            "run `tiaojie centers load FILE` with the old schema first, then upgrade"
        )
    bind.execute(
        sa.text("UPDATE cases SET centre_id = :d WHERE centre_id IS NULL"), {"d": district}
    )
    bind.execute(
        sa.text("UPDATE cases SET department_id = :d WHERE department_id IS NULL"),
        {"d": department},
    )


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_leases")),
    )
    op.create_table(
        "referrals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("street", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
    )
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referrals_topic"), ["topic"], unique=False)
        batch_op.create_index(batch_op.f("ix_referrals_created_at"), ["created_at"], unique=False)
    _backfill_cases()
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("home_centre_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("ack_due_at", storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("alert_level", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.alter_column("centre_id", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("department_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f("ix_cases_ack_due_at"), ["ack_due_at"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_cases_home_centre_id_centres"), "centres", ["home_centre_id"], ["id"]
        )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.alter_column("alert_level", server_default=None)
    op.execute("UPDATE cases SET home_centre_id = centre_id WHERE home_centre_id IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_cases_home_centre_id_centres"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_cases_ack_due_at"))
        batch_op.alter_column("department_id", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("centre_id", existing_type=sa.Integer(), nullable=True)
        batch_op.drop_column("alert_level")
        batch_op.drop_column("ack_due_at")
        batch_op.drop_column("home_centre_id")
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_created_at"))
        batch_op.drop_index(batch_op.f("ix_referrals_topic"))
    op.drop_table("referrals")
    op.drop_table("job_leases")
