"""Confirm before purge: ask Graph, right before a purge runs, whether its cause still holds.

The mirror can be stale (an increment Graph never sent, a restore omitted from a `$select`
round), and a purge cannot be undone. So each purge is checked against Graph directly,
batched 20 per `POST /$batch`:

* a Delete-group purge: `POST /users/{id}/checkMemberGroups` with the (trusted) Delete group
  ids; transitive, as the groups are. Confirmed when the answer names one of them.
* a deleted-user purge (`sync.on_user_deleted = "purge"`): `GET /users/{id}`; confirmed only
  by a 404.

No answer (throttled past the retry budget) is not a confirmation. Unconfirmed purges are not
run; the caller audits them (`purge.unconfirmed`) and the next cycle re-plans from a mirror
that has caught up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from entrasync.domain.planning import PlannedAction, PurgeCause
from entrasync.graph import GraphClient


@dataclass
class Confirmation:
    confirmed: list[PlannedAction] = field(default_factory=list)
    # (action, why Graph did not confirm it)
    unconfirmed: list[tuple[PlannedAction, str]] = field(default_factory=list)


def confirm_purges(
    graph: GraphClient,
    actions: Iterable[PlannedAction],
    delete_groups: list[str],
    names: Mapping[str, str],
) -> Confirmation:
    purges = [a for a in actions if a.object_id]
    result = Confirmation()
    by_group = [a for a in purges if a.cause != PurgeCause.ENTRA_DELETED]
    by_deletion = [a for a in purges if a.cause == PurgeCause.ENTRA_DELETED]
    if by_group:
        _check_groups(graph, by_group, delete_groups, names, result)
    if by_deletion:
        _check_deleted(graph, by_deletion, result)
    return result


def _check_groups(
    graph: GraphClient,
    actions: list[PlannedAction],
    groups: list[str],
    names: Mapping[str, str],
    out: Confirmation,
) -> None:
    if not groups:
        for action in actions:
            out.unconfirmed.append((action, "no trusted Delete group is left to confirm with"))
        return
    answers = graph.check_member_groups([str(a.object_id) for a in actions], groups)
    listed = ", ".join(f"{names[g]!r} ({g})" if g in names else g for g in groups)
    for action in actions:
        found = answers.get(str(action.object_id))
        if found is None:
            out.unconfirmed.append((action, "Graph did not answer checkMemberGroups (throttled)"))
        elif found:
            out.confirmed.append(action)
        else:
            out.unconfirmed.append(
                (action, f"Graph says the user is in none of the Delete groups {listed}")
            )


def _check_deleted(graph: GraphClient, actions: list[PlannedAction], out: Confirmation) -> None:
    answers = graph.users_exist([str(a.object_id) for a in actions])
    for action in actions:
        exists = answers.get(str(action.object_id))
        if exists is False:
            out.confirmed.append(action)
        elif exists is None:
            out.unconfirmed.append((action, "Graph did not answer GET /users/{id} (throttled)"))
        else:
            out.unconfirmed.append(
                (action, "Graph answers GET /users/{id}: the account exists (restored?)")
            )
