"""sealed originals of free texts that hold personal numbers (issue 14)

Every free text keeps personal numbers masked in its own column and the original,
encrypted, in a nullable ``…_sealed`` column beside it (see ``storage/sealed.py``).
Rows written before this revision stay as they were until ``tiaojie keys rotate``
seals what is still in the clear.

Revision ID: 0008_sealed
Revises: 0007_replayable_updates
Create Date: 2026-12-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_sealed"
down_revision: str | None = "0007_replayable_updates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, column) of every sealed original.
COLUMNS = (
    ("cases", "resident_words_sealed"),
    ("cases", "summary_sealed"),
    ("cases", "fields_sealed"),
    ("cases", "rating_comment_sealed"),
    ("case_events", "data_sealed"),
    ("conversations", "state_sealed"),
    ("outbox", "payload_sealed"),
    ("summons", "request_sealed"),
    ("summons", "answer_sealed"),
    ("processed_updates", "replies_sealed"),
)


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
