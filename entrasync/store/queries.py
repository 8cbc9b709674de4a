"""Set-based queries the services share: license counts, user lookups, per-user summaries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Exists,
    Select,
    bindparam,
    exists,
    func,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from entrasync.domain.evidence import RANK_ADDRESS
from entrasync.domain.identity import IdentifierKind, normalize, normalize_logon
from entrasync.domain.status import UserStatus
from entrasync.errors import NotFound
from entrasync.store.driver import on_postgresql
from entrasync.store.id_lists import chunks, one_of, one_of_bound
from entrasync.store.schema import (
    ActivityRow,
    AgentLogonRow,
    AgentRow,
    EntraKeyRow,
    EntraUserRow,
    IdentifierRow,
    RetiredIdentifierRow,
    UserRow,
)


class unindexed(FunctionElement[Any]):
    """`column`, in a condition that must not choose an index: SQLite's unary `+`. Without
    statistics SQLite prefers any equality on an index to a list of ids on a unique one,
    and reads the whole range (every untracked record, say) to find a handful."""

    inherit_cache = True
    name = "unindexed"


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


@compiles(unindexed)
def _unindexed(element: unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


def has_history() -> Exists:
    return exists().where(ActivityRow.agent_id == AgentRow.id)


def licensed_agents_query() -> Select[Any]:
    """Agents that consume a license: holding history, owned by an active (not pending) user.
    The one statement of the license rule; every count of used licenses reads it."""
    return (
        select(func.count(AgentRow.id))
        .join(UserRow, UserRow.id == AgentRow.user_id)
        .where(*_licensed())
    )


def _licensed() -> tuple[ColumnElement[bool], Exists]:
    return UserRow.status == UserStatus.ACTIVE.value, has_history()


def used_licenses(session: Session) -> int:
    """Licenses in use: the maintained tally (store/tally.py) with this transaction's own
    changes folded in; a full count only on a store that has no tally row."""
    from entrasync.store import tally  # the tally builds on this module

    return tally.used_licenses(session)


def pending_users(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count(UserRow.id)).where(
                UserRow.status == UserStatus.PENDING.value, UserRow.merged_into_id.is_(None)
            )
        )
        or 0
    )


def user_license_counts(session: Session, user_ids: Sequence[int]) -> dict[int, int]:
    """User id -> licenses the user holds (users holding none are absent)."""
    if not user_ids:
        return {}
    statement = _licenses_of(postgresql=on_postgresql(session))
    # a list: on SQLite the parameter is converted once per place it appears
    rows = session.execute(statement, {"users": list(user_ids)})
    return {int(uid): int(n) for uid, n in rows}


@cache
def _licenses_of(*, postgresql: bool) -> Select[int, int]:
    """`user_license_counts`' statement, built once (every action that changes what a user
    holds runs it; built each time, SQLAlchemy's building and cache key cost more than the
    query; bench/RESULTS.md, fourteenth round). Both sides of the join named: given only
    the agents' side, PostgreSQL hashed the join against a scan of every user (all are
    active: the status is no filter)."""
    return _licenses_per_user().where(
        one_of_bound(postgresql, AgentRow.user_id, "users"),
        one_of_bound(postgresql, UserRow.id, "users"),
    )


def all_license_counts(session: Session) -> dict[int, int]:
    """`user_license_counts` for every user, one query."""
    return {int(uid): int(n) for uid, n in session.execute(_licenses_per_user())}


def _licenses_per_user() -> Select[int, int]:
    return (
        select(AgentRow.user_id, func.count(AgentRow.id))
        .join(UserRow, UserRow.id == AgentRow.user_id)
        .where(*_licensed())
        .group_by(AgentRow.user_id)
    )


def logon_agents(session: Session, logons: Sequence[str]) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for chunk in chunks(list(logons)):
        rows = session.execute(
            select(AgentLogonRow.logon, AgentRow.id, AgentRow.user_id)
            .join(AgentRow, AgentRow.id == AgentLogonRow.agent_id)
            .where(AgentLogonRow.logon.in_(chunk))
        )
        found.update({logon: (int(aid), int(uid)) for logon, aid, uid in rows})
    return found


def identifier_users(
    session: Session, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """(kind, value) -> owning user. One `kind = ? AND value IN (…)` per kind, a probe of
    the unique index per key: SQLite (3.40) answers a row-value `IN` list with a scan of
    the whole table, which made ingest slow down as the store grew (bench: ingest)."""
    found: dict[tuple[str, str], int] = {}
    for kind, values in by_kind(keys).items():
        for chunk in chunks(values):
            rows = session.execute(
                select(IdentifierRow.value, IdentifierRow.user_id).where(
                    IdentifierRow.kind == kind, IdentifierRow.value.in_(chunk)
                )
            )
            found.update({(kind, value): int(uid) for value, uid in rows})
    return found


def by_kind(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Keys grouped by kind (values sorted, once each): for `kind = ? AND value IN (…)`."""
    grouped: dict[str, set[str]] = {}
    for kind, value in keys:
        grouped.setdefault(kind, set()).add(value)
    return {kind: sorted(values) for kind, values in sorted(grouped.items())}


def stale_identifiers(
    session: Session, owners: Mapping[tuple[str, str], int]
) -> set[tuple[str, str]]:
    """The upn/email keys among `owners` (key -> owning record) that must not attract a new
    logon to their record: the record's Entra account is deleted, or Entra now gives the
    key to another live account and no longer to the record's own (UPN reuse)."""
    keys = [k for k in owners if k[0] in ("upn", "email")]
    if not keys:
        return set()
    linked = _linked_objects(session, sorted({owners[k] for k in keys}))
    holders = _live_holders(session, [k for k in keys if owners[k] in linked])
    stale = set()
    for key in keys:
        own = linked.get(owners[key])
        if own is None:
            continue
        object_id, deleted = own
        others = holders.get(key, set()) - {object_id}
        if deleted or (others and object_id not in holders.get(key, set())):
            stale.add(key)
    return stale


def _linked_objects(session: Session, user_ids: Sequence[int]) -> dict[int, tuple[str, bool]]:
    """Record -> (its Entra object, whether that object is deleted), for linked records."""
    linked: dict[int, tuple[str, bool]] = {}
    for ids in chunks(user_ids):
        # Two index probes, not a join: PostgreSQL hashed the join against a scan of every
        # mirrored Entra user.
        objects = {
            str(object_id): int(uid)
            for uid, object_id in session.execute(
                select(UserRow.id, UserRow.entra_object_id).where(
                    UserRow.id.in_(ids), UserRow.entra_object_id.is_not(None)
                )
            )
        }
        if not objects:
            continue
        for object_id, deleted_at in session.execute(
            select(EntraUserRow.object_id, EntraUserRow.deleted_at).where(
                EntraUserRow.object_id.in_(sorted(objects))
            )
        ):
            linked[objects[object_id]] = (str(object_id), deleted_at is not None)
    return linked


def _live_holders(
    session: Session, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], set[str]]:
    """Key -> the live Entra objects that list it as their UPN or an address."""
    holders: dict[tuple[str, str], set[str]] = {}
    for kind, values in by_kind(keys).items():
        for chunk in chunks(values):
            for value, object_id in session.execute(
                select(EntraKeyRow.value, EntraKeyRow.object_id)
                .join(EntraUserRow, EntraUserRow.object_id == EntraKeyRow.object_id)
                .where(
                    EntraKeyRow.kind == kind,
                    EntraKeyRow.value.in_(chunk),
                    EntraKeyRow.rank <= RANK_ADDRESS,
                    EntraUserRow.deleted_at.is_(None),
                )
            ):
                holders.setdefault((kind, value), set()).add(object_id)
    return holders


def retired_identifiers_of(session: Session, user_id: int) -> list[dict[str, str]]:
    """Identifiers the record no longer answers to (UPN reuse), oldest first."""
    return retired_identifiers_by_user(session, user_id).get(user_id, [])


def retired_identifiers_by_user(
    session: Session, user_id: int | None = None
) -> dict[int, list[dict[str, str]]]:
    """User id -> retired identifiers (a small table: only UPN reuse writes it)."""
    query = select(RetiredIdentifierRow).order_by(RetiredIdentifierRow.id)
    if user_id is not None:
        query = query.where(RetiredIdentifierRow.user_id == user_id)
    found: dict[int, list[dict[str, str]]] = {}
    for r in session.scalars(query):
        found.setdefault(int(r.user_id), []).append(
            {
                "kind": r.kind,
                "value": r.value,
                "retired_at": r.retired_at.isoformat(),
                "reason": r.reason,
            }
        )
    return found


def agents_with_history(session: Session, agent_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for chunk in chunks(list(agent_ids)):
        found.update(
            session.scalars(select(AgentRow.id).where(AgentRow.id.in_(chunk), has_history()))
        )
    return found


@dataclass(frozen=True)
class AgentSummary:
    id: int
    logons: list[str]
    activity_rows: int


def agent_summaries(session: Session, user_id: int) -> list[AgentSummary]:
    rows = session.execute(
        select(AgentRow.id, func.count(ActivityRow.id))
        .outerjoin(ActivityRow, ActivityRow.agent_id == AgentRow.id)
        .where(AgentRow.user_id == user_id)
        .group_by(AgentRow.id)
        .order_by(AgentRow.id)
    ).all()
    logons: dict[int, list[str]] = {}
    for logon, agent_id in session.execute(
        select(AgentLogonRow.logon, AgentLogonRow.agent_id)
        .join(AgentRow, AgentRow.id == AgentLogonRow.agent_id)
        .where(AgentRow.user_id == user_id)
        .order_by(AgentLogonRow.logon)
    ):
        logons.setdefault(int(agent_id), []).append(logon)
    return [AgentSummary(int(a), logons.get(int(a), []), int(n)) for a, n in rows]


def find_user(session: Session, ident: str) -> UserRow:
    """A user by store id, logon, Entra object id or any identifier; merged records resolve
    to their survivor. A `kind:` prefix (`id:`, `upn:`, `email:`, `employee_id:`, `logon:`,
    `entra:`) removes any ambiguity, e.g. an all-digit employee id."""
    user = _lookup(session, ident.strip())
    if user is None:
        raise NotFound(f"no user matches {ident!r} (try a UPN, email, employee id, logon or id)")
    while user.merged_into_id is not None:
        user = session.get_one(UserRow, user.merged_into_id)
    return user


def _lookup(session: Session, ident: str) -> UserRow | None:
    kind, sep, rest = ident.partition(":")
    if sep and kind in {"id", "entra", *IdentifierKind}:
        return _lookup_kind(session, kind, rest)
    if ident.isdigit():
        user = session.get(UserRow, int(ident))
        if user is not None:
            return user
    if "\\" in ident:
        return _lookup_kind(session, "logon", ident)
    user = _by_identifier(session, normalize(ident), list(IdentifierKind))
    if user is None:
        user = session.scalar(select(UserRow).where(UserRow.entra_object_id == ident.lower()))
    return user


def _lookup_kind(session: Session, kind: str, value: str) -> UserRow | None:
    if kind == "id":
        return session.get(UserRow, int(value)) if value.isdigit() else None
    if kind == "entra":
        return session.scalar(select(UserRow).where(UserRow.entra_object_id == value.lower()))
    if kind == IdentifierKind.LOGON:
        try:
            logon = normalize_logon(value)
        except ValueError:
            return None
        agent_user = session.scalar(
            select(AgentRow.user_id)
            .join(AgentLogonRow, AgentLogonRow.agent_id == AgentRow.id)
            .where(AgentLogonRow.logon == logon)
        )
        if agent_user is not None:
            return session.get(UserRow, agent_user)
        return _by_identifier(session, logon, [IdentifierKind.LOGON])
    return _by_identifier(session, normalize(value), [IdentifierKind(kind)])


def _by_identifier(session: Session, value: str, kinds: list[IdentifierKind]) -> UserRow | None:
    order = {kind.value: index for index, kind in enumerate(kinds)}
    rows = session.execute(
        select(IdentifierRow.kind, IdentifierRow.user_id).where(
            IdentifierRow.value == value, IdentifierRow.kind.in_([k.value for k in kinds])
        )
    ).all()
    if not rows:
        return None
    best = min(rows, key=lambda row: order[row[0]])
    return session.get(UserRow, best[1])


def identifiers_of(session: Session, user_id: int) -> list[dict[str, str]]:
    """A user's identifiers as an audit record names them (every audited action reads
    them: the statement is built once)."""
    return named(session.execute(_IDENTIFIERS_OF, {"user_id": user_id}))


_IDENTIFIERS_OF = select(IdentifierRow.kind, IdentifierRow.value).where(
    IdentifierRow.user_id == bindparam("user_id")
)


def named(pairs: Iterable[Sequence[str]]) -> list[dict[str, str]]:
    """(kind, value) pairs as audit records and `users show` name a person, in one order on
    both stores: by code point (SQLite's BINARY collation; PostgreSQL's ORDER BY would follow
    the database's locale)."""
    return [{"kind": kind, "value": value} for kind, value in sorted(map(tuple, pairs))]


def named_by_user(rows: Iterable[Sequence[Any]]) -> dict[int, list[dict[str, str]]]:
    """(user id, kind, value) rows -> each user's identifiers, `named`."""
    pairs: dict[int, list[tuple[str, str]]] = {}
    for uid, kind, value in rows:
        pairs.setdefault(int(uid), []).append((kind, value))
    return {uid: named(found) for uid, found in pairs.items()}


def user_states(session: Session, user_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """User id -> (tracking, status), as plain rows (ingest's lookups: no ORM objects)."""
    if not user_ids:
        return {}
    rows = session.execute(
        select(UserRow.id, UserRow.tracking, UserRow.status).where(
            one_of(session, UserRow.id, user_ids)
        )
    )
    return {int(uid): (str(tracking), str(status)) for uid, tracking, status in rows}
