"""The status-like values a user, an untracking and a run can take (one declaration each)."""

from __future__ import annotations

from enum import StrEnum


class Tracking(StrEnum):
    TRACKED = "tracked"
    UNTRACKED = "untracked"


class UserStatus(StrEnum):
    ACTIVE = "active"
    PENDING = "pending"


class UntrackedBy(StrEnum):
    """Who untracked a user, which decides whether leaving the groups tracks them again."""

    ADMIN = "admin"  # never undone by a cycle
    ENTRASYNC = "entrasync"  # a watched group's membership (DNT or Delete)
    ENTRA_DELETED = "entra-deleted"  # the Entra account was deleted (sync.on_user_deleted)
    ENTRA_DISABLED = "entra-disabled"  # the account is disabled (sync.on_user_disabled)


class RunStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    HELD = "held"
    DRY_RUN = "dry-run"


class HeldStatus(StrEnum):
    """An action a threshold held: waiting, released by `approve`, or no longer valid."""

    HELD = "held"
    RELEASED = "released"
    OBSOLETE = "obsolete"
