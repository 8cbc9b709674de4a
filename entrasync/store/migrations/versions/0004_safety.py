"""safety: suspect groups, per-group watched members, scheduled purges, retired identifiers

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:30:00

`watched_members` becomes one row per (group, member): the rows of a suspect group are frozen
while the others move on. Existing rows keep their group and `first_seen_at` (so purge delays
already running keep their clock); memberships through a second group of the same kind are
added by the next cycle (`entra_groups` is empty after this migration, which makes the cycle
re-materialise every group from the mirror).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import entrasync.store.schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC = entrasync.store.schema.UtcDateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("purged_at", UTC, nullable=True))
    with op.batch_alter_table("sync_state") as batch:
        batch.add_column(sa.Column("full_at", UTC, nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("suspect", sa.JSON(), nullable=True))
    with op.batch_alter_table("entra_groups") as batch:
        batch.add_column(sa.Column("suspect", sa.String(16), nullable=True))
        batch.add_column(sa.Column("suspect_since", UTC, nullable=True))
        batch.add_column(sa.Column("suspect_detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("accepted", sa.String(16), nullable=True))
        batch.add_column(sa.Column("accepted_at", UTC, nullable=True))
    op.create_table(
        "retired_identifiers",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("user_id", BIG_ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(320), nullable=False),
        sa.Column("retired_at", UTC, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retired_identifiers_user_id", "retired_identifiers", ["user_id"])
    op.create_index("ix_retired_identifiers_value", "retired_identifiers", ["kind", "value"])
    op.create_table(
        "scheduled_purges",
        sa.Column("user_id", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("group_id", sa.String(64), nullable=True),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("scheduled_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    _per_group_watched_members()


def _per_group_watched_members() -> None:
    op.drop_index("ix_watched_members_object", table_name="watched_members")
    op.rename_table("watched_members", "watched_members_0003")
    op.create_table(
        "watched_members",
        sa.Column("via_group", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("first_seen_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("via_group", "object_id"),
    )
    op.create_index("ix_watched_members_object", "watched_members", ["object_id"])
    op.execute(
        "INSERT INTO watched_members (via_group, object_id, kind, first_seen_at) "
        "SELECT via_group, object_id, kind, first_seen_at FROM watched_members_0003"
    )
    op.drop_table("watched_members_0003")


def downgrade() -> None:
    op.drop_index("ix_watched_members_object", table_name="watched_members")
    op.rename_table("watched_members", "watched_members_0004")
    op.create_table(
        "watched_members",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("via_group", sa.String(64), nullable=False),
        sa.Column("first_seen_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("kind", "object_id"),
    )
    op.create_index("ix_watched_members_object", "watched_members", ["object_id"])
    op.execute(
        "INSERT INTO watched_members (kind, object_id, via_group, first_seen_at) "
        "SELECT kind, object_id, MIN(via_group), MIN(first_seen_at) FROM watched_members_0004 "
        "GROUP BY kind, object_id"
    )
    op.drop_table("watched_members_0004")
    op.drop_table("scheduled_purges")
    op.drop_index("ix_retired_identifiers_value", table_name="retired_identifiers")
    op.drop_index("ix_retired_identifiers_user_id", table_name="retired_identifiers")
    op.drop_table("retired_identifiers")
    with op.batch_alter_table("entra_groups") as batch:
        for column in ("accepted_at", "accepted", "suspect_detail", "suspect_since", "suspect"):
            batch.drop_column(column)
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("suspect")
    with op.batch_alter_table("sync_state") as batch:
        batch.drop_column("full_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("purged_at")
