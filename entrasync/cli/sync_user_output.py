"""What `entrasync sync --user IDENT` prints: who Entra says the person is, their watched-group
memberships, and each action with its reason (what was done, held, scheduled or not run)."""

from __future__ import annotations

from typing import Any

from entrasync.domain.actions import ACTIONS
from entrasync.domain.groups import group_label
from entrasync.domain.status import RunStatus
from entrasync.sync.one_user import UserSyncResult


def _group(result: UserSyncResult, group_id: str) -> str:
    name = result.names.get(group_id)
    return f"{name!r} ({group_id})" if name else group_id


def user_json(result: UserSyncResult) -> dict[str, Any]:
    """The person part of `sync --user --json` (the rest is the cycle's shape)."""
    user, read = result.read.user, result.read
    return {
        "kind": "sync-user",
        "user": {
            "ident": read.ident,
            "found_by": read.found_by,
            "entra_object_id": user.id,
            "user_principal_name": user.user_principal_name,
            "display_name": user.display_name,
            "account_enabled": user.account_enabled,
            "store_user_id": result.record if result.record is not None else read.store_user_id,
        },
        "memberships": [
            {
                "group_id": m.group_id,
                "group_name": result.names.get(m.group_id),
                "kind": m.kind,
                "first_seen_at": m.first_seen_at.isoformat(),
                "suspect": m.group_id in read.suspect,
            }
            for m in result.memberships
        ],
    }


def user_lines(result: UserSyncResult) -> list[str]:
    """The report, one line each, in the order an admin reads it."""
    read, cycle = result.read, result.cycle
    user = read.user
    enabled = {True: "enabled", False: "disabled", None: "enabled"}[user.account_enabled]
    name = f" {user.display_name!r}" if user.display_name else ""
    record = result.record if result.record is not None else read.store_user_id
    where = f"store record {record}" if record is not None else "not in the store"
    lines = [f"{user.user_principal_name}{name}: Entra user {user.id} ({enabled}), {where}"]
    if read.other_record is not None:
        other, linked = read.other_record
        lines.append(
            f"  note: store record {other} answers to {read.ident!r} but belongs to Entra user "
            f"{linked}, not to this person (a reused name); the cycle sorts it out"
        )
    for m in result.memberships:
        frozen = " (group suspect: nothing derived from it)" if m.group_id in read.suspect else ""
        lines.append(
            f"  member of {group_label(m.kind)} group {_group(result, m.group_id)} "
            f"since {m.first_seen_at:%Y-%m-%d %H:%M} UTC{frozen}"
        )
    if not result.memberships:
        lines.append("  in no watched group")
    lines += _action_lines(result)
    for group, why in cycle.suspect.items():
        lines.append(
            f"SUSPECT group: {why} — nothing derived from it; accept with: "
            f"entrasync groups accept {group}"
        )
    return lines


def _action_lines(result: UserSyncResult) -> list[str]:
    cycle = result.cycle
    the_plan = cycle.plan
    dry = cycle.status == RunStatus.DRY_RUN
    done = sum(cycle.applied.values())
    head = (
        f"dry run: would take {len(the_plan.actions)} action(s); nothing was changed"
        if dry
        else f"run {cycle.run_id} {cycle.status} (sync of one user): {done} action(s) applied"
    )
    lines = [head]
    unconfirmed = {id(a) for a, _ in cycle.unconfirmed}
    for action in the_plan.actions:
        state = ""
        if action.kind.value in cycle.held:
            state = " [HELD by a safety threshold]"
        elif id(action) in unconfirmed:
            state = " [not run: Graph did not confirm it]"
        who = f"record {action.user_id}" if action.user_id is not None else "new record"
        lines.append(f"  {ACTIONS[action.kind].title}, {who}{state}: {action.reason}")
    for p in the_plan.scheduled:
        lines.append(
            f"  purge of record {p.user_id} scheduled for {p.due_at:%Y-%m-%d %H:%M} UTC "
            f"({p.licenses} license(s); safety.purge_delay runs from the first sighting)"
        )
    for s in the_plan.suspended:
        lines.append(f"  purge of record {s.user_id} suspended: {s.why}")
    for action, why in cycle.unconfirmed:
        lines.append(f"  purge of record {action.user_id} not run: {why}")
    if not the_plan.actions and not the_plan.scheduled and not the_plan.suspended:
        lines.append("  nothing to do: the store already agrees with Entra ID for this person")
    if cycle.held:
        lines.append(f"release held actions with: entrasync approve {cycle.run_id}")
    return lines
