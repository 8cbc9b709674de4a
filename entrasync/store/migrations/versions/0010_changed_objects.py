"""changed_objects: the Entra objects whose watched-group consequences may be out of line,
kept by triggers, so that a cycle re-examines only those (issue 16: a steady cycle costs
what changed, not the size of the watched groups)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:00:00

Triggers, not the application's writers, fill the queue: every change to what decides a
watched member's or a departed member's state (the materialised membership, a record's
tracking, link, merge or purge, a Delete member's agents, an Entra account deleted,
restored, disabled or enabled) queues the Entra object id, whoever writes it (a cycle, an
admin command, `ingest`, `approve`, a manual SQL fix). The cycle removes an object from the
queue only once it is in line (store/changes.py). SQLite triggers run per row; PostgreSQL's
run per statement over the statement's transition tables (set-based).

Also: `ix_users_merged_into` holds merged records only (a partial index), so that a lookup
of live records by Entra object id follows that id's index instead of reading this one whole.

Cost on a large store: the queue is seeded with every watched member and every untracked
linked record, so the first cycle after the upgrade examines them all once (as every cycle
did before this revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_QUEUE = "INSERT INTO changed_objects (object_id)"
_WATCHED = "EXISTS (SELECT 1 FROM watched_members w WHERE w.object_id = {0})"
_DELETE_MEMBER = (
    "EXISTS (SELECT 1 FROM watched_members w WHERE w.object_id = {0} AND w.kind = 'delete')"
)
_USER_COLUMNS = ("tracking", "untracked_by", "entra_object_id", "merged_into_id", "purged_at")

_SEED = f"""
{_QUEUE} SELECT object_id FROM watched_members
UNION SELECT entra_object_id FROM users
WHERE entra_object_id IS NOT NULL AND tracking <> 'tracked'
"""

# (name, table, SQLite timing and event, WHEN condition or None, SQLite body statements)
_SQLITE: list[tuple[str, str, str, str | None, list[str]]] = [
    (
        "changed_watched_insert",
        "watched_members",
        "AFTER INSERT",
        None,
        [f"{_QUEUE} VALUES (NEW.object_id)"],
    ),
    (
        "changed_watched_update",
        "watched_members",
        "AFTER UPDATE",
        None,
        [f"{_QUEUE} VALUES (NEW.object_id)", f"{_QUEUE} SELECT OLD.object_id"],
    ),
    (
        "changed_watched_delete",
        "watched_members",
        "AFTER DELETE",
        None,
        [f"{_QUEUE} VALUES (OLD.object_id)"],
    ),
    (
        "changed_user_insert",
        "users",
        "AFTER INSERT",
        "NEW.entra_object_id IS NOT NULL",
        [f"{_QUEUE} VALUES (NEW.entra_object_id)"],
    ),
    (
        "changed_user_update",
        "users",
        f"AFTER UPDATE OF {', '.join(_USER_COLUMNS)}",
        " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _USER_COLUMNS),
        [
            f"{_QUEUE} SELECT NEW.entra_object_id WHERE NEW.entra_object_id IS NOT NULL "
            f"AND (NEW.tracking <> 'tracked' OR {_WATCHED.format('NEW.entra_object_id')})",
            f"{_QUEUE} SELECT OLD.entra_object_id WHERE OLD.entra_object_id IS NOT NULL "
            "AND OLD.entra_object_id IS NOT NEW.entra_object_id",
        ],
    ),
    (
        "changed_agent_insert",
        "agents",
        "AFTER INSERT",
        None,
        [
            f"{_QUEUE} SELECT u.entra_object_id FROM users u WHERE u.id = NEW.user_id "
            f"AND u.entra_object_id IS NOT NULL AND {_DELETE_MEMBER.format('u.entra_object_id')}"
        ],
    ),
    (
        "changed_agent_update",
        "agents",
        "AFTER UPDATE OF user_id",
        "OLD.user_id IS NOT NEW.user_id",
        [
            f"{_QUEUE} SELECT u.entra_object_id FROM users u WHERE u.id = NEW.user_id "
            f"AND u.entra_object_id IS NOT NULL AND {_DELETE_MEMBER.format('u.entra_object_id')}"
        ],
    ),
    (
        "changed_entra_user_insert",
        "entra_users",
        "AFTER INSERT",
        None,
        [f"{_QUEUE} SELECT NEW.object_id WHERE {_WATCHED.format('NEW.object_id')}"],
    ),
    (
        "changed_entra_user_update",
        "entra_users",
        "AFTER UPDATE OF deleted_at, account_enabled",
        "(OLD.deleted_at IS NULL) IS NOT (NEW.deleted_at IS NULL) "
        "OR OLD.account_enabled IS NOT NEW.account_enabled",
        [f"{_QUEUE} VALUES (NEW.object_id)"],
    ),
]


def _sqlite_trigger(name: str, table: str, event: str, when: str | None, body: list[str]) -> str:
    condition = f" WHEN {when}" if when else ""
    statements = "".join(f"  {s};\n" for s in body)
    return (
        f"CREATE TRIGGER {name} {event} ON {table} FOR EACH ROW{condition}\nBEGIN\n{statements}END"
    )


_CHANGED_USER = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in _USER_COLUMNS)

# (name, table, event, transition tables, the function's INSERT … SELECT)
_POSTGRES: list[tuple[str, str, str, str, str]] = [
    (
        "changed_watched_insert",
        "watched_members",
        "INSERT",
        "NEW TABLE AS n_rows",
        f"{_QUEUE} SELECT object_id FROM n_rows",
    ),
    (
        "changed_watched_update",
        "watched_members",
        "UPDATE",
        "OLD TABLE AS o_rows NEW TABLE AS n_rows",
        f"{_QUEUE} SELECT object_id FROM n_rows UNION SELECT object_id FROM o_rows",
    ),
    (
        "changed_watched_delete",
        "watched_members",
        "DELETE",
        "OLD TABLE AS o_rows",
        f"{_QUEUE} SELECT object_id FROM o_rows",
    ),
    (
        "changed_user_insert",
        "users",
        "INSERT",
        "NEW TABLE AS n_rows",
        f"{_QUEUE} SELECT entra_object_id FROM n_rows WHERE entra_object_id IS NOT NULL",
    ),
    (
        "changed_user_update",
        "users",
        "UPDATE",
        "OLD TABLE AS o_rows NEW TABLE AS n_rows",
        f"{_QUEUE} SELECT n.entra_object_id FROM n_rows n JOIN o_rows o ON o.id = n.id "
        f"WHERE n.entra_object_id IS NOT NULL AND ({_CHANGED_USER}) "
        f"AND (n.tracking <> 'tracked' OR {_WATCHED.format('n.entra_object_id')}) "
        f"UNION ALL SELECT o.entra_object_id FROM o_rows o JOIN n_rows n ON n.id = o.id "
        "WHERE o.entra_object_id IS NOT NULL "
        "AND o.entra_object_id IS DISTINCT FROM n.entra_object_id",
    ),
    (
        "changed_agent_insert",
        "agents",
        "INSERT",
        "NEW TABLE AS n_rows",
        f"{_QUEUE} SELECT u.entra_object_id FROM n_rows a JOIN users u ON u.id = a.user_id "
        f"WHERE u.entra_object_id IS NOT NULL AND {_DELETE_MEMBER.format('u.entra_object_id')}",
    ),
    (
        "changed_agent_update",
        "agents",
        "UPDATE",
        "OLD TABLE AS o_rows NEW TABLE AS n_rows",
        f"{_QUEUE} SELECT u.entra_object_id FROM n_rows a JOIN o_rows o ON o.id = a.id "
        "JOIN users u ON u.id = a.user_id WHERE o.user_id IS DISTINCT FROM a.user_id "
        f"AND u.entra_object_id IS NOT NULL AND {_DELETE_MEMBER.format('u.entra_object_id')}",
    ),
    (
        "changed_entra_user_insert",
        "entra_users",
        "INSERT",
        "NEW TABLE AS n_rows",
        f"{_QUEUE} SELECT n.object_id FROM n_rows n WHERE {_WATCHED.format('n.object_id')}",
    ),
    (
        "changed_entra_user_update",
        "entra_users",
        "UPDATE",
        "OLD TABLE AS o_rows NEW TABLE AS n_rows",
        f"{_QUEUE} SELECT n.object_id FROM n_rows n JOIN o_rows o ON o.object_id = n.object_id "
        "WHERE (o.deleted_at IS NULL) <> (n.deleted_at IS NULL) "
        "OR o.account_enabled IS DISTINCT FROM n.account_enabled",
    ),
]


def _postgres_trigger(name: str, table: str, event: str, tables: str, insert: str) -> list[str]:
    return [
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n  {insert};\n  RETURN NULL;\nEND\n$$",
        f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {tables} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()",
    ]


def upgrade() -> None:
    op.create_table(
        "changed_objects",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("object_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_changed_objects_object", "changed_objects", ["object_id"])
    if op.get_bind().dialect.name == "postgresql":
        for name, table, event, tables, insert in _POSTGRES:
            for statement in _postgres_trigger(name, table, event, tables, insert):
                op.execute(statement)
    else:
        for name, table, event, when, body in _SQLITE:
            op.execute(_sqlite_trigger(name, table, event, when, body))
    op.execute(_SEED)
    # Live-records lookups (`merged_into_id IS NULL AND entra_object_id IN (…)`) read this
    # index whole on SQLite without statistics; only merged records need it.
    op.drop_index("ix_users_merged_into", table_name="users")
    merged = sa.text("merged_into_id IS NOT NULL")
    op.create_index(
        "ix_users_merged_into",
        "users",
        ["merged_into_id"],
        sqlite_where=merged,
        postgresql_where=merged,
    )


def downgrade() -> None:
    op.drop_index("ix_users_merged_into", table_name="users")
    op.create_index("ix_users_merged_into", "users", ["merged_into_id"])
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, *_ in _POSTGRES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_index("ix_changed_objects_object", table_name="changed_objects")
    op.drop_table("changed_objects")
