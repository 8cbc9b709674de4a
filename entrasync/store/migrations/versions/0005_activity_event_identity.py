"""activity: one row per event (idempotent ingestion)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:40:00

An event is identified by (agent, device, start, duration, app, title) and stored once
(DESIGN.md, "Ingestion is idempotent"). Stores written by earlier versions may hold copies of
an event (a file ingested twice): the extra copies are deleted first, keeping the lowest id,
then the unique index `uq_activity_event` is created (its definition and the reasons for it:
`entrasync.store.schema.ActivityRow`).

Cost: one sort of the activity table (a window over the identity) and one index build: 11 s
for five million rows on either engine (bench machine, bench/RESULTS.md).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Set-based on both engines: number the copies of each identity, delete all but the first.
# (`id NOT IN (SELECT MIN(id) … GROUP BY …)` reads the same, but PostgreSQL plans NOT IN over
# a large subquery as a nested loop once it does not fit work_mem.)
# Copies are numbered by exactly the key the index compares, so the index build cannot fail.
_DELETE_COPIES = """
DELETE FROM activity WHERE id IN (
    SELECT id FROM (
        SELECT id, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY id) AS copy
        FROM activity
    ) numbered
    WHERE copy > 1
)
"""

# Mirrors entrasync.store.schema (ActivityRow, event_title_key): the title is compared through
# COALESCE so that NULL titles collide, and on PostgreSQL through md5() so that a long title
# stays within the B-tree's entry size limit. Written out here: a migration must not change
# when the code does.
_COLUMNS = "agent_id, start, duration_s, app, device"
_TITLE = {"postgresql": "md5(COALESCE(title, ''))", "sqlite": "COALESCE(title, '')"}


def upgrade() -> None:
    title = _TITLE[op.get_bind().dialect.name]
    op.execute(_DELETE_COPIES.format(key=f"{_COLUMNS}, {title}"))
    op.execute(f"CREATE UNIQUE INDEX uq_activity_event ON activity ({_COLUMNS}, {title})")


def downgrade() -> None:
    op.drop_index("uq_activity_event", table_name="activity")
