"""Sure links: the records a first sync can link in batches, before the plan is made.

A first sync (or a large ingest of new people) finds most records unlinked, each matching
the keys of one Entra object. Planning them all at once holds every record in memory, so
the cycle first links, batch by batch, the records the plan would link anyway, and plans
the rest. A record is linked ahead of the plan only when the outcome cannot depend on
anything outside the pair:

* the record's identifiers match exactly one live Entra object (at any rank), so it is
  nobody else's candidate and no identifier of it is held by another object (nothing for
  UPN-reuse retirement to act on once it is linked);
* that object is matched by no other unlinked record and linked to none (otherwise the plan
  chooses a survivor and merges, which is guarded by `safety.max_merges` and audited);
* the record is tracked and the object's account is enabled. Other fact queries start from
  linked records: an untracked record linked to a live object in no watched group is
  re-tracked, a tracked one linked to a disabled account is untracked
  (`sync.on_user_disabled`). Linking those ahead would bring such actions into this cycle
  (and its thresholds: a first sync could hold its Do Not Track untracks behind them)
  instead of the next one, as the plan alone does. They are left to the plan.

For such a pair the plan yields a LINK and nothing else (`planning.py`, `_plan_identity`),
whether the record is linked first or not; linking is bookkeeping, not audited, so linking
it first changes only when it happens. Everything else is left to the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Set


def sure_links(
    matches: Mapping[int, Mapping[str, bool]], claimants: Mapping[str, int], tracked: Set[int]
) -> dict[int, str]:
    """record id -> object id for the pairs above. `matches`: each unlinked record's live
    matching objects, each with whether its account is enabled; `claimants`: how many
    unlinked records match each object (objects already linked to a record are left out by
    the caller or refused when linking); `tracked`: the tracked records among them."""
    links: dict[int, str] = {}
    for user_id, objects in matches.items():
        if user_id not in tracked or len(objects) != 1:
            continue
        ((object_id, enabled),) = objects.items()
        if enabled and claimants.get(object_id, 0) == 1:
            links[user_id] = object_id
    return links
