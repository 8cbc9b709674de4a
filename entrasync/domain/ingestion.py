"""Resolving agent reports to users and agents (pure; the store supplies lookups).

Order: the report's logon (an existing agent, or a logon kept on a user), then upn, email,
employee_id (a new agent for that user), else a new user and agent. Reports for Untracked users
are dropped. Identifiers a report brings that nobody owns yet are learned by the matched user;
an identifier owned by another user is never taken from them, except a *stale* one (its record's
Entra account is deleted, or Entra gave it to another account: UPN reuse), which moves to the
record the report resolved to and is retired on the old one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from entrasync.domain.identity import MATCH_ORDER, IdentifierKind
from entrasync.domain.licensing import AccountTerms, route_new_user
from entrasync.domain.reports import AgentReport

IdentKey = tuple[str, str]


@dataclass
class KnownUser:
    tracking: str  # "tracked" | "untracked"
    status: str  # "active" | "pending"
    licensed: bool = False  # holds at least one license already


@dataclass(frozen=True)
class Lookups:
    """What the store already knows about the identities a file mentions."""

    logon_agents: Mapping[str, tuple[int, int]]  # logon -> (agent id, user id)
    identifier_users: Mapping[IdentKey, int]  # (kind, value) -> user id
    users: Mapping[int, KnownUser]
    agents_with_history: frozenset[int]
    used_licenses: int
    # Identifiers whose record must not attract a new logon (its Entra account is deleted,
    # or Entra gave the identifier to someone else): a report from an unknown logon under
    # one of them starts a new record, and the identifier moves to it.
    stale: frozenset[IdentKey] = frozenset()


@dataclass
class NewUser:
    ref: int  # negative: not in the store yet
    status: str
    identifiers: list[IdentKey]


@dataclass
class NewAgent:
    ref: int
    user: int  # store id or a NewUser ref
    logon: str


@dataclass
class IngestPlan:
    new_users: list[NewUser] = field(default_factory=list)
    new_agents: list[NewAgent] = field(default_factory=list)
    learned: list[tuple[int, IdentKey]] = field(default_factory=list)  # existing user id
    # Identifiers moved off an existing record: (old user id, key, new owner id or ref).
    retired: list[tuple[int, IdentKey, int]] = field(default_factory=list)
    # Reports to store: (agent id or ref, user id or ref, report)
    accepted: list[tuple[int, int, AgentReport]] = field(default_factory=list)
    dropped: list[AgentReport] = field(default_factory=list)
    # Existing users whose first data would take a license over the limit: to the queue.
    queued: list[int] = field(default_factory=list)

    @property
    def pending_users(self) -> list[NewUser]:
        return [user for user in self.new_users if user.status == "pending"]


class _Resolver:
    def __init__(self, lookups: Lookups, terms: AccountTerms) -> None:
        self.logons = dict(lookups.logon_agents)
        self.idents = dict(lookups.identifier_users)
        self.users = dict(lookups.users)
        self.with_history = set(lookups.agents_with_history)
        self.used = lookups.used_licenses
        self.stale = set(lookups.stale)
        self.terms = terms
        self.plan = IngestPlan()
        self._new_users: dict[int, NewUser] = {}
        self._next_ref = -1

    def _ref(self) -> int:
        ref = self._next_ref
        self._next_ref -= 1
        return ref

    def resolve(self, report: AgentReport) -> None:
        agent, user = self.logons.get(report.logon, (None, None))
        if user is None:
            user = self._match_user(report)
        if user is None:
            user = self._new_user()
        self._learn(user, report)
        if self.users[user].tracking == "untracked":
            self.plan.dropped.append(report)
            return
        if agent is None:
            agent = self._ref()
            self.plan.new_agents.append(NewAgent(agent, user, report.logon))
            self.logons[report.logon] = (agent, user)
        if report.events and agent not in self.with_history:
            self.with_history.add(agent)
            self._consume_license(user)
        self.plan.accepted.append((agent, user, report))

    def _consume_license(self, user: int) -> None:
        """An agent of `user` starts holding history. A user's *first* license goes through
        pending routing — whether the user was created by this report or by an earlier one
        that carried no data."""
        known = self.users[user]
        if known.status != "active":
            return
        if not known.licensed:
            if route_new_user(self.used, self.terms) == "pending":
                known.status = "pending"
                if user < 0:
                    self._new_users[user].status = "pending"
                else:
                    self.plan.queued.append(user)
                return
            known.licensed = True
        self.used += 1

    def _match_user(self, report: AgentReport) -> int | None:
        by_logon = self.idents.get((IdentifierKind.LOGON, report.logon))
        if by_logon is not None:
            return by_logon
        values = dict(report.identifiers)
        for field_name, kinds in MATCH_ORDER:
            value = values.get(IdentifierKind(field_name))
            if value is None:
                continue
            for kind in kinds:
                owner = self.idents.get((kind, value))
                if owner is not None and (kind, value) not in self.stale:
                    return owner
        return None

    def _new_user(self) -> int:
        ref = self._ref()
        self.users[ref] = KnownUser("tracked", "active")
        new_user = NewUser(ref, "active", [])
        self._new_users[ref] = new_user
        self.plan.new_users.append(new_user)
        return ref

    def _learn(self, user: int, report: AgentReport) -> None:
        keys = [*report.identifiers, (IdentifierKind.LOGON, report.logon)]
        for kind, value in keys:
            key = (str(kind), value)
            if key in self.stale and self.idents.get(key, user) != user:
                self.plan.retired.append((self.idents[key], key, user))
                self.stale.discard(key)
            elif key in self.idents:
                continue
            self.idents[key] = user
            if user < 0:
                self._new_users[user].identifiers.append(key)
            else:
                self.plan.learned.append((user, key))


def plan_ingest(reports: list[AgentReport], lookups: Lookups, terms: AccountTerms) -> IngestPlan:
    resolver = _Resolver(lookups, terms)
    for report in reports:
        resolver.resolve(report)
    return resolver.plan
