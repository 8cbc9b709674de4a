"""Every action kind a cycle can plan, declared once.

A kind's title (what `plan` and `sync` print), its audit action, the `[safety]` key whose
threshold can hold it, and how the applier runs it are read from `ACTIONS`; the planner,
thresholds, applier, CLI and audit vocabulary all look here. To add a kind: add it to
`ActionKind`, give it a spec below, and give the applier a handler for it (sync/apply.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class ActionKind(StrEnum):
    LINK = "link"
    RETIRE_IDENTIFIER = "retire_identifier"
    MERGE = "merge"
    MERGE_SKIPPED = "merge_skipped"
    PREREGISTER = "preregister"
    UNTRACK = "untrack"
    SCHEDULE_PURGE = "schedule_purge"
    CANCEL_PURGE = "cancel_purge"
    PURGE = "purge"
    RETRACK = "retrack"


class ApplyMode(StrEnum):
    """How the applier groups a kind's actions into transactions."""

    ONE = "one"  # one transaction and its audit records per action
    LINKS = "links"  # all links in one set-based transaction (bookkeeping, not audited)
    PURGES = "purges"  # confirmed with Graph first, then purged in batches


@dataclass(frozen=True)
class ActionSpec:
    title: str
    audit_action: str | None  # None: bookkeeping, not audited
    threshold_key: str | None  # the `[safety]` key that can hold this kind, if any
    mode: ApplyMode = ApplyMode.ONE


ACTIONS: Mapping[ActionKind, ActionSpec] = {
    ActionKind.RETIRE_IDENTIFIER: ActionSpec(
        "retire identifiers Entra gave to another person (UPN reuse)", "identifier.retired", None
    ),
    ActionKind.SCHEDULE_PURGE: ActionSpec(
        "schedule a purge (Delete group or deleted account, delay running)",
        "purge.scheduled",
        None,
    ),
    ActionKind.CANCEL_PURGE: ActionSpec(
        "cancel a scheduled purge (left the group, or account restored)", "purge.cancelled", None
    ),
    ActionKind.MERGE: ActionSpec(
        "merge duplicate records (UPN change)", "user.merged", "max_merges"
    ),
    ActionKind.LINK: ActionSpec("link records to their Entra user", None, None, ApplyMode.LINKS),
    ActionKind.PREREGISTER: ActionSpec(
        "pre-register as Untracked (in a watched group, not in the store)",
        "user.preregistered",
        None,
    ),
    ActionKind.UNTRACK: ActionSpec(
        "untrack (Do Not Track / Delete group, or deleted in Entra)",
        "user.untracked",
        "max_untracks",
    ),
    ActionKind.PURGE: ActionSpec(
        "purge history (Delete group, delay passed)", "user.purged", "max_purges", ApplyMode.PURGES
    ),
    ActionKind.RETRACK: ActionSpec("track again (left the groups)", "user.tracked", "max_retracks"),
    ActionKind.MERGE_SKIPPED: ActionSpec(
        "merge skipped (different Entra objects)", "merge.skipped", None
    ),
}

# Kinds a safety threshold can hold, in the order `plan` lists them.
GUARDED = tuple(kind for kind, spec in ACTIONS.items() if spec.threshold_key is not None)


def spec(kind: ActionKind) -> ActionSpec:
    return ACTIONS[kind]
