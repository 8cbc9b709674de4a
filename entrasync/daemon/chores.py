"""The leader's other jobs: ``retention`` (pending users' data older than
``account.pending_retention``, shortly after becoming leader and then daily) and ``outbox``
(send due admin emails, every minute), ``checkpoint`` (with ``audit.signing_key_file``: sign
the audit chain's head after each cycle that wrote records and at least hourly) and ``forward``
(with ``audit.forward``: send the audit records the collector has not received, after each
cycle and every few seconds). A store error is logged and retried at the next run. The
checkpoint and forward jobs run whatever the config says, so a reload that sets their key
takes effect without a restart."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

from entrasync.config import Config
from entrasync.daemon.common import attempt, log, utcnow
from entrasync.daemon.metrics import Metrics
from entrasync.errors import ChainContradicted, EntrasyncError
from entrasync.notify import flush_outbox
from entrasync.services import audit_checkpoint, audit_forward
from entrasync.services.pending import expire_pending_data
from entrasync.store.db import Store

RETENTION_JOB = "retention"
OUTBOX_JOB = "outbox"
OUTBOX_EVERY = timedelta(minutes=1)
RETENTION_EVERY = timedelta(days=1)
RETENTION_FIRST_AFTER = timedelta(seconds=5)
CHECKPOINT_JOB = "checkpoint"
# Checked this often; a checkpoint is signed when the head moved or the last is an hour old.
CHECKPOINT_CHECK_EVERY = timedelta(minutes=5)
FORWARD_JOB = "forward"
FORWARD_EVERY = timedelta(seconds=10)


class Chores:
    def __init__(
        self, store: Store, settings: Callable[[], Config], metrics: Metrics, instance: str
    ) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._instance = instance
        self._forward_failing: str | None = None  # the error last logged, to log changes only
        self._forwarding = threading.Lock()

    def retention(self) -> None:
        run_id = str(uuid.uuid4())
        retention = self._settings().account.pending_retention
        result = attempt(
            lambda: expire_pending_data(self._store, utcnow(), retention, run_id=run_id),
            "pending retention failed; retried tomorrow",
        )
        if result is None:
            return
        self._metrics.retention_rows.inc(result.rows_deleted)
        log.info(
            "pending retention",
            run_id=run_id,
            rows_deleted=result.rows_deleted,
            users=len(result.users),
        )

    def flush(self) -> None:
        # Retried at the next run (every minute); SMTP trouble never fails the flush, it is
        # recorded on the rows, each retried with its own backoff.
        result = attempt(
            lambda: flush_outbox(self._store, self._settings().notify, utcnow()),
            "outbox flush failed",
        )
        if result is None:
            return
        self._metrics.emails_sent.inc(result.sent)
        if result.sent or result.failed or result.released:
            log.info(
                "outbox flushed", sent=result.sent, failed=result.failed, released=result.released
            )

    def checkpoint(self) -> None:
        """Sign the audit chain's head when it moved or the last checkpoint is an hour old
        (after every cycle, and from the `checkpoint` job); nothing without a signing key."""
        settings = self._settings().audit
        key_file = settings.signing_key_file
        if key_file is None:
            return
        try:
            signed = attempt(
                lambda: audit_checkpoint.checkpoint_if_due(
                    self._store,
                    audit_checkpoint.read_private_key(key_file),
                    utcnow(),
                    settings.checkpoint_dir,
                ),
                "audit checkpoint failed; retried at the next cycle",
            )
        except ChainContradicted as exc:  # records cut or rewritten: an admin must look
            log.error("audit checkpoint refused", error=str(exc))
            return
        except (EntrasyncError, OSError) as exc:  # an unreadable key or checkpoint_dir
            log.warning("audit checkpoint failed; retried at the next cycle", error=str(exc))
            return
        if signed is not None:
            point = signed.checkpoint
            log.info("audit checkpoint signed", seq=point.seq, hash=point.hash)

    def forward(self) -> None:
        """Send the audit records the collector has not received yet (nothing without
        `audit.forward`); a failure is logged when it starts or changes, not every try. One
        thread at a time: the lease is per instance, so it cannot keep two threads apart."""
        if not self._forwarding.acquire(blocking=False):
            return
        try:
            self._forward()
        finally:
            self._forwarding.release()

    def _forward(self) -> None:
        settings = self._settings().audit
        try:
            wired = audit_forward.sender_for(settings)
        except EntrasyncError as exc:  # an unreadable token file or CA bundle
            self._forward_failed(str(exc))
            return
        if wired is None:
            return
        target, sender = wired
        result = attempt(
            lambda: audit_forward.forward_pending(
                self._store, target, sender, utcnow, self._instance
            ),
            "audit forwarding failed; retried in a few seconds",
        )
        if result is None:
            return
        self._metrics.count_forwarded(result.sent, result.backlog.waiting)
        if result.error is not None:
            self._forward_failed(
                str(result.error),
                backlog=result.backlog.waiting,
                contradicted=isinstance(result.error, ChainContradicted),
            )
        elif result.sent:
            log.info(
                "audit records forwarded", sent=result.sent, up_to=result.backlog.delivered_seq
            )
        if result.error is None and self._forward_failing is not None and not result.busy:
            log.info("audit forwarding recovered", target=target.display)
            self._forward_failing = None

    def _forward_failed(self, error: str, *, contradicted: bool = False, **more: object) -> None:
        self._metrics.forward_failures.inc()
        if error != self._forward_failing:
            # A log that contradicts what the collector received is an incident, not an outage.
            emit = log.error if contradicted else log.warning
            emit("audit forwarding failed; the records wait in the store", error=error, **more)
        self._forward_failing = error
