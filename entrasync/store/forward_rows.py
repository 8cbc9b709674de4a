"""The `audit_forward` table: how far each forwarding target has received the audit log
(kept apart from schema.py, which is at its size limit; migrations/env.py imports this module
so Alembic sees it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from entrasync.store.schema import Base, BigId, UtcDateTime


class AuditForwardRow(Base):
    """One row per target (its display form: no credentials, no query string). `delivered_seq`
    only grows; a new target starts at 0 and receives the whole log. `claimed_by` and
    `claimed_until` are a lease: one process forwards at a time, so records leave in order."""

    __tablename__ = "audit_forward"

    target: Mapped[str] = mapped_column(String(512), primary_key=True)
    delivered_seq: Mapped[int] = mapped_column(BigId, default=0)
    # The delivered record's hash: a log cut or rebuilt after delivery reuses seqs, and only
    # the hash shows that the record at `delivered_seq` is no longer the one delivered.
    delivered_hash: Mapped[str | None] = mapped_column(String(64))
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
