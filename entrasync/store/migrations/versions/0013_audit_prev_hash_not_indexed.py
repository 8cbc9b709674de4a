"""audit_log: prev_hash without a unique index

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 22:30:00

A fork of the chain is two records on one predecessor. Every writer takes the next `seq` and
its `prev_hash` from the same read of the head (`audit.Chain.at_head`, under the writers'
lock), so two records on one predecessor also share a `seq`, which the primary key rejects.
The unique index on `prev_hash` checked the same thing again with a random key (a SHA-256):
each record dirtied a different leaf of an index as large as the log (132 MB at 1.1 million
records), so a purge batch of 500 users wrote 500 scattered index pages more than the rows it
deletes (bench: purge, PostgreSQL). `audit verify` still names any record whose `prev_hash`
is not the hash of the record before it.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TABLE, _NAME = "audit_log", "audit_log_prev_hash_key"
# SQLite reflects the constraint of 0001 without a name: name it as PostgreSQL did.
_NAMING = {"uq": "%(table_name)s_%(column_0_name)s_key"}


def upgrade() -> None:
    with op.batch_alter_table(_TABLE, naming_convention=_NAMING) as batch:
        batch.drop_constraint(_NAME, type_="unique")


def downgrade() -> None:
    with op.batch_alter_table(_TABLE, naming_convention=_NAMING) as batch:
        batch.create_unique_constraint(_NAME, ["prev_hash"])
