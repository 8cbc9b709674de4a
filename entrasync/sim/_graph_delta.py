"""The emulated delta endpoints, `GET /users/delta` and `GET /groups/delta`
(https://learn.microsoft.com/graph/delta-query-overview): the round's state travels in the
skip and delta tokens (`encode_token`), the tenant (tenant.py) computes each page, and the
quirks (quirks.py) shape it as the real Graph may: ragged or empty pages, replayed items,
partial user items, a 404 mid-round, an expired token refused in one of several ways.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from entrasync.sim._graph_http import (
    GraphError,
    GraphRequest,
    GraphResponse,
    decode_token,
    encode_token,
    expired,
    filter_ids,
    not_found,
    select_of,
)
from entrasync.sim.tenant import SyncStateExpired

if TYPE_CHECKING:
    from entrasync.sim.server import EntraEmulator


class DeltaEndpoint:
    """Answers one delta request of the emulator."""

    def __init__(self, emu: EntraEmulator, request: GraphRequest) -> None:
        self.emu = emu
        self.req = request

    def answer(self, resource: str, query: dict[str, str]) -> GraphResponse:
        """One page of `users/delta` or `groups/delta`: a full round's, or an increment's."""
        tenant = self.emu.tenant
        token = query.get("$skiptoken") or query.get("$deltatoken")
        if token:
            state = decode_token(token)
            if state.get("r") != resource:
                raise GraphError(400, "Request_BadRequest", "Token is for another resource.")
            if "$deltatoken" in query and not query.get("$skiptoken"):
                state["to"] = tenant.seq  # a new round starts at the delta link
                state["c"] = None
        else:
            state = {
                "r": resource,
                "e": tenant.epoch,
                "frm": None,
                "to": tenant.seq,
                "sel": select_of(query),
                "n": int(query.get("$top") or self._max_page_size() or self.emu.page_size),
                "c": None,
            }
            if resource == "groups":
                state["ids"] = filter_ids(query.get("$filter"))
        link = f"{self.emu.graph_url}/v1.0/{resource}/delta()"
        carried: list[dict[str, Any]] = state.pop("rp", None) or []
        try:
            items, outcome = self._delta_page(resource, state, bool(query.get("$skiptoken")))
        except SyncStateExpired as exc:
            raise expired(self.emu.quirks.expiry, link) from exc
        if resource == "users" and state.get("frm") is not None and self.emu.quirks.partial_users:
            items = self._partial(items, state)
        items = carried + self._replayed(items, outcome)
        payload: dict[str, Any] = {
            "@odata.context": f"{self.emu.graph_url}/v1.0/$metadata#{resource}",
            "value": items,
        }
        if "next" in outcome:
            payload["@odata.nextLink"] = f"{link}?$skiptoken={encode_token(outcome['next'])}"
        else:
            payload["@odata.deltaLink"] = f"{link}?$deltatoken={encode_token(outcome['delta'])}"
        return GraphResponse(200, payload)

    def _delta_page(
        self, resource: str, state: dict[str, Any], mid_round: bool
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The tenant's page for `state`, shaped by the quirks: a 404 when an object of the
        round vanished between pages, a random page size (possibly an empty page)."""
        tenant, quirks = self.emu.tenant, self.emu.quirks
        tenant.check_state(state)
        if quirks.vanished_404 and mid_round and (gone := tenant.vanished_since(state)):
            raise not_found(gone)
        requested = int(state["n"])
        size = quirks.size(requested) if quirks.ragged_pages else requested
        if size == 0:
            return [], {"next": dict(state)}  # an empty page; the same state comes next
        sized = {**state, "n": size}
        if resource == "users":
            items, outcome = tenant.users_delta(sized)
        else:
            items, outcome = tenant.groups_delta(sized, split=quirks.split_members)
        for key in ("next", "delta"):
            if key in outcome:
                outcome[key]["n"] = requested
        return items, outcome

    def _partial(self, items: list[dict[str, Any]], state: dict[str, Any]) -> list[dict[str, Any]]:
        """Leave out a random subset of the properties that did not change (quirks.py)."""
        changed = self.emu.tenant.changed_properties(int(state["frm"]), int(state["to"]))
        out = []
        for item in items:
            props = changed.get(str(item["id"]))
            if "@removed" in item or props is None:
                out.append(item)
                continue
            optional = [k for k in item if k not in ("id", "@odata.type") and k not in props]
            dropped = set(self.emu.quirks.subset(optional))
            out.append({k: v for k, v in item.items() if k not in dropped})
        return out

    def _replayed(
        self, items: list[dict[str, Any]], outcome: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Send some items twice: again on this page, or on the next page of the round."""
        quirks = self.emu.quirks
        out = list(items)
        for item in items:
            if not quirks.chance(quirks.replays):
                continue
            if "next" in outcome and quirks.chance(0.5):
                outcome["next"].setdefault("rp", []).append(item)
            else:
                out.append(item)
        return out

    def _max_page_size(self) -> int | None:
        prefer = self.req.headers.get("prefer", "")
        match = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        return int(match.group(1)) if match else None
