"""entra_members.seen_round: the full round that last saw an edge

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 08:30:00

A full groups round (first sync, resync, periodic full read) removes the edges of its groups
that it did not see. It used to keep every edge it saw in memory until its last page (about
125 bytes per edge: 17 MB for 140,000 watched members) and then read each group's edges back
to compare. Now each edge a full round sees is stamped with that round's id, and the edges of
its groups without the stamp are deleted in one statement: memory no longer follows the size
of the watched groups. NULL: not seen by a full round since this revision (the next full round
stamps or removes it). A column add with no default: instant on both engines.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("entra_members") as batch:
        batch.add_column(sa.Column("seen_round", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("entra_members") as batch:
        batch.drop_column("seen_round")
