"""The leader's other jobs: ``retention`` (pending users' data older than
``account.pending_retention``, shortly after becoming leader and then daily) and ``outbox``
(send due admin emails, every minute). A store error is logged and retried at the next run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from entrasync.config import Config
from entrasync.daemon.common import attempt, log, utcnow
from entrasync.daemon.metrics import Metrics
from entrasync.notify import flush_outbox
from entrasync.services.pending import expire_pending_data
from entrasync.store.db import Store

RETENTION_JOB = "retention"
OUTBOX_JOB = "outbox"
OUTBOX_EVERY = timedelta(minutes=1)
RETENTION_EVERY = timedelta(days=1)
RETENTION_FIRST_AFTER = timedelta(seconds=5)


class Chores:
    def __init__(self, store: Store, settings: Callable[[], Config], metrics: Metrics) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics

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
