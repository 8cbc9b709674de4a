"""PostgreSQL's queue triggers plan their statement at every call

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 06:20:00

The queue triggers of 0010 run per statement over the statement's transition tables. PL/pgSQL
keeps the plan of a statement without parameters for the rest of the session, made for the
transition tables of the first call. A session whose first users UPDATE was a large one (the
first sync links every record in one statement) kept a plan for 100,000 rows, and every
one-row UPDATE after it ran that plan: 16 ms per untrack action in a first sync at 20,000
users, 210 ms when measured in `psql` after an UPDATE of 100,000 users; a first sync at
100,000 users took 385 s instead of 160 (bench/RESULTS.md, thirteenth round). `EXECUTE` plans the statement at each call for the rows it has (0.2–0.4 ms
for one row, the same after a large UPDATE). SQLite's triggers run per row: unchanged.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _triggers_of_0010() -> ModuleType:
    """The trigger list of 0010 (name, table, event, transition tables, INSERT … SELECT)."""
    path = Path(__file__).with_name("0010_changed_objects.py")
    spec = importlib.util.spec_from_file_location("entrasync_migration_0010", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replace(body: str) -> None:
    for name, _table, _event, _tables, insert in _triggers_of_0010()._POSTGRES:
        op.execute(
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n  {body.format(insert=insert)};\n  RETURN NULL;\nEND\n$$"
        )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _replace("EXECUTE $q${insert}$q$")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _replace("{insert}")
