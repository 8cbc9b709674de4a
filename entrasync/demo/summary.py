"""What `entrasync demo` reports: every number of its summary, read back from the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from entrasync.domain.actions import ActionKind
from entrasync.domain.planning import PlannedAction
from entrasync.domain.status import Tracking
from entrasync.store import demo_figures
from entrasync.store.account import license_status
from entrasync.store.db import Store
from entrasync.sync.cycle import CycleResult


@dataclass(frozen=True)
class Snapshot:
    used: int
    purchased: int
    pending: int
    tracked: int
    untracked: int
    audit_records: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Outcome:
    """One line of the summary: how many people an action touched and the licenses it freed."""

    people: int
    licenses_freed: int


@dataclass
class DemoResult:
    directory: Path
    config_path: Path
    store_path: Path
    store_url: str
    emulator_url: str
    tenant_people: int
    before: Snapshot
    after: Snapshot
    plan_actions: int
    plan_licenses_freed: int
    run_id: str
    run_status: str
    outcomes: dict[str, Outcome]
    pending_waiting: list[str]  # UPNs still in the queue after the cycle
    audit_written: dict[str, int]  # by action, records of the cycle's run
    audit_verified: int
    audit_problem: str | None
    example_rename: tuple[str, str] | None  # (old upn, new upn) of a merged person
    seconds: float = 0.0

    @property
    def licenses_freed(self) -> int:
        return self.before.used - self.after.used

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "config": str(self.config_path),
            "store": str(self.store_path),
            "store_url": self.store_url,
            "emulator_url": self.emulator_url,
            "tenant_people": self.tenant_people,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "licenses_freed": self.licenses_freed,
            "plan": {"actions": self.plan_actions, "licenses_freed": self.plan_licenses_freed},
            "run": {"id": self.run_id, "status": self.run_status},
            "outcomes": {k: dict(v.__dict__) for k, v in self.outcomes.items()},
            "pending_waiting": self.pending_waiting,
            "audit": {
                "written": self.audit_written,
                "verified": self.audit_verified,
                "ok": self.audit_problem is None,
                "problem": self.audit_problem,
            },
            "example_rename": list(self.example_rename) if self.example_rename else None,
            "seconds": round(self.seconds, 2),
        }


def snapshot(store: Store, now: datetime) -> Snapshot:
    with store.reading() as session:
        status = license_status(session, now)
        tracking = demo_figures.tracking_counts(session)
        audit_records = demo_figures.audit_count(session)
    return Snapshot(
        status.used,
        status.purchased,
        status.pending,
        tracking.get(Tracking.TRACKED, 0),
        tracking.get(Tracking.UNTRACKED, 0),
        audit_records,
    )


def pending_ids(store: Store) -> set[int]:
    with store.reading() as session:
        return demo_figures.pending_ids(session)


def upns_of(store: Store, user_ids: set[int]) -> list[str]:
    with store.reading() as session:
        return demo_figures.upns_of(session, user_ids)


def resolved(store: Store, pending_before: set[int]) -> dict[int, str]:
    """Pending users the cycle took out of the queue, and how."""
    with store.reading() as session:
        return demo_figures.left_queue(session, pending_before)


def merged_objects(store: Store) -> set[str]:
    """Entra objects whose record absorbed another one (a merge survivor)."""
    with store.reading() as session:
        return demo_figures.merge_survivors(session)


def outcomes(
    result: CycleResult, pending_before: set[int], resolved: dict[int, str]
) -> dict[str, Outcome]:
    def applied(actions: list[PlannedAction]) -> list[PlannedAction]:
        # A cycle applies every planned action of a kind it did not hold.
        return [] if actions and actions[0].kind.value in result.held else actions

    the_plan = result.plan
    merges = applied(the_plan.of_kind(ActionKind.MERGE))
    duplicate = [a for a in merges if not set(a.source_user_ids) & pending_before]
    from_queue = [a for a in merges if set(a.source_user_ids) & pending_before]

    def outcome(actions: list[PlannedAction], people: int | None = None) -> Outcome:
        count = len(actions) if people is None else people
        return Outcome(count, sum(a.licenses_freed for a in actions))

    return {
        "merged": outcome(duplicate),
        "pending_resolved": outcome(from_queue, len(resolved)),
        "untracked": outcome(applied(the_plan.of_kind(ActionKind.UNTRACK))),
        "purged": outcome(applied(the_plan.of_kind(ActionKind.PURGE))),
        "preregistered": outcome(applied(the_plan.of_kind(ActionKind.PREREGISTER))),
    }
