"""wechat: shared access token, residents' WeChat contacts, centres' WeCom robots

Revision ID: 0005_wechat
Revises: 0002
Create Date: 2026-11-30 00:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0005_wechat"
down_revision: str | None = "0003_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wechat_tokens",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("access_token", sa.String(length=1024), nullable=True),
        sa.Column("expires_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_wechat_tokens")),
    )
    op.create_table(
        "wechat_contacts",
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("last_inbound_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("unsubscribed_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("updated_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("openid", name=op.f("pk_wechat_contacts")),
    )
    op.create_table(
        "wecom_robots",
        sa.Column("centre_id", sa.Integer(), nullable=False),
        sa.Column("webhook_url", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["centre_id"],
            ["centres.id"],
            name=op.f("fk_wecom_robots_centre_id_centres"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("centre_id", name=op.f("pk_wecom_robots")),
    )


def downgrade() -> None:
    op.drop_table("wecom_robots")
    op.drop_table("wechat_contacts")
    op.drop_table("wechat_tokens")
