"""Watched groups and whether their read can be trusted (pure, no I/O).

A watched group whose read is not trustworthy becomes *suspect*, and nothing is derived from
its membership until it reads normally again or an admin accepts the read (docs/safety.md):

* reported deleted (`@removed` on the group in a `groups/delta` round),
* not found (a full round, with the group in its `$filter`, returned no item for it),
* read empty in a full round (first sync, resync, periodic full read) although the mirror
  had members.

An explicit `@removed` of members in an incremental round is a real removal, even of the last
member: such a group is empty, not suspect.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class GroupKind(StrEnum):
    DNT = "dnt"
    DELETE = "delete"


GROUP_LABELS = {GroupKind.DNT: "Do Not Track", GroupKind.DELETE: "Delete"}


def group_label(kind: str) -> str:
    return GROUP_LABELS[GroupKind(kind)]


class SuspectReason(StrEnum):
    DELETED = "deleted"
    NOT_FOUND = "not_found"
    EMPTY = "empty"


# Deleted and not found are the same fact seen two ways (an increment reports the deletion,
# a later full round no longer finds the group): accepting one accepts the other.
_FAMILY = {
    SuspectReason.DELETED: "missing",
    SuspectReason.NOT_FOUND: "missing",
    SuspectReason.EMPTY: "empty",
}


@dataclass(frozen=True)
class GroupRead:
    """What one cycle's `groups/delta` round said about one watched group."""

    seen: bool  # an item for the group, without `@removed`
    deleted: bool  # an item with `@removed`
    full: bool  # the group's stream was read as a full round
    # Direct members in the mirror before and after the round: counted only where the
    # judgement uses them (a full read, a deletion, a suspect group), else 0.
    members_before: int
    members_after: int


class Read(StrEnum):
    NORMAL = "normal"  # the group read normally
    SILENT = "silent"  # the round said nothing about it (an increment without its item)


def verdict(read: GroupRead, current: SuspectReason | None) -> SuspectReason | Read:
    if read.deleted:
        return SuspectReason.DELETED
    if read.full and not read.seen:
        return SuspectReason.NOT_FOUND
    if read.full and read.members_after == 0 and read.members_before > 0:
        return SuspectReason.EMPTY
    if not read.seen:
        return Read.SILENT
    if current == SuspectReason.EMPTY and read.members_after == 0:
        return Read.SILENT  # still empty: only members coming back end an "empty" suspicion
    return Read.NORMAL


@dataclass(frozen=True)
class GroupState:
    suspect: SuspectReason | None
    accepted: SuspectReason | None


class Transition(StrEnum):
    NONE = "none"
    SUSPECT = "suspect"  # audited group.suspect, admins emailed
    RECOVERED = "recovered"  # audited group.recovered


def next_state(state: GroupState, seen: SuspectReason | Read) -> tuple[GroupState, Transition]:
    if seen == Read.SILENT:
        return state, Transition.NONE
    if not isinstance(seen, SuspectReason):
        changed = Transition.RECOVERED if state.suspect is not None else Transition.NONE
        return GroupState(None, None), changed
    if state.suspect is not None and _FAMILY[state.suspect] == _FAMILY[seen]:
        return state, Transition.NONE
    if state.accepted is not None and _FAMILY[state.accepted] == _FAMILY[seen]:
        return state, Transition.NONE
    return GroupState(seen, None), Transition.SUSPECT


def describe(kind: str, name: str, reason: SuspectReason, had: int) -> str:
    what = {
        SuspectReason.DELETED: "was reported deleted in Entra",
        SuspectReason.NOT_FOUND: "was not found in Entra",
        SuspectReason.EMPTY: f"read empty in a full read although it had {had} members",
    }[reason]
    return f"{group_label(kind)} group {name} {what}"
