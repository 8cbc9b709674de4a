"""`entrasync groups list|accept`: the watched groups and their read state."""

from __future__ import annotations

from typing import Annotated

import typer

from entrasync.cli.context import actor_name, app_context, now
from entrasync.cli.options import ActorOpt, JsonOpt
from entrasync.cli.output import print_json, print_list, say
from entrasync.sync import groups as service

groups_app = typer.Typer(
    help=(
        "The watched Do Not Track and Delete groups: name, kind, members and whether "
        "their last read can be trusted.\n\nExample: entrasync groups list"
    ),
    no_args_is_help=True,
)


def _view(group: service.GroupStatus) -> dict[str, object]:
    return {
        "id": group.id,
        "name": group.name,
        "kind": group.kind,
        "members": group.members,
        "state": group.state,
        "detail": group.detail,
        "since": group.since.isoformat() if group.since else None,
    }


def _row(g: service.GroupStatus) -> list[object]:
    return [g.name or "", g.id, g.kind, g.members, g.state + (f": {g.detail}" if g.detail else "")]


@groups_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Each configured group with its state: ok, suspect (nothing is derived from it) or
    accepted (an admin accepted a suspect read).

    Example: entrasync groups list --json
    """
    actx = app_context(ctx)
    with actx.reader().reading() as session:
        found = service.list_groups(session, actx.config)
    print_list(found, as_json, ["name", "id", "kind", "members", "state"], _row, _view)


@groups_app.command("accept")
def accept(
    ctx: typer.Context,
    group_id: Annotated[str, typer.Argument(help="The suspect group's object id.")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accept a suspect group's read (it really was deleted or emptied): its members are
    re-derived from that read now, and the next cycle plans the consequences (retracks,
    cancelled purges), safety thresholds still applying. Audited as group.accepted.

    Example: entrasync groups accept 73f6e53d-1c7a-4a39-9d52-2f0e0b8f3c11
    """
    actx = app_context(ctx)
    with actx.store().unit_of_work(now(), actor=actor_name(actor)) as uow:
        group = service.accept_read(uow, actx.config, group_id)
    if as_json:
        print_json(_view(group))
        return
    say(
        f"accepted the read of {group.kind} group {group.name or group.id}: "
        f"{group.members} members now; the next cycle plans the consequences"
    )
