"""Large synthetic tenants for benchmarks and the demo.

Fast by construction: ids are derived from a seeded RNG (`uuid.UUID(int=...)`, no
`uuid4` syscalls), users are created straight into the tenant's dicts and one history event
each, so 100k users take about a second.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from entrasync.sim.tenant import SimGroup, SimUser, Tenant

DOMAINS = ("contoso.com", "fabrikam.com")


@dataclass(frozen=True)
class GeneratedTenant:
    tenant: Tenant
    user_ids: list[str]
    dnt_group: str
    delete_group: str
    nested_group: str  # a child of the DNT group, holding some of its members


def generate_tenant(
    users: int = 1000,
    *,
    dnt: int = 10,
    delete: int = 5,
    nested: int = 0,
    seed: int = 1,
    tenant_id: str | None = None,
) -> GeneratedTenant:
    """A tenant with `users` users, a DNT group with `dnt` direct members, a Delete group with
    `delete` members, and a group nested in the DNT group with `nested` further members."""
    rng = random.Random(seed)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    tenant = Tenant(tenant_id or new_id())
    ids: list[str] = []
    with tenant.lock:
        for n in range(users):
            user_id = new_id()
            domain = DOMAINS[n % len(DOMAINS)]
            upn = f"user{n:06d}@{domain}"
            tenant.users[user_id] = SimUser(
                id=user_id,
                user_principal_name=upn,
                display_name=f"User {n:06d}",
                mail=upn,
                proxy_addresses=[f"SMTP:{upn}"],
                employee_id=f"E{n:06d}",
                on_premises_sam_account_name=f"user{n:06d}",
                on_premises_domain_name=domain.split(".")[0].upper(),
                on_premises_user_principal_name=upn,
            )
            tenant.history.append(("u", user_id))
            ids.append(user_id)
        picked = rng.sample(ids, min(users, dnt + delete + nested))
        groups = []
        for name in ("Do Not Track", "Delete", "Do Not Track - contractors"):
            group = SimGroup(id=new_id(), display_name=name)
            tenant.groups[group.id] = group
            tenant.history.append(("g", group.id))
            groups.append(group.id)
        tenant.add_members(groups[0], picked[:dnt])
        tenant.add_members(groups[1], picked[dnt : dnt + delete])
        tenant.add_members(groups[2], picked[dnt + delete :])
        tenant.add_member(groups[0], groups[2])
    return GeneratedTenant(tenant, ids, groups[0], groups[1], groups[2])
