"""Benchmark scenarios: the size of the tenant and of the store that matches it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

# The time the generated store and every measured cycle are anchored to.
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    name: str
    users: int  # Entra users; every one has a store record
    dnt: int  # direct members of the DNT group
    nested: int  # members of a group nested in the DNT group (also DNT, transitively)
    delete: int  # members of the Delete group
    agents: int  # >= users: the first `users` agents are domain logons, the rest standalone
    activity_rows: int  # spread evenly over the agents
    purge_users: int  # users purged by entrasync and by raw SQL, each on a copy of the store
    ingest_rows: int  # activity rows ingested through `ingest_reports`
    ingest_events_per_report: int = 50
    churn: int = 1_000  # users added to the DNT group for the churn cycle (then removed again)

    @property
    def dnt_effective(self) -> int:
        return self.dnt + self.nested

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


TINY = Scenario(
    name="tiny",
    users=300,
    dnt=25,
    nested=5,
    delete=10,
    agents=450,
    activity_rows=3_000,
    purge_users=10,
    ingest_rows=1_000,
    ingest_events_per_report=10,
    churn=20,
)
QUICK = Scenario(
    name="quick",
    users=20_000,
    dnt=1_800,
    nested=200,
    delete=500,
    agents=30_000,
    activity_rows=500_000,
    purge_users=500,
    ingest_rows=50_000,
)
FULL = Scenario(
    name="full",
    users=100_000,
    dnt=9_000,
    nested=1_000,
    delete=2_000,
    agents=150_000,
    activity_rows=5_000_000,
    purge_users=2_000,
    ingest_rows=250_000,
)
# The quick tenant with ten times the history per agent (about 250 rows per user instead of
# 25): how the purge ratio moves when users hold more than a few rows each.
DENSE = Scenario(
    name="dense",
    users=20_000,
    dnt=1_800,
    nested=200,
    delete=500,
    agents=30_000,
    activity_rows=5_000_000,
    purge_users=500,
    ingest_rows=50_000,
)
SCENARIOS = {s.name: s for s in (TINY, QUICK, FULL, DENSE)}


def sized(users: int, *, rows_per_user: int = 10, base: Scenario = FULL) -> Scenario:
    """`base`'s tenant shape at `users` users (`python -m bench --users N,M`): the same share
    of DNT, nested and Delete members and agents per user, `rows_per_user` activity rows per
    user (DESIGN.md "Scale": 1M users, 10M rows). The work measured does not grow with the
    store: at most 2,000 users purged, 50,000 rows ingested, 1,000 membership changes (fewer
    in a tenant too small for them), so each figure's growth is the store's doing."""
    share = users / base.users
    return replace(
        base,
        name=f"users-{users}",
        users=users,
        dnt=max(1, round(base.dnt * share)),
        nested=max(1, round(base.nested * share)),
        delete=max(1, round(base.delete * share)),
        agents=max(users, round(base.agents * share)),
        activity_rows=users * rows_per_user,
        purge_users=min(2_000, max(1, round(base.delete * share))),
        ingest_rows=min(50_000, users * 2),
        ingest_events_per_report=50 if users >= 10_000 else 10,
        churn=min(1_000, max(1, users // 20)),
    )
