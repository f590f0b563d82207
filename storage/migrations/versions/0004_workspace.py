"""web workspace: users, sign-in attempts and links, summons; the department role

Revision ID: 0004_workspace
Revises: 0005_wechat
Create Date: 2026-11-30 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0004_workspace"
down_revision: str | None = "0006_learning"  # chained after the parallel branches
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_ROLES = ("mediator", "supervisor", "admin")
_NEW_ROLES = (*_OLD_ROLES, "department")


def _roles(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(
        *values, name="mediator_role", native_enum=False, create_constraint=True, length=32
    )


def _set_roles(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # SQLite cannot alter a CHECK constraint: batch mode rebuilds the table.
        with op.batch_alter_table("mediators", recreate="always") as batch_op:
            batch_op.alter_column(
                "role", existing_type=_roles(old), type_=_roles(new), existing_nullable=False
            )
        return
    op.drop_constraint(op.f("ck_mediators_mediator_role"), "mediators", type_="check")
    listed = ", ".join(f"'{v}'" for v in new)
    op.create_check_constraint(
        op.f("ck_mediators_mediator_role"), "mediators", f"role IN ({listed})"
    )


def upgrade() -> None:
    _set_roles(_OLD_ROLES, _NEW_ROLES)
    op.create_table(
        "web_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=True),
        sa.Column("mediator_id", sa.Integer(), nullable=True),
        sa.Column("telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["mediator_id"], ["mediators.id"], name=op.f("fk_web_users_mediator_id_mediators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_users")),
        sa.UniqueConstraint("username", name=op.f("uq_web_users_username")),
    )
    with op.batch_alter_table("web_users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_users_mediator_id"), ["mediator_id"], unique=False)
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_attempts_username"), ["username"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_login_attempts_created_at"), ["created_at"], unique=False
        )
    op.create_table(
        "sign_in_links",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["web_users.id"],
            name=op.f("fk_sign_in_links_user_id_web_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_sign_in_links")),
    )
    op.create_table(
        "summons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("department_mediator_id", sa.Integer(), nullable=False),
        sa.Column("summoned_by", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "handled",
                "declined",
                name="summons_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("answered_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_summons_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["department_mediator_id"],
            ["mediators.id"],
            name=op.f("fk_summons_department_mediator_id_mediators"),
        ),
        sa.ForeignKeyConstraint(
            ["summoned_by"], ["mediators.id"], name=op.f("fk_summons_summoned_by_mediators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_summons")),
        sa.UniqueConstraint("case_id", "department_mediator_id", name=op.f("uq_summons_case_id")),
    )
    with op.batch_alter_table("summons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_summons_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_summons_department_mediator_id"),
            ["department_mediator_id"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("summons")
    op.drop_table("sign_in_links")
    op.drop_table("login_attempts")
    op.drop_table("web_users")
    _set_roles(_NEW_ROLES, _OLD_ROLES)
