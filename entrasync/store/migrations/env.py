"""Alembic environment: runs against the engine the Store hands over (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from entrasync.store import (
    checkpoint_rows,  # noqa: F401  (registers audit_checkpoints)
    forward_rows,  # noqa: F401  (registers audit_forward)
    tally,  # noqa: F401  (registers license_tally and the entra_users indexes)
)
from entrasync.store.schema import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
