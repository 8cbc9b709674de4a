"""Applying planned actions: one unit of work per action, its audit records in the same one.

Each action re-checks the current state first, so applying a plan twice (a cycle re-run
after a crash, `approve` after a later cycle) never acts twice or writes a second record.
How a kind is applied is declared once (`ACTIONS[kind].mode`, domain/actions.py).
"""

from __future__ import annotations

import gc
import gzip
import json
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from entrasync.config import Config
from entrasync.domain.actions import ACTIONS, ApplyMode
from entrasync.domain.audit import SYSTEM_ACTOR, AuditEvent
from entrasync.domain.planning import PlannedAction
from entrasync.store import actions as rows
from entrasync.store import groups as group_rows
from entrasync.store import purge, tally
from entrasync.store.db import Store
from entrasync.store.uow import UnitOfWork
from entrasync.sync.crashpoints import crashpoint
from entrasync.sync.handlers import HANDLERS, event

# Users purged per transaction: large enough that per-transaction costs vanish, small enough
# that one batch of heavy users does not hold the store's write lock for long.
PURGE_BATCH = 500


@dataclass(frozen=True)
class Applied:
    action: PlannedAction
    done: bool  # False: state had already moved on (nothing to do)


@dataclass(eq=False)
class ActionApplier:
    store: Store
    config: Config
    run_id: str
    now: datetime
    actor: str = SYSTEM_ACTOR

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        return self.store.unit_of_work(self.now, actor=self.actor, run_id=self.run_id)

    def apply(self, action: PlannedAction) -> Applied:
        mode = ACTIONS[action.kind].mode
        if mode == ApplyMode.PURGES:
            return Applied(action, bool(self.apply_purges([action])))
        if mode == ApplyMode.LINKS:
            return Applied(action, bool(self.apply_links([action])))
        with self.unit_of_work() as uow:
            events = HANDLERS[action.kind](uow, action, self.config)
            uow.audit(*(events or ()))
            crashpoint("mid-action")  # changes made, transaction not yet committed
        crashpoint("between-actions")
        return Applied(action, events is not None)

    def apply_links(self, actions: list[PlannedAction]) -> int:
        """All LINK actions in one transaction, set-based: a first sync links every record
        of the tenant, and linking is bookkeeping (not audited), so it need not pay one
        transaction per record. Records or objects already linked are left alone."""
        pairs = {a.user_id: a.object_id for a in actions if a.user_id is not None and a.object_id}
        if not pairs:
            return 0
        with self.unit_of_work() as uow:
            return rows.link_users(uow.session, pairs)

    def apply_purges(self, actions: list[PlannedAction]) -> list[PlannedAction]:
        """PURGE actions, set-based: one transaction per batch of users, each user's audit
        record in it. A purge is a handful of statements whatever the user holds, so
        committing per user would cost more than the deleting (see bench/RESULTS.md).
        Returns the actions that did something; a user already without agents is skipped."""
        done: list[PlannedAction] = []
        for start in range(0, len(actions), PURGE_BATCH):
            with _no_cycle_collection(), self.unit_of_work() as uow:
                done += self._purge_batch(uow, actions[start : start + PURGE_BATCH])
                crashpoint("mid-action")
            crashpoint("between-actions")
        return done

    def _purge_batch(self, uow: UnitOfWork, actions: list[PlannedAction]) -> list[PlannedAction]:
        session = uow.session
        tally.lock(session)  # the users read next stand for the tally's readings
        # Users without agents have nothing left to purge (a re-run after a crash, say).
        targets = {
            uid: target
            for uid, target in _purge_targets(uow, actions).items()
            if target[0].agent_ids
        }
        if not targets:
            return []
        exported = {uid: self._export(uow, uid) for uid in targets}
        chain = uow.chain()
        by: dict[str, list[purge.Subject]] = {}
        for user, action in targets.values():
            by.setdefault(action.untracked_by, []).append(user)
        with purge.purging(session, by, self.now) as details:
            # built while the database runs the rest (driver.pipelined); this block must
            # not touch the session: on SQLite a thread is using its connection
            records = chain.records(
                [
                    AuditEvent(
                        "user.purged",
                        action.reason,
                        uid,
                        action.object_id,
                        user.identifiers,
                        _exported(details[uid], exported[uid]),
                    )
                    for uid, (user, action) in targets.items()
                ]
            )
        uow.write_records(records)
        return [action for _, action in targets.values()]

    def record_unconfirmed(self, unconfirmed: list[tuple[PlannedAction, str]]) -> None:
        """Purges Graph did not confirm: not run, audited `purge.unconfirmed`."""
        if not unconfirmed:
            return
        with self.unit_of_work() as uow:
            uow.audit(
                *(
                    event(
                        uow,
                        action,
                        {"why": why, "cause": action.cause, "planned_reason": action.reason},
                        reason=f"purge not run: {why}; the next cycle re-plans from a fresh read",
                        name="purge.unconfirmed",
                    )
                    for action, why in unconfirmed
                )
            )

    def group_names(self) -> dict[str, str]:
        with self.store.reading() as session:
            return group_rows.group_names(session)

    def _export(self, uow: UnitOfWork, user_id: int) -> str | None:
        """The user's history as gzip JSON Lines (mode 0600) before it is purged."""
        directory = self.config.safety.export_dir
        if directory is None:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        name = f"user-{user_id}-{self.now:%Y%m%dT%H%M%SZ}-{self.run_id[:8]}.jsonl.gz"
        path = Path(directory) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
            for record in rows.history(uow.session, user_id):
                out.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        return str(path)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused for one purge batch. A batch allocates tens of
    thousands of short-lived objects (ids, rows, records), none in a cycle: reference
    counting frees them when the batch ends. Left on, the collector ran during most
    batches and walked every object of the process each time (about 12 ms of a 500-user
    batch's 110 ms of CPU with 100,000 objects alive; more in a larger process; bench:
    purge)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _exported(details: dict[str, Any], path: str | None) -> dict[str, Any]:
    return {**details, "exported_to": path} if path else details


def _purge_targets(
    uow: UnitOfWork, actions: list[PlannedAction]
) -> dict[int, tuple[purge.Subject, PlannedAction]]:
    """Live user id -> (user, action); a user named by two actions is purged once."""
    ids = [a.user_id for a in actions if a.user_id is not None]
    by_id = {u.id: u for u in purge.subjects(uow.session, ids)}
    targets: dict[int, tuple[purge.Subject, PlannedAction]] = {}
    for action in actions:
        user = by_id.get(action.user_id) if action.user_id is not None else None
        if user is not None and user.merged_into_id is not None:
            user = _survivor(uow, by_id, user.id)  # rare: follow the merge chain
        if user is not None and user.id not in targets:
            targets[user.id] = (user, action)
    return targets


def _survivor(
    uow: UnitOfWork, by_id: dict[int, purge.Subject], merged: int
) -> purge.Subject | None:
    """The live record `merged` was merged into, read as `purge.subjects` reads (its agents,
    and its identifiers for the audit record)."""
    live = rows.live_user(uow.session, merged)
    if live is None:
        return None
    if live.id not in by_id:
        (by_id[live.id],) = purge.subjects(uow.session, [live.id])
    return by_id[live.id]
