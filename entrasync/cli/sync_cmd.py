"""`entrasync sync`, `entrasync plan`, `entrasync approve RUN_ID`."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from entrasync.bootstrap import GraphFactory, graph_factory
from entrasync.cli.context import AppContext, actor_name, app_context, now
from entrasync.cli.options import ApproveActorOpt, JsonOpt, PlanOnlyOpt
from entrasync.cli.output import cycle_progress, print_json, print_table, say
from entrasync.cli.sync_user_output import user_json, user_lines
from entrasync.domain.actions import ACTIONS, ActionKind
from entrasync.domain.planning import Plan, PlannedAction
from entrasync.domain.status import RunStatus
from entrasync.errors import ExitCode
from entrasync.sync.approve import approve
from entrasync.sync.cycle import CycleResult, run_cycle
from entrasync.sync.one_user import sync_user


def _graph_factory(actx: AppContext) -> GraphFactory:
    return graph_factory(actx.config, os.environ)


def _action_json(a: PlannedAction) -> dict[str, Any]:
    return {
        "user_id": a.user_id,
        "entra_object_id": a.object_id,
        "source_user_ids": list(a.source_user_ids),
        "licenses_freed": a.licenses_freed,
        "reason": a.reason,
    }


def _kinds_json(result: CycleResult) -> dict[str, Any]:
    """The planned actions by kind (kinds with none left out). `count` is exact; a plan
    made in parts (a first sync of a large tenant) lists `listed` of them."""
    groups = {}
    tally = result.tally
    for kind in ActionKind:
        if tally.count[kind]:
            actions = result.plan.of_kind(kind)
            groups[kind.value] = {
                "count": tally.count[kind],
                "licenses_freed": tally.licenses_freed[kind],
                "held": kind.value in result.held,
                "listed": len(actions),
                "actions": [_action_json(a) for a in actions],
            }
    return groups


def _purges_json(result: CycleResult) -> dict[str, Any]:
    """Purges that are not actions of this cycle: later, suspended, or not confirmed."""
    the_plan = result.plan
    scheduled = [
        {
            "user_id": s.user_id,
            "entra_object_id": s.object_id,
            "due_at": s.due_at.isoformat(),
            "licenses": s.licenses,
            "group_id": s.group_id,
        }
        for s in the_plan.scheduled
    ]
    suspended = [
        {"user_id": s.user_id, "entra_object_id": s.object_id, "group_id": s.group_id, "why": s.why}
        for s in the_plan.suspended
    ]
    unconfirmed = [
        {"user_id": a.user_id, "entra_object_id": a.object_id, "why": why}
        for a, why in result.unconfirmed
    ]
    return {
        "scheduled_purges": scheduled,
        "scheduled_purges_count": result.tally.scheduled,
        "suspended_purges": suspended,
        "suspended_purges_count": result.tally.suspended,
        "unconfirmed_purges": unconfirmed,
    }


def plan_json(result: CycleResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "status": result.status,
        "resync": result.resync,
        "graph_requests": result.graph_requests,
        "licenses_freed": result.tally.licenses,
        "actions": _kinds_json(result),
        **_purges_json(result),
        "applied": dict(result.applied),
        "held": dict(result.held),
        "suspect_groups": result.suspect,
        "full_read": result.full_read,
    }


def _kind_rows(result: CycleResult) -> list[list[Any]]:
    rows = []
    tally = result.tally
    for kind in ActionKind:
        if tally.count[kind]:
            held = " (HELD by safety threshold)" if kind.value in result.held else ""
            rows.append([ACTIONS[kind].title + held, tally.count[kind], tally.licenses_freed[kind]])
    return rows


def print_plan(result: CycleResult, heading: str) -> None:
    the_plan: Plan = result.plan
    tally = result.tally
    say(f"{heading}: {tally.actions} actions, {tally.licenses} licenses freed")
    rows = _kind_rows(result)
    if rows:
        print_table(None, ["action", "count", "licenses freed"], rows)
    if the_plan.scheduled:
        say(f"{tally.scheduled} purges scheduled for later:")
        for p in sorted(the_plan.scheduled, key=lambda p: p.due_at)[:20]:
            say(f"  user {p.user_id} at {p.due_at:%Y-%m-%d %H:%M} UTC ({p.licenses} licenses)")
    if the_plan.suspended:
        say(f"{tally.suspended} purges suspended (their group's read is suspect):")
    for s in the_plan.suspended[:20]:
        say(f"  purge of user {s.user_id} suspended: {s.why}")
    for action, why in result.unconfirmed[:20]:
        say(f"purge of user {action.user_id} not run: {why}")
    for group, why in result.suspect.items():
        say(
            f"SUSPECT group: {why} — nothing derived from it; accept with: "
            f"entrasync groups accept {group}"
        )
    if result.resync:
        say("this cycle was a full resync (a delta link had expired)")


UserOpt = Annotated[
    str | None,
    typer.Option(
        "--user",
        metavar="IDENT",
        help="Sync one person now, read directly from Entra ID: a UPN, email, employee id, "
        "logon, store id or Entra object id.",
    ),
]


def sync(
    ctx: typer.Context,
    dry_run: PlanOnlyOpt = False,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one cycle now, or (--user) sync one person now. Exits 3 when a safety rule
    (a threshold, a suspect group) held actions.

    Example: entrasync sync --dry-run

    Example: entrasync sync --user jdoe@contoso.com
    """
    actx = app_context(ctx)
    if user is not None:
        _sync_user(actx, user, dry_run, as_json)
        return
    with cycle_progress("reading Entra ID" + (" (dry run)" if dry_run else "")):
        result = run_cycle(actx.store(), actx.config, _graph_factory(actx), now(), dry_run=dry_run)
    if as_json:
        print_json(plan_json(result))
    else:
        dry = result.status == RunStatus.DRY_RUN
        print_plan(result, "dry run" if dry else f"run {result.run_id} {result.status}")
        if result.held:
            say(f"release held actions with: entrasync approve {result.run_id}")
        if result.suspect:
            say("exit 3: a watched group is suspect (see `entrasync groups list`)")
    if result.status == RunStatus.HELD:
        raise typer.Exit(int(ExitCode.HELD))


def _sync_user(actx: AppContext, ident: str, dry_run: bool, as_json: bool) -> None:
    """`sync --user IDENT`: one person, read directly (sync/one_user.py)."""
    title = f"reading {ident} from Entra ID" + (" (dry run)" if dry_run else "")
    with cycle_progress(title):
        result = sync_user(
            actx.store(), actx.config, _graph_factory(actx), ident, now(), dry_run=dry_run
        )
    if as_json:
        print_json({**plan_json(result.cycle), **user_json(result)})
    else:
        for line in user_lines(result):
            say(line)
        if result.cycle.suspect:
            say("exit 3: a watched group is suspect (see `entrasync groups list`)")
    if result.cycle.status == RunStatus.HELD:
        raise typer.Exit(int(ExitCode.HELD))


def plan_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """What the next cycle would do, grouped by kind, with the licenses it would free.

    Example: entrasync plan --json
    """
    actx = app_context(ctx)
    with cycle_progress("reading Entra ID and planning"):
        result = run_cycle(actx.reader(), actx.config, _graph_factory(actx), now(), dry_run=True)
    if as_json:
        print_json(plan_json(result))
    else:
        print_plan(result, "next cycle would take")


def approve_cmd(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run whose held actions to release.")],
    actor: ApproveActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Release actions a safety threshold held, after re-checking them against the
    current state (those no longer valid are dropped).

    Example: entrasync approve 0f8c2a4e-…
    """
    actx = app_context(ctx)
    with cycle_progress("re-checking the held actions against Entra ID"):
        result = approve(
            actx.store(), actx.config, _graph_factory(actx), run_id, now(), actor_name(actor)
        )
    if as_json:
        print_json(plan_json(result))
    else:
        applied = ", ".join(f"{n} {k}" for k, n in result.applied.items()) or "nothing"
        say(f"approved run {run_id}: applied {applied} (run {result.run_id})")
