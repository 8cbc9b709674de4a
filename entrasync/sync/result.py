"""What a cycle did and planned: `CycleResult`, read by the CLI, the daemon and the demo."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from entrasync.domain.actions import ActionKind
from entrasync.domain.plan_model import Plan, PlannedAction, Tally
from entrasync.domain.status import RunStatus
from entrasync.store import runs

if TYPE_CHECKING:
    from entrasync.sync.read import Planned, ReadResult


@dataclass
class CycleResult:
    run_id: str
    status: str  # a RunStatus: ok | held | dry-run (a failed cycle raises)
    # What to show of the plan: the whole plan, or, for a plan made in parts, up to
    # `plan_model.LISTED` actions of each kind (`tally` has the exact figures).
    plan: Plan
    resync: bool = False
    graph_requests: int = 0
    applied: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    suspect: dict[str, str] = field(default_factory=dict)  # watched group -> why
    unconfirmed: list[tuple[PlannedAction, str]] = field(default_factory=list)
    full_read: bool = False
    tally: Tally = field(default_factory=Tally)  # given for a plan made in parts

    def __post_init__(self) -> None:
        if not (self.tally.count or self.tally.scheduled or self.tally.suspended):
            self.tally = Tally.of(self.plan)

    @classmethod
    def of(cls, run_id: str, status: RunStatus, planned: Planned) -> CycleResult:
        return cls.started(run_id, status, planned.read, planned.linked, planned.plan)

    @classmethod
    def started(
        cls, run_id: str, status: RunStatus, read: ReadResult, linked: int, plan: Plan | None = None
    ) -> CycleResult:
        """A run after its read (and `linked` records linked ahead of the plan); `plan`:
        the plan held whole, else one made in parts fills `plan` and `tally` as it goes."""
        result = cls(run_id, status, plan or Plan(), read.resync, suspect=dict(read.suspect))
        result.full_read = read.full
        if linked:
            result.applied[ActionKind.LINK.value] += linked
        return result

    def outcome(self, status: RunStatus | None = None) -> runs.RunOutcome:
        return runs.RunOutcome(
            status=status or RunStatus(self.status),
            graph_requests=self.graph_requests,
            counts=dict(self.applied),
            held=dict(self.held),
            resync=self.resync,
            message="; ".join(self.suspect.values()) or None,
            suspect=self.suspect,
        )
