"""Admin notifications: the outbox, delivered over SMTP (see `entrasync.notify.smtp`)."""

from entrasync.notify.smtp import FlushResult, backoff, check_notify_config, flush_outbox

__all__ = ["FlushResult", "backoff", "check_notify_config", "flush_outbox"]
