"""`entrasync sync`, `entrasync plan`, `entrasync approve RUN_ID`."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from entrasync.cli.context import AppContext, actor_name, app_context, now
from entrasync.cli.output import cycle_progress, print_json, print_table, say
from entrasync.domain.actions import ACTIONS, ActionKind
from entrasync.domain.planning import Plan
from entrasync.errors import ExitCode
from entrasync.graph import GraphClient, settings_from_config
from entrasync.sync.cycle import CycleResult, approve, run_cycle

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _graph_factory(actx: AppContext) -> Any:
    settings = settings_from_config(actx.config.entra, os.environ)
    return lambda: GraphClient(settings)


def plan_json(result: CycleResult) -> dict[str, Any]:
    the_plan = result.plan
    groups = {}
    for kind in ActionKind:
        actions = the_plan.of_kind(kind)
        if actions:
            groups[kind.value] = {
                "count": len(actions),
                "licenses_freed": sum(a.licenses_freed for a in actions),
                "held": kind.value in result.held,
                "actions": [
                    {
                        "user_id": a.user_id,
                        "entra_object_id": a.object_id,
                        "source_user_ids": list(a.source_user_ids),
                        "licenses_freed": a.licenses_freed,
                        "reason": a.reason,
                    }
                    for a in actions
                ],
            }
    return {
        "run_id": result.run_id,
        "status": result.status,
        "resync": result.resync,
        "graph_requests": result.graph_requests,
        "licenses_freed": sum(a.licenses_freed for a in the_plan.actions),
        "actions": groups,
        "scheduled_purges": [
            {
                "user_id": s.user_id,
                "entra_object_id": s.object_id,
                "due_at": s.due_at.isoformat(),
                "licenses": s.licenses,
                "group_id": s.group_id,
            }
            for s in the_plan.scheduled
        ],
        "suspended_purges": [
            {
                "user_id": s.user_id,
                "entra_object_id": s.object_id,
                "group_id": s.group_id,
                "why": s.why,
            }
            for s in the_plan.suspended
        ],
        "unconfirmed_purges": [
            {"user_id": a.user_id, "entra_object_id": a.object_id, "why": why}
            for a, why in result.unconfirmed
        ],
        "applied": dict(result.applied),
        "held": dict(result.held),
        "suspect_groups": result.suspect,
        "full_read": result.full_read,
    }


def print_plan(result: CycleResult, heading: str) -> None:
    the_plan: Plan = result.plan
    total = sum(a.licenses_freed for a in the_plan.actions)
    say(f"{heading}: {len(the_plan.actions)} actions, {total} licenses freed")
    rows = []
    for kind in ActionKind:
        actions = the_plan.of_kind(kind)
        if actions:
            held = " (HELD by safety threshold)" if kind.value in result.held else ""
            rows.append(
                [ACTIONS[kind].title + held, len(actions), sum(a.licenses_freed for a in actions)]
            )
    if rows:
        print_table(None, ["action", "count", "licenses freed"], rows)
    if the_plan.scheduled:
        say(f"{len(the_plan.scheduled)} purges scheduled for later:")
        for p in sorted(the_plan.scheduled, key=lambda p: p.due_at)[:20]:
            say(f"  user {p.user_id} at {p.due_at:%Y-%m-%d %H:%M} UTC ({p.licenses} licenses)")
    if the_plan.suspended:
        say(f"{len(the_plan.suspended)} purges suspended (their group's read is suspect):")
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


def register(app: typer.Typer) -> None:
    @app.command("sync")
    def sync(
        ctx: typer.Context,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Plan only; change nothing.")
        ] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Run one cycle now. Exits 3 when a safety threshold held some actions.

        Example: entrasync sync --dry-run
        """
        actx = app_context(ctx)
        with cycle_progress("reading Entra ID" + (" (dry run)" if dry_run else "")):
            result = run_cycle(
                actx.store(), actx.config, _graph_factory(actx), now(), dry_run=dry_run
            )
        if as_json:
            print_json(plan_json(result))
        else:
            print_plan(
                result,
                "dry run" if result.status == "dry-run" else f"run {result.run_id} {result.status}",
            )
            if result.held:
                say(f"release held actions with: entrasync approve {result.run_id}")
            if result.suspect:
                say("exit 3: a watched group is suspect (see `entrasync groups list`)")
        if result.status == "held":
            raise typer.Exit(int(ExitCode.HELD))

    @app.command("plan")
    def plan_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
        """What the next cycle would do, grouped by kind, with the licenses it would free.

        Example: entrasync plan --json
        """
        actx = app_context(ctx)
        with cycle_progress("reading Entra ID and planning"):
            result = run_cycle(actx.store(), actx.config, _graph_factory(actx), now(), dry_run=True)
        if as_json:
            print_json(plan_json(result))
        else:
            print_plan(result, "next cycle would take")

    @app.command("approve")
    def approve_cmd(
        ctx: typer.Context,
        run_id: Annotated[str, typer.Argument(help="The run whose held actions to release.")],
        actor: Annotated[
            str | None,
            typer.Option("--actor", help="Administrator name for the audit log (default: login)."),
        ] = None,
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
