"""entra_users.account_enabled (sync.on_user_disabled)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 03:00:00

The mirror keeps each Entra user's `accountEnabled` as last read. NULL means "not read yet"
(every row mirrored before this revision): it counts as enabled, so an upgrade never untracks
anyone. A delta link keeps the `$select` of the round that started it, so the users stream's
link is dropped here: the first cycle after the upgrade reads users in full with
`accountEnabled` selected, diffed against the mirror (one full round; the group streams keep
their links). A column add with no default: instant on both engines.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("entra_users") as batch:
        batch.add_column(sa.Column("account_enabled", sa.Boolean(), nullable=True))
    op.execute("UPDATE sync_state SET delta_link = NULL, full_at = NULL WHERE stream = 'users'")


def downgrade() -> None:
    with op.batch_alter_table("entra_users") as batch:
        batch.drop_column("account_enabled")
