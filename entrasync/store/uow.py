"""The unit of work: one store transaction, the audit records it writes, and the account tail.

Every writer (a cycle's page, an admin action, a pending action, an ingest, `db upgrade`)
goes through `Store.unit_of_work(...)`::

    with store.unit_of_work(now, actor=actor, account=config.account, notify=config.notify) as uow:
        ...change rows through uow.session...
        uow.audit(AuditEvent(...))

On a clean exit the `[account]` settings are applied and the compliance clock refreshed (once,
whatever the body did: the "settings + compliance" tail), then the transaction commits. Any
exception rolls everything back, audit records included; `uow.discard()` does the same for a
dry run without raising.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from sqlalchemy.orm import Session

from entrasync.domain.audit import SYSTEM_ACTOR, AuditEvent
from entrasync.store import account as account_rows
from entrasync.store import audit as audit_rows

if TYPE_CHECKING:
    from entrasync.config import AccountConfig, NotifyConfig
    from entrasync.store.account import LicenseStatus
    from entrasync.store.schema import AccountRow


class UnitOfWork:
    """What a writer holds inside `Store.unit_of_work`: the session, the clock reading the
    change is made at, and the audit appender bound to the actor and run."""

    def __init__(
        self,
        session: Session,
        lock: Callable[[Session], None],
        *,
        now: datetime,
        actor: str,
        run_id: str | None,
    ) -> None:
        self.session = session
        self.now = now
        self.actor = actor
        self.run_id = run_id
        self._lock = lock
        self._discarded = False

    def lock(self) -> None:
        """Serialise with every other writer for the rest of the transaction (PostgreSQL's
        advisory lock; SQLite's BEGIN IMMEDIATE already holds the write lock)."""
        self._lock(self.session)

    def audit(self, *events: AuditEvent, actor: str | None = None) -> list[int]:
        """Chain `events` onto the audit log in this transaction; returns their seqs."""
        if not events:
            return []
        self.lock()
        return audit_rows.append_locked(
            self.session, events, actor=actor or self.actor, now=self.now, run_id=self.run_id
        )

    def chain(self) -> audit_rows.Chain:
        """The audit log's head, read now (under the writers' lock), for records built later
        in this transaction without the store (`Chain.records`: a purge batch builds them
        while the server deletes) and written with `write_records`."""
        self.lock()
        return audit_rows.Chain.at_head(
            self.session, actor=self.actor, now=self.now, run_id=self.run_id
        )

    def write_records(self, records: list[audit_rows.Sealed]) -> list[int]:
        return audit_rows.insert_records(self.session, records)

    def discard(self) -> None:
        """Roll back instead of committing (a dry run): nothing written, nothing audited."""
        self._discarded = True

    @property
    def discarded(self) -> bool:
        return self._discarded

    def account(self, settings: AccountConfig) -> AccountRow:
        """The account row with `[account]` applied (a change audited once per transaction)."""
        return account_rows.apply_settings(self, settings)

    def refresh_compliance(self, notify: NotifyConfig | None) -> LicenseStatus:
        return account_rows.refresh_compliance(self, notify)

    def finish(self, settings: AccountConfig | None, notify: NotifyConfig | None) -> None:
        """The tail every writer shares: settings, then compliance, once, before commit."""
        if settings is None or self._discarded:
            return
        self.account(settings)
        self.refresh_compliance(notify)


class _Discarded(Exception):
    """Leaves a discarded unit of work's transaction by the rollback path."""


class UnitOfWorkOptions(TypedDict, total=False):
    """What `Store.unit_of_work` passes on to `open_unit_of_work`, which holds the defaults."""

    actor: str
    run_id: str | None
    account: AccountConfig | None
    notify: NotifyConfig | None


@contextmanager
def open_unit_of_work(
    transaction: Callable[[], AbstractContextManager[Session]],
    lock: Callable[[Session], None],
    *,
    now: datetime,
    actor: str = SYSTEM_ACTOR,
    run_id: str | None = None,
    account: AccountConfig | None = None,
    notify: NotifyConfig | None = None,
) -> Iterator[UnitOfWork]:
    try:
        with transaction() as session:
            uow = UnitOfWork(session, lock, now=now, actor=actor, run_id=run_id)
            yield uow
            uow.finish(account, notify)
            if uow.discarded:
                raise _Discarded
    except _Discarded:
        pass
