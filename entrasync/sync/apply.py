"""Applying planned actions: one transaction per action, its audit record in the same one.

Each action re-checks the current state first, so applying a plan twice (a cycle re-run
after a crash, `approve` after a later cycle) never acts twice or writes a second record.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, select, update
from sqlalchemy.orm import Session

from entrasync.config import Config
from entrasync.domain.actions import ActionKind
from entrasync.domain.audit import SYSTEM_ACTOR, AuditEvent
from entrasync.domain.evidence import RANK_ADDRESS
from entrasync.domain.planning import PlannedAction
from entrasync.services import operations
from entrasync.store import audit, queries
from entrasync.store.db import Store
from entrasync.store.schema import (
    ActivityRow,
    AgentRow,
    AuditRow,
    EntraGroupRow,
    EntraKeyRow,
    EntraUserRow,
    IdentifierRow,
    RetiredIdentifierRow,
    ScheduledPurgeRow,
    UserRow,
)
from entrasync.sync.crashpoints import crashpoint

# Users purged per transaction: large enough that per-transaction costs vanish, small enough
# that one batch of heavy users does not hold the store's write lock for long.
PURGE_BATCH = 500


@dataclass(frozen=True)
class Applied:
    action: PlannedAction
    done: bool  # False: state had already moved on (nothing to do)


class ActionApplier:
    def __init__(
        self, store: Store, config: Config, run_id: str, now: datetime, actor: str = SYSTEM_ACTOR
    ) -> None:
        self.actor = actor
        self.store = store
        self.config = config
        self.run_id = run_id
        self.now = now

    def apply(self, action: PlannedAction) -> Applied:
        if action.kind == ActionKind.PURGE:
            return Applied(action, bool(self.apply_purges([action])))
        with self.store.transaction() as session:
            events = _HANDLERS[action.kind](self, session, action)
            if events:
                audit.append(
                    self.store,
                    session,
                    events,
                    actor=self.actor,
                    now=self.now,
                    run_id=self.run_id,
                )
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
        linked = 0
        with self.store.transaction() as session:
            users, objects = list(pairs), list(pairs.values())
            taken: set[str | None] = set()
            free_users: set[int] = set()
            for start in range(0, len(users), 500):
                taken.update(
                    session.scalars(
                        select(UserRow.entra_object_id).where(
                            UserRow.entra_object_id.in_(objects[start : start + 500])
                        )
                    )
                )
                free_users.update(
                    session.scalars(
                        select(UserRow.id).where(
                            UserRow.id.in_(users[start : start + 500]),
                            UserRow.entra_object_id.is_(None),
                        )
                    )
                )
            rows = [
                {"uid": uid, "obj": obj}
                for uid, obj in pairs.items()
                if uid in free_users and obj not in taken
            ]
            if rows:
                table = cast(Table, UserRow.__table__)
                session.execute(
                    update(table)
                    .where(table.c.id == bindparam("uid"))
                    .values(entra_object_id=bindparam("obj")),
                    rows,
                )
                linked = len(rows)
        return linked

    def apply_purges(self, actions: list[PlannedAction]) -> list[PlannedAction]:
        """PURGE actions, set-based: one transaction per batch of users, each user's audit
        record in it. A purge is a handful of statements whatever the user holds, so
        committing per user would cost more than the deleting (see bench/RESULTS.md).
        Returns the actions that did something; a user already without agents is skipped."""
        done: list[PlannedAction] = []
        for start in range(0, len(actions), PURGE_BATCH):
            with self.store.transaction() as session:
                done += self._purge_batch(session, actions[start : start + PURGE_BATCH])
                crashpoint("mid-action")
            crashpoint("between-actions")
        return done

    def _purge_batch(self, session: Session, actions: list[PlannedAction]) -> list[PlannedAction]:
        targets = self._purge_targets(session, actions)
        # Users without agents have nothing left to purge (a re-run after a crash, say).
        counts = operations.purge_counts(session, list(targets))
        targets = {uid: target for uid, target in targets.items() if uid in counts}
        if not targets:
            return []
        identifiers = queries.identifiers_by_user(session, list(targets))
        exported = {uid: self._export(session, uid) for uid in targets}
        details: dict[int, dict[str, Any]] = {}
        for by in {action.untracked_by for _, action in targets.values()}:
            users = [user for user, action in targets.values() if action.untracked_by == by]
            details.update(
                operations.purge_users(session, users, by, apply=True, counts=counts, now=self.now)
            )
        events = []
        for uid, (_, action) in targets.items():
            if exported[uid]:
                details[uid]["exported_to"] = exported[uid]
            events.append(
                AuditEvent(
                    "user.purged",
                    action.reason,
                    uid,
                    action.object_id,
                    identifiers[uid],
                    details[uid],
                )
            )
        audit.append(
            self.store, session, events, actor=self.actor, now=self.now, run_id=self.run_id
        )
        return [action for _, action in targets.values()]

    def _purge_targets(
        self, session: Session, actions: list[PlannedAction]
    ) -> dict[int, tuple[UserRow, PlannedAction]]:
        """Live user id -> (user, action); a user named by two actions is purged once."""
        ids = [a.user_id for a in actions if a.user_id is not None]
        loaded = {u.id: u for u in queries.users_by_id(session, ids)}
        targets: dict[int, tuple[UserRow, PlannedAction]] = {}
        for action in actions:
            user = loaded.get(action.user_id) if action.user_id is not None else None
            if user is not None and user.merged_into_id is not None:
                user = self._live_user(session, action)  # rare: follow the merge chain
            if user is not None and user.id not in targets:
                targets[user.id] = (user, action)
        return targets

    def record_unconfirmed(self, unconfirmed: list[tuple[PlannedAction, str]]) -> None:
        """Purges Graph did not confirm: not run, audited `purge.unconfirmed`."""
        if not unconfirmed:
            return
        with self.store.transaction() as session:
            events = [
                self._event(
                    "purge.unconfirmed",
                    session,
                    action,
                    {"why": why, "cause": action.cause, "planned_reason": action.reason},
                    reason=f"purge not run: {why}; the next cycle re-plans from a fresh read",
                )
                for action, why in unconfirmed
            ]
            audit.append(
                self.store, session, events, actor=self.actor, now=self.now, run_id=self.run_id
            )

    def group_names(self) -> dict[str, str]:
        with self.store.reading() as session:
            return {
                row.id: row.display_name
                for row in session.scalars(select(EntraGroupRow))
                if row.display_name
            }

    # -- handlers: the audit events to write, or None when there is nothing left to do -----

    def _retire(self, session: Session, action: PlannedAction) -> list[AuditEvent] | None:
        assert action.identifier is not None and action.user_id is not None
        kind, value = action.identifier
        row = session.scalar(
            select(IdentifierRow).where(
                IdentifierRow.user_id == action.user_id,
                IdentifierRow.kind == kind,
                IdentifierRow.value == value,
            )
        )
        if row is None:
            return None
        before = queries.identifiers_of(session, action.user_id)
        session.delete(row)
        session.add(
            RetiredIdentifierRow(
                user_id=action.user_id,
                kind=kind,
                value=value,
                retired_at=self.now,
                reason=action.reason,
            )
        )
        return [
            AuditEvent(
                "identifier.retired",
                action.reason,
                action.user_id,
                action.object_id,
                before,
                {"kind": kind, "value": value, "new_owner_entra_object_id": action.object_id},
            )
        ]

    def _schedule_purge(self, session: Session, action: PlannedAction) -> list[AuditEvent] | None:
        user = self._live_user(session, action)
        if user is None or session.get(ScheduledPurgeRow, user.id) is not None:
            return None
        assert action.due_at is not None and action.object_id is not None
        session.add(
            ScheduledPurgeRow(
                user_id=user.id,
                object_id=action.object_id,
                cause=str(action.cause),
                group_id=action.group_id,
                due_at=action.due_at,
                scheduled_at=self.now,
            )
        )
        details = {"due_at": action.due_at.isoformat(), "cause": action.cause}
        if action.group_id:
            details["group_id"] = action.group_id
        return [self._event("purge.scheduled", session, action, details, user)]

    def _cancel_purge(self, session: Session, action: PlannedAction) -> list[AuditEvent] | None:
        row = session.get(ScheduledPurgeRow, action.user_id)
        if row is None:
            return None
        session.delete(row)
        details = {"was_due_at": row.due_at.isoformat(), "cause": row.cause}
        return [self._event("purge.cancelled", session, action, details)]

    def _link(self, session: Session, action: PlannedAction) -> list[AuditEvent] | None:
        user = session.get(UserRow, action.user_id)
        taken = session.scalar(
            select(UserRow.id).where(UserRow.entra_object_id == action.object_id)
        )
        if user is None or user.entra_object_id is not None or taken is not None:
            return None
        user.entra_object_id = action.object_id
        return []  # linking is bookkeeping, not an action on the person: counted, not audited

    def _merge(self, session: Session, action: PlannedAction) -> list[AuditEvent] | None:
        target = session.get(UserRow, action.user_id)
        if target is None or target.merged_into_id is not None:
            return None
        events = []
        for source_id in action.source_user_ids:
            source = session.get(UserRow, source_id)
            if source is None or source.merged_into_id is not None:
                continue
            identifiers = queries.identifiers_of(session, source.id)
            details = operations.merge_users(
                session, source, target, self.config.merge.agent_merge, apply=True
            )
            events.append(
                AuditEvent(
                    "user.merged", action.reason, source.id, action.object_id, identifiers, details
                )
            )
        if target.entra_object_id is None and action.object_id:
            taken = session.scalar(
                select(UserRow.id).where(UserRow.entra_object_id == action.object_id)
            )
            if taken is None:
                target.entra_object_id = action.object_id
        return events

    def _merge_skipped(self, session: Session, action: PlannedAction) -> list[AuditEvent] | None:
        already = session.scalar(
            select(
                exists().where(
                    AuditRow.action == "merge.skipped",
                    AuditRow.user_id == action.user_id,
                    AuditRow.entra_object_id == action.object_id,
                )
            )
        )
        if already:
            return None
        return [self._event("merge.skipped", session, action, {})]

    def _preregister(self, session: Session, action: PlannedAction) -> list[AuditEvent] | None:
        exists_already = session.scalar(
            select(UserRow.id).where(UserRow.entra_object_id == action.object_id)
        )
        entra = session.get(EntraUserRow, action.object_id)
        if exists_already is not None or entra is None:
            return None
        user = UserRow(
            tracking="untracked",
            untracked_by="entrasync",
            status="active",
            entra_object_id=action.object_id,
            display_name=entra.display_name,
            created_at=self.now,
        )
        session.add(user)
        session.flush()
        owned = select(IdentifierRow.id).where(
            IdentifierRow.kind == EntraKeyRow.kind, IdentifierRow.value == EntraKeyRow.value
        )
        keys = session.execute(
            select(EntraKeyRow.kind, EntraKeyRow.value).where(
                EntraKeyRow.object_id == action.object_id,
                EntraKeyRow.rank <= RANK_ADDRESS,
                ~owned.exists(),
            )
        ).all()
        session.add_all(IdentifierRow(user_id=user.id, kind=k, value=v) for k, v in keys)
        session.flush()
        return [
            AuditEvent(
                "user.preregistered",
                action.reason,
                user.id,
                action.object_id,
                queries.identifiers_of(session, user.id),
                {"tracking": "untracked"},
            )
        ]

    def _untrack(self, session: Session, action: PlannedAction) -> list[AuditEvent] | None:
        user = self._live_user(session, action)
        if user is None or user.tracking == "untracked":
            return None
        details = operations.set_tracking(
            session, user, "untracked", action.untracked_by, apply=True
        )
        return [self._event("user.untracked", session, action, details, user)]

    def _retrack(self, session: Session, action: PlannedAction) -> list[AuditEvent] | None:
        user = self._live_user(session, action)
        if user is None or user.tracking == "tracked" or user.untracked_by != "entrasync":
            return None
        details = operations.set_tracking(session, user, "tracked", "entrasync", apply=True)
        return [self._event("user.tracked", session, action, details, user)]

    # -- helpers -----------------------------------------------------------------------------

    def _live_user(self, session: Session, action: PlannedAction) -> UserRow | None:
        user = session.get(UserRow, action.user_id) if action.user_id is not None else None
        while user is not None and user.merged_into_id is not None:
            user = session.get(UserRow, user.merged_into_id)
        return user

    def _event(
        self,
        name: str,
        session: Session,
        action: PlannedAction,
        details: dict[str, Any],
        user: UserRow | None = None,
        reason: str | None = None,
    ) -> AuditEvent:
        user_id = user.id if user is not None else action.user_id
        identifiers = queries.identifiers_of(session, user_id) if user_id is not None else []
        return AuditEvent(
            name, reason or action.reason, user_id, action.object_id, identifiers, details
        )

    def _export(self, session: Session, user_id: int) -> str | None:
        """The user's history as gzip JSON Lines (mode 0600) before it is purged."""
        directory = self.config.safety.export_dir
        if directory is None:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        path = (
            Path(directory) / f"user-{user_id}-{self.now:%Y%m%dT%H%M%SZ}-{self.run_id[:8]}.jsonl.gz"
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        rows = session.execute(
            select(ActivityRow)
            .join(AgentRow, AgentRow.id == ActivityRow.agent_id)
            .where(AgentRow.user_id == user_id)
            .order_by(ActivityRow.id)
            .execution_options(yield_per=5000)
        ).scalars()
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
            for row in rows:
                record = {
                    "agent_id": row.agent_id,
                    "device": row.device,
                    "start": row.start.isoformat(),
                    "duration_s": row.duration_s,
                    "app": row.app,
                    "title": row.title,
                }
                out.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        return str(path)


_HANDLERS = {
    ActionKind.LINK: ActionApplier._link,
    ActionKind.RETIRE_IDENTIFIER: ActionApplier._retire,
    ActionKind.SCHEDULE_PURGE: ActionApplier._schedule_purge,
    ActionKind.CANCEL_PURGE: ActionApplier._cancel_purge,
    ActionKind.MERGE: ActionApplier._merge,
    ActionKind.MERGE_SKIPPED: ActionApplier._merge_skipped,
    ActionKind.PREREGISTER: ActionApplier._preregister,
    ActionKind.UNTRACK: ActionApplier._untrack,
    ActionKind.RETRACK: ActionApplier._retrack,
}
