"""The demo's story, as data: a generated tenant, the reports its agents send, and the day a
domain migration and some group changes happen.

Day 1 ("yesterday"): every person has an agent reporting; entrasync's first cycle links each
store record to its Entra user. Day 2 ("today"): a slice of people is renamed from oldco.com
to newco.com and their agents report the new UPN under a NEWCO\\ logon — a second record and a
second license each, until the licenses run out and the rest wait in the pending queue; a few
new hires wait there too; admins put people in the Do Not Track group (some through a nested
group) and in the Delete group (two of whom never logged in).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from entrasync.sim import Tenant, generate_tenant

OLD_DOMAIN = "oldco.com"
NEW_DOMAIN = "newco.com"

_FIRST = (
    "ana", "ben", "chloe", "dmitri", "elif", "farah", "gus", "hana", "ivan", "jo",
    "kofi", "lena", "mateo", "nia", "omar", "priya", "quinn", "rosa", "sven", "tariq",
)  # fmt: skip
_LAST = (
    "silva", "okafor", "nguyen", "berg", "kaya", "haddad", "moreau", "sato", "petrov", "lund",
    "mensah", "costa", "reyes", "iyer", "novak", "walsh", "kim", "ortiz", "dahl", "rahman",
)  # fmt: skip
MAX_NAMES = len(_FIRST) * len(_LAST)


def person_name(index: int) -> str:
    """`ana.silva`, `ben.okafor`, …: unique for index < MAX_NAMES."""
    first = index % len(_FIRST)
    last = (index // len(_FIRST) + index) % len(_LAST)
    return f"{_FIRST[first]}.{_LAST[last]}"


@dataclass(frozen=True)
class Shape:
    """How big the story is. The defaults make a few hundred people and finish in seconds."""

    users: int = 300  # generated people at contoso.com / fabrikam.com
    renamed: int = 40  # people renamed oldco.com -> newco.com
    renamed_pending: int = 5  # of those, duplicates that find no free license: pending queue
    new_hires: int = 3  # new people who find no free license: pending queue
    dnt: int = 10  # direct members of the Do Not Track group
    nested: int = 5  # members of the group nested in the Do Not Track group
    delete: int = 6  # members of the Delete group
    delete_unseen: int = 2  # of those, people who never logged in (pre-registered)


@dataclass(frozen=True)
class Person:
    object_id: str
    upn: str
    logon: str
    device: str


@dataclass
class Scenario:
    shape: Shape
    tenant: Tenant
    dnt_group: str
    nested_group: str
    delete_group: str
    people: list[Person]  # everyone in Entra on day 1 (generated and oldco.com)
    renamed: list[Person]  # the oldco.com slice, as on day 1
    dnt_members: list[Person] = field(default_factory=list)
    nested_members: list[Person] = field(default_factory=list)
    delete_members: list[Person] = field(default_factory=list)
    unseen: set[str] = field(default_factory=set)  # object ids that never report
    new_hires: list[Person] = field(default_factory=list)  # added to Entra on day 2

    @property
    def reporting(self) -> list[Person]:
        return [p for p in self.people if p.object_id not in self.unseen]

    @property
    def purchased(self) -> int:
        """Enough for day 1 and for the duplicates that find a license on day 2."""
        return len(self.reporting) + len(self.renamed) - self.shape.renamed_pending


def report_line(person: Person, logon: str, upn: str, start: datetime, events: int) -> str:
    """One agent report as the agents send it (JSON Lines)."""
    body: dict[str, Any] = {
        "device": person.device,
        "logon": logon,
        "upn": upn,
        "events": [
            {
                "start": (start + timedelta(minutes=20 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "duration_s": 300 + 60 * i,
                "app": ("excel.exe", "outlook.exe", "teams.exe")[i % 3],
                "title": f"Quarterly report {i + 1}",
            }
            for i in range(events)
        ],
    }
    return json.dumps(body)


def build(shape: Shape, seed: int = 7) -> Scenario:
    """Day 1: the tenant (groups empty but for the nesting) and who is in which slice."""
    generated = generate_tenant(shape.users, dnt=0, delete=0, nested=0, seed=seed)
    tenant = generated.tenant
    people = []
    for object_id in generated.user_ids:
        user = tenant.users[object_id]
        sam = user.on_premises_sam_account_name or user.user_principal_name.split("@")[0]
        domain = user.on_premises_domain_name or "CONTOSO"
        people.append(
            Person(object_id, user.user_principal_name, f"{domain}\\{sam}", f"PC-{sam.upper()}")
        )
    renamed = []
    for index in range(shape.renamed):
        name = person_name(index)
        object_id = tenant.add_user(
            f"{name}@{OLD_DOMAIN}", display_name=name.replace(".", " ").title()
        )
        renamed.append(
            Person(object_id, f"{name}@{OLD_DOMAIN}", f"OLDCO\\{name}", f"LT-{index:04d}")
        )
    scenario = Scenario(
        shape,
        tenant,
        generated.dnt_group,
        generated.nested_group,
        generated.delete_group,
        [*people, *renamed],
        renamed,
    )
    rng = random.Random(seed)
    picked = rng.sample(people, shape.dnt + shape.nested + shape.delete)
    scenario.dnt_members = picked[: shape.dnt]
    scenario.nested_members = picked[shape.dnt : shape.dnt + shape.nested]
    scenario.delete_members = picked[shape.dnt + shape.nested :]
    unseen = scenario.delete_members[len(scenario.delete_members) - shape.delete_unseen :]
    scenario.unseen = {p.object_id for p in unseen}
    return scenario


def day_one_reports(scenario: Scenario, start: datetime) -> list[str]:
    return [
        report_line(person, person.logon, person.upn, start, 1 + n % 3)
        for n, person in enumerate(scenario.reporting)
    ]


def migrate(scenario: Scenario) -> None:
    """Day 2 in Entra: the domain migration and the admins' group changes."""
    tenant = scenario.tenant
    for person in scenario.renamed:
        tenant.rename_upn(person.object_id, new_upn(person))
    tenant.add_members(scenario.dnt_group, [p.object_id for p in scenario.dnt_members])
    tenant.add_members(scenario.nested_group, [p.object_id for p in scenario.nested_members])
    tenant.add_members(scenario.delete_group, [p.object_id for p in scenario.delete_members])
    for index in range(scenario.shape.new_hires):
        name = person_name(scenario.shape.renamed + index)
        upn = f"{name}@{NEW_DOMAIN}"
        object_id = tenant.add_user(upn, display_name=name.replace(".", " ").title())
        scenario.new_hires.append(
            Person(object_id, upn, f"NEWCO\\{name}", f"LT-{9000 + index:04d}")
        )


def new_upn(person: Person) -> str:
    return person.upn.replace(f"@{OLD_DOMAIN}", f"@{NEW_DOMAIN}")


def duplicate_reports(scenario: Scenario, start: datetime) -> list[str]:
    """The renamed people's agents, now reporting the new UPN under a NEWCO\\ logon."""
    return [
        report_line(p, p.logon.replace("OLDCO\\", "NEWCO\\"), new_upn(p), start, 2)
        for p in scenario.renamed
    ]


def new_hire_reports(scenario: Scenario, start: datetime) -> list[str]:
    return [report_line(p, p.logon, p.upn, start, 1) for p in scenario.new_hires]
