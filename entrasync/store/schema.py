"""The store's tables (SQLAlchemy 2 typed mappings). Alembic migrations are generated from here.

Identifier and logon values are stored case-folded, so uniqueness and lookups are
case-insensitive on every backend without functional indexes. Audit timestamps are ISO strings
in one fixed format because the hash chain covers them byte for byte.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from entrasync.domain.reports import MAX_APP_CHARS, MAX_DEVICE_CHARS

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class AccountRow(Base):
    """The single account row (id 1): purchased licenses, plan and the grace-period clock."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purchased_licenses: Mapped[int] = mapped_column(Integer, default=0)
    plan: Mapped[str] = mapped_column(String(16), default="paid")
    pending_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    manual_review: Mapped[bool] = mapped_column(Boolean, default=False)
    grace_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tracking: Mapped[str] = mapped_column(String(16), default="tracked")
    # Who untracked the user: "entrasync" (may be re-tracked by a sync) or "admin" (never).
    untracked_by: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    pending_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    entra_object_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    display_name: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_activity_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Set when the history was purged: such a record stays Untracked (never re-tracked by a
    # sync) until an admin tracks it.
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_users_status", "status"),)  # ix_users_merged_into: tally.py


class IdentifierRow(Base):
    __tablename__ = "identifiers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))

    __table_args__ = (
        UniqueConstraint("kind", "value", name="uq_identifiers_kind_value"),
        Index("ix_identifiers_user_id", "user_id", "kind", "value"),  # index-only: 0012
    )


class RetiredIdentifierRow(Base):
    """An identifier a record no longer answers to, because Entra gave it to another person
    (UPN reuse) or because its Entra account is deleted and a new logon claimed it. Kept for
    `users show` and the audit; never matched by agent reports."""

    __tablename__ = "retired_identifiers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    retired_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_retired_identifiers_value", "kind", "value"),)


class AgentRow(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AgentLogonRow(Base):
    __tablename__ = "agent_logons"

    logon: Mapped[str] = mapped_column(String(320), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)


class ActivityRow(Base):
    """Historical data: one activity event an agent reported, on one device.

    An event (agent, device, start, duration, app, title) is stored once however often it is
    ingested: the unique index `uq_activity_event` below, and inserts that skip a conflict.
    The title is optional, and NULLs are distinct in a unique index on both engines, so the
    index holds COALESCE(title, ''): a missing and an empty title are the same event. (Not
    an empty string stored instead of NULL: reads and exports keep what the agent sent.) On
    PostgreSQL the title goes in as md5(): a B-tree entry must stay under ~2.7 kB and titles
    are unbounded, while device and app are bounded by their columns. The narrow agent_id
    index stays although the unique one leads with agent_id: the license count probes it once
    per agent, and the wide index made that probe 2.4x slower (150,000 agents, 5M rows).
    """

    __tablename__ = "activity"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    device: Mapped[str] = mapped_column(String(MAX_DEVICE_CHARS))
    start: Mapped[datetime] = mapped_column(UtcDateTime)
    duration_s: Mapped[int] = mapped_column(Integer)
    app: Mapped[str] = mapped_column(String(MAX_APP_CHARS))
    title: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_activity_agent", "agent_id"),
        Index("ix_activity_start", "start"),
    )


# The event identity (see ActivityRow), created by migration 0005; one definition per engine.
_EVENT_COLUMNS = [
    ActivityRow.agent_id,
    ActivityRow.start,
    ActivityRow.duration_s,
    ActivityRow.app,
    ActivityRow.device,
]


def event_title_key(title: Any, dialect: str) -> Any:
    """The title as the event identity compares it (the last column of uq_activity_event);
    queries that match events across agents use the same expression."""
    untitled = func.coalesce(title, "")
    return func.md5(untitled) if dialect == "postgresql" else untitled


def event_identity_sql(dialect: str) -> str:
    """The columns of uq_activity_event as SQL, for an `ON CONFLICT (…)` target (which must
    repeat the index's expressions; tests/unit/test_report_bounds.py compares the two)."""
    title = "md5(coalesce(title, ''))" if dialect == "postgresql" else "coalesce(title, '')"
    return f"agent_id, start, duration_s, app, device, {title}"


for _dialect in ("sqlite", "postgresql"):
    Index(
        "uq_activity_event",
        *_EVENT_COLUMNS,
        event_title_key(ActivityRow.title, _dialect),
        unique=True,
    ).ddl_if(dialect=_dialect)


class EntraUserRow(Base):
    """Mirror of the Entra user objects entrasync has read (identity properties only)."""

    __tablename__ = "entra_users"

    object_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    upn: Mapped[str | None] = mapped_column(String(320), index=True)
    mail: Mapped[str | None] = mapped_column(String(320))
    proxy_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    on_premises_upn: Mapped[str | None] = mapped_column(String(320))
    on_premises_sam: Mapped[str | None] = mapped_column(String(256))
    on_premises_domain: Mapped[str | None] = mapped_column(String(256))
    employee_id: Mapped[str | None] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(String(256))
    # accountEnabled as last read; NULL: never read (counts as enabled).
    account_enabled: Mapped[bool | None] = mapped_column(Boolean)
    # UPNs this object had before, newest last: the strongest rename evidence.
    previous_upns: Mapped[list[str]] = mapped_column(JSON, default=list)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class EntraGroupRow(Base):
    """A watched group as last read, and whether its read can be trusted (suspect groups:
    docs/safety.md)."""

    __tablename__ = "entra_groups"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(256))
    # GroupKind: "dnt" or "delete".
    role: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # SuspectReason while the group is suspect, else NULL.
    suspect: Mapped[str | None] = mapped_column(String(16))
    suspect_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    suspect_detail: Mapped[str | None] = mapped_column(Text)
    # The SuspectReason an admin accepted (`groups accept`): not raised again for this read.
    accepted: Mapped[str | None] = mapped_column(String(16))
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class EntraMemberRow(Base):
    """Direct membership edge of the mirror, with the time entrasync first saw it and the
    last full groups round that saw it (a random id: at its end, unstamped edges go)."""

    __tablename__ = "entra_members"

    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_type: Mapped[str] = mapped_column(String(16))
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    seen_round: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_entra_members_member", "member_id"),)


class SyncStateRow(Base):
    """One Graph delta stream's link, committed with the mirror changes it produced."""

    __tablename__ = "sync_state"

    stream: Mapped[str] = mapped_column(String(128), primary_key=True)
    delta_link: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When this stream last finished a full round (`sync.full_resync_every` counts from it).
    full_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resync: Mapped[bool] = mapped_column(Boolean, default=False)
    graph_requests: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    held: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    # Watched groups that were suspect during the run: {group id: why}.
    suspect: Mapped[dict[str, str] | None] = mapped_column(JSON)


class AuditRow(Base):
    """Append-only, hash-chained; a fork would repeat a `seq`: the key rejects it (0013)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(32), index=True)
    run_id: Mapped[str | None] = mapped_column(String(40), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int | None] = mapped_column(BigId, index=True)
    entra_object_id: Mapped[str | None] = mapped_column(String(64))
    identifiers: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class OutboxRow(Base):
    """Emails written in the same transaction as their cause, sent later with retries."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    topic: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text)
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_outbox_unsent", "sent_at", "next_attempt_at"),)


class EntraKeyRow(Base):
    """Identity keys of a mirrored Entra user, matched against store identifiers.

    `rank` is the strength of the evidence that a store record with this key is the same
    person: 1 the object's own (current or previous) UPN, 2 an address Entra still lists for
    it (mail, proxyAddresses, on-premises UPN, DOMAIN\\sam logon, employee id), 3 a
    `merge.domain_map` / `merge.netbios_map` translation of one of those.
    """

    __tablename__ = "entra_keys"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(320), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_entra_keys_object", "object_id"),)


class WatchedMemberRow(Base):
    """Effective (transitive) membership of each configured DNT and Delete group (one row
    per group and member), materialised from the mirror. `first_seen_at` starts the purge
    delay; it survives as long as the membership is continuous. The rows of a suspect group
    are frozen: neither added to nor removed until the group reads normally or is accepted."""

    __tablename__ = "watched_members"

    via_group: Mapped[str] = mapped_column(String(64), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # GroupKind
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_watched_members_object", "object_id"),)


class ScheduledPurgeRow(Base):
    """A purge planned for later (Delete-group member or deleted Entra user, waiting out
    `safety.purge_delay`). Written with its `purge.scheduled` audit record; removed with the
    purge or its `purge.cancelled` record."""

    __tablename__ = "scheduled_purges"

    user_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    object_id: Mapped[str] = mapped_column(String(64))
    cause: Mapped[str] = mapped_column(String(16))  # PurgeCause
    group_id: Mapped[str | None] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    scheduled_at: Mapped[datetime] = mapped_column(UtcDateTime)


class HeldActionRow(Base):
    """An action a safety threshold held back, waiting for `entrasync approve RUN_ID`."""

    __tablename__ = "held_actions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(BigId)
    entra_object_id: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="held")  # held|released|obsolete
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class DaemonStateRow(Base):
    """Key/value state of `entrasync run` (instances, the failure streak; store/daemon_state.py)."""

    __tablename__ = "daemon_state"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
