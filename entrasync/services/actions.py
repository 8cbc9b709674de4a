"""The audited-action tail every admin and pending action shares.

One unit of work: take the writers' lock, find the user, run the action's operation, check
the license limit when the action can take licenses, append one audit record. A dry run
does the same work and then discards the transaction (or, for an admin action, asks the
operation only to describe itself), so what it reports is what the real action would do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from entrasync.config import Config
from entrasync.domain.audit import AuditEvent
from entrasync.errors import ActionRefused
from entrasync.store import operations, queries
from entrasync.store.account import terms_of
from entrasync.store.db import Store
from entrasync.store.pending import find_pending
from entrasync.store.schema import UserRow
from entrasync.store.uow import UnitOfWork

Details = dict[str, Any]
# Changes the store for one user (only describes the change when `apply` is false) and
# returns (audit reason, details).
Operation = Callable[[UnitOfWork, UserRow, bool], tuple[str, Details]]


def merge_into(
    config: Config,
    target_ident: str,
    reason: Callable[[UserRow], str],
    refuse: Callable[[UserRow, UserRow], None] | None = None,
) -> Operation:
    """The operation that merges the user acted on into the user `target_ident` names (agents
    merged per ``merge.agent_merge``), audited with `reason(target)`; `refuse(user, target)`
    may raise first, for a pair that must not merge."""

    def operation(uow: UnitOfWork, user: UserRow, apply: bool) -> tuple[str, Details]:
        target = queries.find_user(uow.session, target_ident)
        if refuse is not None:
            refuse(user, target)
        details = operations.merge_users(
            uow.session, user, target, config.merge.agent_merge, apply=apply
        )
        return reason(target), details

    return operation


@dataclass(frozen=True)
class ActionResult:
    action: str
    user_id: int
    applied: bool
    details: Details
    audit_seq: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _LicenseCheck:
    """The used licenses before a pending action, to refuse one that goes over the limit."""

    limit: int
    used_before: int
    waited_s: int

    @classmethod
    def start(cls, uow: UnitOfWork, config: Config, user: UserRow) -> _LicenseCheck:
        limit = terms_of(uow.account(config.account)).limit
        waited = int((uow.now - (user.pending_since or user.created_at)).total_seconds())
        return cls(limit, queries.used_licenses(uow.session), max(0, waited))

    def finish(self, uow: UnitOfWork, action: str, label: str, details: Details) -> Details:
        used_after = queries.used_licenses(uow.session)
        if used_after > self.limit and used_after > self.used_before:
            raise ActionRefused(
                f"{action} {label} would use {used_after} licenses, "
                f"{self.limit} are purchased: free a license first (entrasync users purge or "
                "users merge) or raise account.purchased_licenses"
            )
        return {
            **details,
            "waited_s": self.waited_s,
            "licenses_used_before": self.used_before,
            "licenses_used_after": used_after,
            "licenses_purchased": self.limit,
        }


def audited_action(
    store: Store,
    config: Config,
    ident: str,
    action: str,
    operation: Operation,
    *,
    actor: str,
    now: datetime,
    dry_run: bool,
    pending: bool = False,
) -> ActionResult:
    """Run `operation` on the user `ident` names as one audited transaction. A `pending`
    action needs a pending user, always applies (a dry run is discarded: the license check
    must see the result) and is refused if it takes a license that is not free."""
    with store.unit_of_work(now, actor=actor, account=config.account, notify=config.notify) as uow:
        # Serialise with every other writer before reading the user, so that the details
        # audited are the state the change was made on.
        uow.lock()
        session = uow.session
        user = find_pending(session, ident) if pending else queries.find_user(session, ident)
        identifiers = queries.identifiers_of(session, user.id)
        entra_object_id = user.entra_object_id
        check = _LicenseCheck.start(uow, config, user) if pending else None
        reason, details = operation(uow, user, pending or not dry_run)
        session.flush()
        if check is not None:
            details = check.finish(uow, action, label(identifiers, user.id), details)
        if dry_run:
            uow.discard()
            return ActionResult(action, user.id, False, details, None)
        event = AuditEvent(action, reason, user.id, entra_object_id, identifiers, details)
        return ActionResult(action, user.id, True, details, uow.audit(event)[0])


def label(identifiers: list[dict[str, str]], user_id: int) -> str:
    """`user 7 (jdoe@contoso.com)`: a user as an error message names them."""
    for kind in ("upn", "email", "employee_id", "logon"):
        for ident in identifiers:
            if ident["kind"] == kind:
                return f"user {user_id} ({ident['value']})"
    return f"user {user_id}"
