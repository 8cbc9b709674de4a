"""license_tally (licenses in use and live records, kept by the writers), and the indexes a
cycle's discrepancy queries start from

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 07:00:00

Cost on a large store: one full count of the licensed agents (an index probe per agent into
the activity table) and of the live records; three indexes on `entra_users` (one sort of that
table each; the two partial ones hold only the deleted and the disabled accounts), one on
`users` and one on `entra_members` (the watched groups' edges). About as long as
`entrasync status` took on the same store before this revision, plus the index builds:
seconds at 1,000,000 users, on either engine.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COUNTS = """
INSERT INTO license_tally (id, used, live_users) SELECT 1,
  (SELECT count(agents.id) FROM agents JOIN users ON users.id = agents.user_id
   WHERE users.status = 'active'
   AND EXISTS (SELECT 1 FROM activity WHERE activity.agent_id = agents.id)),
  (SELECT count(users.id) FROM users WHERE users.merged_into_id IS NULL)
"""


def upgrade() -> None:
    op.create_table(
        "license_tally",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("live_users", sa.BigInteger(), nullable=False),
    )
    op.execute(_COUNTS)
    op.create_index("ix_entra_users_updated", "entra_users", ["updated_at"])
    op.create_index("ix_users_tracking", "users", ["tracking", "untracked_by"])
    op.create_index(
        "ix_entra_members_type", "entra_members", ["member_type", "group_id", "member_id"]
    )
    deleted = sa.text("deleted_at IS NOT NULL")
    op.create_index(
        "ix_entra_users_deleted",
        "entra_users",
        ["deleted_at"],
        sqlite_where=deleted,
        postgresql_where=deleted,
    )
    disabled = sa.text("account_enabled IS false")
    op.create_index(
        "ix_entra_users_disabled",
        "entra_users",
        ["account_enabled"],
        sqlite_where=disabled,
        postgresql_where=disabled,
    )


def downgrade() -> None:
    op.drop_index("ix_entra_users_disabled", table_name="entra_users")
    op.drop_index("ix_entra_users_deleted", table_name="entra_users")
    op.drop_index("ix_entra_users_updated", table_name="entra_users")
    op.drop_index("ix_users_tracking", table_name="users")
    op.drop_index("ix_entra_members_type", table_name="entra_members")
    op.drop_table("license_tally")
