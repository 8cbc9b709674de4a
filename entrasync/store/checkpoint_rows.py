"""The `audit_checkpoints` table: signed heads of the audit chain (kept apart from schema.py,
which is at its size limit; migrations/env.py imports this module so Alembic sees it)."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from entrasync.store.schema import Base, BigId


class AuditCheckpointRow(Base):
    """One signed chain head. A copy also goes to `audit.checkpoint_dir`: rows here can be
    deleted along with the records they cover, the files there are the anchor."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigId, index=True)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(String(128))
