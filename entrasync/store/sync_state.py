"""The Graph delta streams' links (`sync_state`): one row per stream, committed with the
mirror changes that produced it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from entrasync.store.schema import SyncStateRow
from entrasync.store.upsert import insert_for


def forget_link(session: Session, stream: str) -> None:
    """A page of `stream` is being applied: until the round's last page stores the new
    link, the stream has none. A replay from the old link reports only the *net* change
    since then, so it could not undo what an applied page did if the object changed back
    meanwhile (removed, then re-added): a round cut short is followed by a full round of
    that stream, diffed against the mirror."""
    session.execute(
        update(SyncStateRow).where(SyncStateRow.stream == stream).values(delta_link=None)
    )


def stream_names(session: Session) -> list[str]:
    """Every stream with a row, with or without a link."""
    return list(session.scalars(select(SyncStateRow.stream)))


def save_links(
    session: Session, links: Mapping[str, str], now: datetime, full: Iterable[str] = ()
) -> None:
    """Store each stream's new link; `full` streams finished a full round now."""
    if not links:
        return
    stmt = insert_for(session, SyncStateRow)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["stream"],
            set_={"delta_link": stmt.excluded.delta_link, "updated_at": stmt.excluded.updated_at},
        ),
        [{"stream": s, "delta_link": link, "updated_at": now} for s, link in links.items()],
    )
    done = [s for s in full if s in links]
    if done:
        session.execute(
            update(SyncStateRow).where(SyncStateRow.stream.in_(done)).values(full_at=now)
        )


def oldest_full_round(session: Session) -> datetime | None:
    """When the stream with the oldest full round last finished one (None: never)."""
    rows = session.execute(select(SyncStateRow.full_at)).scalars().all()
    if not rows or any(r is None for r in rows):
        return None
    return min(r for r in rows if r is not None)


def load_links(session: Session) -> dict[str, str]:
    return {
        stream: link
        for stream, link in session.execute(select(SyncStateRow.stream, SyncStateRow.delta_link))
        if link
    }


def drop_streams(session: Session, streams: Iterable[str]) -> None:
    names = list(streams)
    if names:
        session.execute(delete(SyncStateRow).where(SyncStateRow.stream.in_(names)))
