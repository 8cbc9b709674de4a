"""The leader's other jobs: ``retention`` (pending users' data older than
``account.pending_retention``, shortly after becoming leader and then daily) and ``outbox``
(send due admin emails, every minute). A store error is logged and retried at the next run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from entrasync.config import Config
from entrasync.daemon.common import log, utcnow
from entrasync.daemon.metrics import Metrics
from entrasync.notify import flush_outbox
from entrasync.services.pending import expire_pending_data
from entrasync.store.db import Store
from entrasync.store.errors import STORE_ERRORS, describe
from entrasync.store.gate import Stopping

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
        try:
            result = expire_pending_data(self._store, utcnow(), retention, run_id=run_id)
        except Stopping:
            raise
        except STORE_ERRORS as exc:
            log.warning("pending retention failed; retried tomorrow", error=describe(exc))
            return
        self._metrics.retention_rows.inc(result.rows_deleted)
        log.info(
            "pending retention",
            run_id=run_id,
            rows_deleted=result.rows_deleted,
            users=len(result.users),
        )

    def flush(self) -> None:
        try:
            result = flush_outbox(self._store, self._settings().notify, utcnow())
        except Stopping:
            raise
        except STORE_ERRORS as exc:
            # Retried at the next run (every minute); SMTP trouble never gets here, it is
            # recorded on the rows, each retried with its own backoff.
            log.warning("outbox flush failed", error=describe(exc))
            return
        self._metrics.emails_sent.inc(result.sent)
        if result.sent or result.failed or result.released:
            log.info(
                "outbox flushed", sent=result.sent, failed=result.failed, released=result.released
            )
