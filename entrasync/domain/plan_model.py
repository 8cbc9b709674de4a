"""What the planner works on and what it produces (pure data): the facts gathered from the
store, the policy from the config, and the plan (actions, purges scheduled or suspended)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from entrasync.domain.actions import ActionKind
from entrasync.domain.groups import GroupKind
from entrasync.domain.status import UntrackedBy


class PurgeCause(StrEnum):
    """Why a purge is planned: what Graph is asked to confirm right before it runs."""

    DELETE_GROUP = "delete_group"  # checkMemberGroups with the Delete group ids
    ENTRA_DELETED = "entra_deleted"  # GET /users/{id} answering 404


@dataclass(frozen=True, slots=True)
class StoreUser:
    id: int
    entra_object_id: str | None
    tracking: str
    untracked_by: str | None
    status: str
    agents: int
    licenses: int
    last_activity_at: datetime | None


@dataclass(frozen=True, slots=True)
class IdentityMatch:
    """A store record carrying one of an Entra object's keys (rank = evidence strength)."""

    object_id: str
    rank: int
    user: StoreUser


@dataclass(frozen=True, slots=True)
class WatchedMember:
    """One member of one configured group (a member of two groups appears twice)."""

    object_id: str
    kind: GroupKind
    via_group: str
    first_seen_at: datetime
    user: StoreUser | None  # the record linked to the object, if any
    suspect: bool = False  # the group's read is not trusted: nothing is derived from it


@dataclass(frozen=True, slots=True)
class Retirement:
    """An identifier of a record linked to `old_object` that Entra now gives to `new_object`
    (UPN reuse), or whose `old_object` is deleted while a live object holds it."""

    user_id: int
    kind: str
    value: str
    old_object: str
    new_object: str
    old_deleted: bool


@dataclass(frozen=True, slots=True)
class ScheduledRecord:
    """A purge already scheduled (and audited) by an earlier cycle."""

    user_id: int
    object_id: str
    cause: PurgeCause
    group_id: str | None
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Facts:
    identity_matches: list[IdentityMatch] = field(default_factory=list)
    linked: Mapping[str, StoreUser] = field(default_factory=dict)  # object -> linked record
    watched: list[WatchedMember] = field(default_factory=list)
    retrack: list[StoreUser] = field(default_factory=list)
    # (object, when entrasync saw the deletion, linked record)
    deleted: list[tuple[str, datetime, StoreUser]] = field(default_factory=list)
    # tracked records whose live Entra account is disabled (sync.on_user_disabled = untrack)
    disabled: list[StoreUser] = field(default_factory=list)
    retirements: list[Retirement] = field(default_factory=list)
    scheduled: list[ScheduledRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Policy:
    now: datetime
    purge_delay: timedelta
    retrack_on_removal: bool
    merge_enabled: bool
    agent_merge: str
    on_user_deleted: str  # ignore | untrack | purge
    on_user_disabled: str = "ignore"  # ignore | untrack
    group_names: Mapping[str, str] = field(default_factory=dict)
    # Suspect watched groups: group id -> why (nothing is derived from their membership).
    suspect: Mapping[str, str] = field(default_factory=dict)

    def group(self, group_id: str) -> str:
        """A group as a reason names it: display name and id."""
        name = self.group_names.get(group_id)
        return f"{name!r} ({group_id})" if name else group_id


@dataclass(frozen=True, slots=True)
class PlannedAction:
    kind: ActionKind
    reason: str
    user_id: int | None = None  # the record acted on (merge: the survivor)
    object_id: str | None = None
    source_user_ids: tuple[int, ...] = ()  # merge: records folded into user_id
    licenses_freed: int = 0
    untracked_by: str = UntrackedBy.ENTRASYNC
    cause: PurgeCause | None = None  # purges and scheduled purges
    group_id: str | None = None  # the group the action comes from, if any
    due_at: datetime | None = None  # scheduled purges
    identifier: tuple[str, str] | None = None  # retired identifiers: (kind, value)

    @property
    def target(self) -> str:
        """Stable identity of the action, to recognise it again when re-planned."""
        return f"{self.kind}:{self.user_id}:{self.object_id}:{','.join(map(str, self.source_user_ids))}"


@dataclass(frozen=True, slots=True)
class ScheduledPurge:
    user_id: int
    object_id: str
    due_at: datetime
    licenses: int
    cause: PurgeCause = PurgeCause.DELETE_GROUP
    group_id: str | None = None


@dataclass(frozen=True, slots=True)
class SuspendedPurge:
    """A purge that neither runs nor is cancelled while the group it comes from is suspect."""

    user_id: int
    object_id: str
    group_id: str
    why: str


@dataclass(slots=True)
class Plan:
    actions: list[PlannedAction] = field(default_factory=list)
    scheduled: list[ScheduledPurge] = field(default_factory=list)
    suspended: list[SuspendedPurge] = field(default_factory=list)

    def of_kind(self, kind: ActionKind) -> list[PlannedAction]:
        return [a for a in self.actions if a.kind == kind]


@dataclass(slots=True)
class Tally:
    """Exact figures of a plan, whether it is held whole or was made and applied in parts
    (then only `LISTED` actions of a kind are kept to show)."""

    count: Counter[ActionKind] = field(default_factory=Counter)
    licenses_freed: Counter[ActionKind] = field(default_factory=Counter)
    scheduled: int = 0
    suspended: int = 0

    @classmethod
    def of(cls, plan: Plan) -> Tally:
        tally = cls()
        tally.add(plan)
        return tally

    def add(self, part: Plan) -> None:
        self.add_actions(part.actions)
        self.scheduled += len(part.scheduled)
        self.suspended += len(part.suspended)

    def add_actions(self, actions: Iterable[PlannedAction]) -> None:
        for action in actions:
            self.count[action.kind] += 1
            self.licenses_freed[action.kind] += action.licenses_freed

    def only(self, kinds: Iterable[ActionKind]) -> Tally:
        """The figures of `kinds` alone."""
        part = Tally()
        for kind in kinds:
            part.count[kind] = self.count[kind]
            part.licenses_freed[kind] = self.licenses_freed[kind]
        return part

    @property
    def actions(self) -> int:
        return sum(self.count.values())

    @property
    def licenses(self) -> int:
        return sum(self.licenses_freed.values())


# Actions of a kind (and scheduled or suspended purges) kept to show from a plan made in
# parts: `sync --json` lists them, with the exact counts beside.
LISTED = 1_000


def take(listing: Plan, tally: Tally, part: Plan) -> None:
    """Add `part` of a plan made in parts: to `listing` up to `LISTED` of each kind, and
    its figures to `tally`."""
    room = {kind: LISTED - n for kind, n in tally.count.items()}
    for action in part.actions:
        if room.get(action.kind, LISTED) > 0:
            listing.actions.append(action)
            room[action.kind] = room.get(action.kind, LISTED) - 1
    listing.scheduled.extend(part.scheduled[: max(0, LISTED - tally.scheduled)])
    listing.suspended.extend(part.suspended[: max(0, LISTED - tally.suspended)])
    tally.add(part)
