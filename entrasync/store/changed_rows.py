"""Table `changed_objects` (migration 0010): the queue of Entra objects to re-examine."""

from __future__ import annotations

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from entrasync.store.schema import Base, BigId


class ChangedObjectRow(Base):
    """An Entra object whose watched-group consequences may be out of line (migration 0010):
    queued by triggers on every change to what decides them, removed by the cycle once the
    object is in line (store/changes.py). One object may be queued several times."""

    __tablename__ = "changed_objects"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    object_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_changed_objects_object", "object_id"),)
