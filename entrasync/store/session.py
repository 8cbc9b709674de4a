"""The session type that code above the store names in its signatures (a `Store.reading()`
snapshot, or `uow.session`), so that only `entrasync.store` imports SQLAlchemy."""

from __future__ import annotations

from sqlalchemy.orm import Session

__all__ = ["Session"]
