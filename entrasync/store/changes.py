"""The queue of Entra objects a cycle re-examines (table `changed_objects`, migration 0010).

Triggers queue an object whenever something that decides its watched-group consequences
changes (membership, a record's tracking, link, merge or purge, a Delete member's agents,
the account deleted, restored, disabled or enabled), whoever writes it. The planner's
membership queries look only at queued objects (store/facts.py `Examine.QUEUED`), so a
steady cycle costs what changed, not the size of the watched groups.

An object leaves the queue only when it is in line: `settle`, under the writers' lock and the
settings the queue was last checked under, reads the entries, asks the two
membership queries which of their objects are still out of line, and deletes the entries it
read of the others, by `seq`. An object whose action was held, failed, not confirmed or
suspended (suspect group) stays queued; an entry written after the read (a concurrent
writer, on PostgreSQL) is not among those deleted. So every object out of line is queued,
and planning from the queue plans what planning from every member would.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, exists, insert, select

from entrasync.store import daemon_state, membership
from entrasync.store.changed_rows import ChangedObjectRow
from entrasync.store.id_lists import chunks
from entrasync.store.membership import Rules
from entrasync.store.session import Session
from entrasync.store.uow import UnitOfWork


def settle(uow: UnitOfWork, rules: Rules, page: int = 5_000) -> int:
    """Delete the entries of queued objects that are in line now, `page` entries at a time
    (a first sync queues every watched member several times); returns how many.

    Only under the rules the queue was last checked under: a process still on older
    settings (a daemon not yet reloaded, beside an admin's `sync` on new ones) would judge
    "in line" by them and drop what the new ones put out of line. It deletes nothing then;
    its next cycle re-examines every object under its own settings."""
    uow.lock()
    session = uow.session
    if rules_changed(session, rules):
        return 0
    after, settled = 0, 0
    while True:
        entries = session.execute(
            select(ChangedObjectRow.seq, ChangedObjectRow.object_id)
            .where(ChangedObjectRow.seq > after)
            .order_by(ChangedObjectRow.seq)
            .limit(page)
        ).all()
        if not entries:
            return settled
        after = entries[-1].seq
        still: set[str] = set()
        for objects in chunks(sorted({o for _, o in entries})):
            still.update(session.scalars(membership.out_of_line(objects, rules)))
        gone = [seq for seq, o in entries if o not in still]
        for seqs in chunks(gone):
            session.execute(delete(ChangedObjectRow).where(ChangedObjectRow.seq.in_(seqs)))
        settled += len(gone)


RULES_KEY = "changed_objects"  # daemon_state: the `Rules` the queue was last checked under


def rules_changed(session: Session, rules: Rules) -> bool:
    """Whether the settings that decide what is out of line changed since the queue was last
    checked (an object in line under the old ones may be out of line now, unqueued)."""
    return daemon_state.get(session, RULES_KEY) != rules.as_dict()


def reconcile(uow: UnitOfWork, rules: Rules) -> int:
    """Queue every object out of line that is not queued, and say how many there were, and
    remember `rules`: a full read's check of the triggers (0 unless a change bypassed them),
    and the re-examination after a change of the rules. It reads every watched member, as a
    full read reads every Entra object anyway."""
    uow.lock()
    session = uow.session
    daemon_state.put(uow, RULES_KEY, rules.as_dict())
    every = membership.out_of_line(None, rules).subquery()
    missed = list(
        session.scalars(
            select(every.c.object_id).where(
                ~exists().where(ChangedObjectRow.object_id == every.c.object_id)
            )
        )
    )
    if missed:
        session.execute(insert(ChangedObjectRow), [{"object_id": o} for o in missed])
    return len(missed)


def enqueue(session: Session, object_ids: Sequence[str]) -> None:
    """Queue these objects for the next plan whatever changed (`sync --user` examines its
    person even when nothing about them changed, e.g. after the settings did)."""
    if object_ids:
        session.execute(insert(ChangedObjectRow), [{"object_id": o} for o in object_ids])
