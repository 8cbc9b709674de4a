"""Sure links: the records a first sync can link in batches, before the plan is made.

A first sync (or a large ingest of new people) finds most records unlinked, each matching
the keys of one Entra object. Planning them all at once holds every record in memory, so
the cycle first links, batch by batch, the records the plan would link anyway, and plans
the rest. A record is linked ahead of the plan only when the outcome cannot depend on
anything outside the pair:

* the record's identifiers match exactly one live Entra object (at any rank), so it is
  nobody else's candidate and no identifier of it is held by another object (nothing for
  UPN-reuse retirement to act on once it is linked); and
* that object is matched by no other unlinked record and linked to none (otherwise the plan
  chooses a survivor and merges, which is guarded by `safety.max_merges` and audited).

For such a pair the plan's identity step yields a LINK and nothing else (`planning.py`,
`_plan_identity`); linking is bookkeeping, not audited, so linking it first changes only
when it happens. Records matching several objects, objects matched by several records and
records that match an already linked object are left to the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Set


def sure_links(matches: Mapping[int, Set[str]], claimants: Mapping[str, int]) -> dict[int, str]:
    """record id -> object id for the pairs above. `matches`: each unlinked record's live
    matching objects; `claimants`: how many unlinked records match each object (objects
    already linked to a record are left out by the caller or refused when linking)."""
    links: dict[int, str] = {}
    for user_id, objects in matches.items():
        if len(objects) != 1:
            continue
        (object_id,) = objects
        if claimants.get(object_id, 0) == 1:
            links[user_id] = object_id
    return links
