"""Forwarding the audit log to an outside collector (`audit.forward`): every record, in
order, at least once.

One pass reads the records after the target's cursor in batches, hands each batch to the
collector and moves the cursor only after the collector took it. A failure stops the pass
and is stored on the cursor (status shows it); the next pass starts again from the cursor,
so an outage delays and never loses or reorders; a batch cut off mid-way is sent again whole
(the collector may see a record twice: `seq` and `hash` tell the copies apart). A lease on the
cursor keeps two processes (two daemons, or the daemon and `audit forward`) from interleaving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from entrasync.config import AuditConfig
from entrasync.domain.audit import AuditEvent
from entrasync.domain.forwarding import ForwardTarget, record_json
from entrasync.errors import (
    ChainContradicted,
    CollectorRefused,
    CollectorUnavailable,
    ConfigError,
    PayloadTooLarge,
)
from entrasync.forward import Sender, open_sender
from entrasync.store import forwarding
from entrasync.store.db import Store
from entrasync.store.forwarding import Backlog

BATCH = 500
LEASE = timedelta(minutes=2)
Clock = Callable[[], datetime]
ForwardError = CollectorUnavailable | CollectorRefused | ChainContradicted


@dataclass(frozen=True)
class ForwardResult:
    sent: int
    backlog: Backlog
    error: ForwardError | None = None
    busy: bool = False  # another process holds the lease: nothing was sent

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "busy": self.busy,
            "error": str(self.error) if self.error else None,
            **backlog_view(self.backlog),
        }


def backlog_view(backlog: Backlog) -> dict[str, Any]:
    """The `audit_forward` object of `status --json`."""
    return {
        "target": backlog.target,
        "delivered_seq": backlog.delivered_seq,
        "head_seq": backlog.head_seq,
        "backlog": backlog.waiting,
        "delivered_at": _iso(backlog.delivered_at),
        "failing_since": _iso(backlog.failing_since),
        "last_error": backlog.last_error,
    }


def read_token(path: Path) -> str:
    """The collector's token; its content never appears in an error."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"audit.forward_token_file {path}: {reason}") from None
    if not token or not all(33 <= ord(c) <= 126 for c in token):
        raise ConfigError(
            f"audit.forward_token_file {path}: not one token on one line (printable ASCII, "
            "no spaces)"
        )
    return token


def sender_for(settings: AuditConfig) -> tuple[ForwardTarget, Sender] | None:
    target = settings.forward_target
    if target is None:
        return None
    token = read_token(settings.forward_token_file) if settings.forward_token_file else None
    sender = open_sender(
        target,
        token=token,
        auth_scheme=settings.forward_auth_scheme,
        ca_bundle=settings.forward_ca_bundle,
    )
    return target, sender


def forward_pending(
    store: Store, target: ForwardTarget, sender: Sender, clock: Clock, owner: str
) -> ForwardResult:
    """Deliver what waits for `target`, batch by batch, until nothing waits or one fails."""
    name = target.display
    with store.unit_of_work(clock()) as uow:
        cursor = forwarding.claim(uow, name, owner, LEASE)
    if cursor is None:
        return ForwardResult(0, _backlog(store, name), busy=True)
    sent = 0
    try:
        error: ForwardError | None = _contradiction(store, name, cursor)
        if error is None:
            sent, error = _deliver_all(store, name, sender, clock, owner, cursor)
        else:
            _failed(store, name, clock, error)
    finally:
        with store.unit_of_work(clock()) as uow:
            forwarding.release(uow, name, owner)
    return ForwardResult(sent, _backlog(store, name), error)


def _deliver_all(
    store: Store, name: str, sender: Sender, clock: Clock, owner: str, cursor: int
) -> tuple[int, ForwardError | None]:
    sent, batch = 0, BATCH
    while True:
        with store.reading() as session:
            records = forwarding.after(session, cursor, batch)
        if not records:
            return sent, None
        try:
            sender.deliver(records)
        except PayloadTooLarge as exc:
            if len(records) > 1:  # HTTP 413: the same records again, in smaller batches
                batch = len(records) // 2
                continue
            return sent, _failed(store, name, clock, _too_large(records[0], exc))
        except (CollectorUnavailable, CollectorRefused) as exc:
            return sent, _failed(store, name, clock, exc)
        cursor, sent = int(records[-1]["seq"]), sent + len(records)
        with store.unit_of_work(clock()) as uow:
            forwarding.advance(uow, name, cursor, str(records[-1]["hash"]))
            if forwarding.claim(uow, name, owner, LEASE) is None:
                return sent, None  # the lease ran out and another process took over


def _contradiction(store: Store, name: str, cursor: int) -> ChainContradicted | None:
    """The record the collector got last must still be in the log as it was delivered: a
    log cut or rebuilt since then reuses seqs, and sending "what follows" would skip records
    the collector never saw. Nothing is sent until an admin has looked (`--from`)."""
    with store.reading() as session:
        sent = forwarding.delivered_hash(session, name)
        held = forwarding.session_hash(session, cursor) if cursor else None
    if not cursor or sent is None or held == sent:
        return None
    now = "no longer holds it" if held is None else f"now holds hash {held[:16]}… there"
    return ChainContradicted(
        f"{name}: audit forwarding stopped: record {cursor} was delivered with hash "
        f"{sent[:16]}…, and the log {now}: it was cut or rewritten after it was delivered. "
        "Check it with `entrasync audit verify --public-key FILE --checkpoints DIR`; then "
        "`entrasync audit forward --from SEQ` delivers again from record SEQ"
    )


def rewind(store: Store, target: ForwardTarget, first_seq: int, now: datetime, actor: str) -> None:
    """An admin's decision, audited: deliver again from record `first_seq` on."""
    with store.unit_of_work(now, actor=actor) as uow:
        before = forwarding.backlog(uow.session, target.display)
        forwarding.rewind(uow, target.display, first_seq - 1)
        uow.audit(
            AuditEvent(
                "audit.forward_rewound",
                f"deliver the audit log to {target.display} again from record {first_seq}",
                details={
                    "target": target.display,
                    "from_seq": first_seq,
                    "delivered_seq_before": before.delivered_seq,
                },
            )
        )


def _failed(store: Store, name: str, clock: Clock, exc: ForwardError) -> ForwardError:
    with store.unit_of_work(clock()) as uow:
        forwarding.failed(uow, name, str(exc))
    return exc


def _too_large(record: dict[str, Any], exc: PayloadTooLarge) -> CollectorRefused:
    size = len(record_json(record))
    return CollectorRefused(
        f"{exc}: record {record['seq']} alone ({size} bytes as JSON) is more than the "
        "collector takes: raise its request size limit; this record and the ones after it "
        "wait in the store"
    )


def backlog(store: Store, target: ForwardTarget) -> Backlog:
    return _backlog(store, target.display)


def _backlog(store: Store, name: str) -> Backlog:
    with store.reading() as session:
        return forwarding.backlog(session, name)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
