"""audit_forward (the delivery cursor of audit forwarding)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:00:00

A new, empty table: instant on both engines whatever the size of the store.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_forward",
        sa.Column("target", sa.String(512), primary_key=True),
        sa.Column("delivered_seq", _BIG_ID, nullable=False, server_default="0"),
        sa.Column("delivered_hash", sa.String(64), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_forward")
