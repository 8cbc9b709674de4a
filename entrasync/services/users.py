"""`entrasync users …`: show, list, and the audited admin actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from entrasync.config import Config
from entrasync.domain.status import Tracking, UntrackedBy
from entrasync.services.actions import (
    ActionResult,
    Details,
    Operation,
    audited_action,
    merge_into,
)
from entrasync.store import operations, queries
from entrasync.store import purge as purging
from entrasync.store import users as user_rows
from entrasync.store.db import Store
from entrasync.store.schema import UserRow
from entrasync.store.uow import UnitOfWork

__all__ = ["ActionResult", "list_users", "merge", "purge", "show_user", "track", "untrack"]


def show_user(store: Store, ident: str) -> dict[str, Any]:
    with store.reading() as session:
        return user_rows.view(session, queries.find_user(session, ident))


def list_users(
    store: Store, *, tracking: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """All surviving user records in the `users show` shape (plus `activity_rows`)."""
    with store.reading() as session:
        return user_rows.list_views(session, tracking=tracking, status=status)


class AdminAction(Protocol):
    def __call__(
        self, store: Store, config: Config, ident: str, *, actor: str, now: datetime, dry_run: bool
    ) -> ActionResult: ...


def _admin_action(action: str, operation: Operation) -> AdminAction:
    def run(
        store: Store, config: Config, ident: str, *, actor: str, now: datetime, dry_run: bool
    ) -> ActionResult:
        return audited_action(
            store, config, ident, action, operation, actor=actor, now=now, dry_run=dry_run
        )

    return run


def _set_tracking(tracking: Tracking, reason: str) -> Operation:
    def operation(uow: UnitOfWork, user: UserRow, apply: bool) -> tuple[str, Details]:
        by = UntrackedBy.ADMIN
        return reason, operations.set_tracking(uow.session, user, tracking, by, apply=apply)

    return operation


def _purge(uow: UnitOfWork, user: UserRow, apply: bool) -> tuple[str, Details]:
    details = purging.purge_user(uow.session, user, UntrackedBy.ADMIN, apply=apply)
    return "purged by an administrator", details


# Stop collecting data for a user (their history is kept and still uses licenses).
untrack = _admin_action(
    "user.untracked", _set_tracking(Tracking.UNTRACKED, "untracked by an administrator")
)
track = _admin_action(
    "user.tracked", _set_tracking(Tracking.TRACKED, "tracked again by an administrator")
)
# Delete the user's history and agents; identifiers stay, the user is Untracked.
purge = _admin_action("user.purged", _purge)


def merge(
    store: Store,
    config: Config,
    source_ident: str,
    target_ident: str,
    *,
    actor: str,
    now: datetime,
    dry_run: bool,
) -> ActionResult:
    operation = merge_into(
        config, target_ident, lambda _target: f"merged into {target_ident!r} by an administrator"
    )
    run = _admin_action("user.merged", operation)
    return run(store, config, source_ident, actor=actor, now=now, dry_run=dry_run)
