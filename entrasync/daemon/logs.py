"""Logging, configured in one place: structlog for the daemon's own events, and the standard
library's records (the sync cycle's per-action lines, the mailer, the Graph retry policy)
rendered by the same processors, so every line has the same shape.

* JSON lines on stdout when stdout is not a terminal (systemd's journal, a container's log),
  a readable console renderer on a terminal; ``logging.format`` forces either.
* ``logging.level`` sets the threshold; chatty libraries stay at WARNING.
* Secrets never reach the output: messages are built without them in the first place
  (errors name the file or variable a secret came from, never its value), and as a second
  line of defence every rendered line is scrubbed of the secret values the daemon knows
  (client secret, SMTP password, database password).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR
_QUIET = ("urllib3", "httpx", "httpcore", "msal", "kiota_http", "asyncio", "alembic")
# APScheduler warns when a poked job is still running ("skipped: maximum number of running
# instances"), which is how the heartbeat is meant to work; our jobs log their own errors.
_QUIETER = ("apscheduler",)


class SecretScrubber:
    """Replaces known secret values in rendered lines with ``***``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def set(self, secrets: Iterable[str | None]) -> None:
        # Longest first so that a secret containing another is replaced whole; very short
        # values would mangle ordinary words and are not secrets worth the name.
        found = {s for s in secrets if s and len(s) >= 6}
        with self._lock:
            self._secrets = tuple(sorted(found, key=len, reverse=True))

    def add(self, secret: str | None) -> None:
        """Learn one more value (a secret file re-read after a rotation)."""
        with self._lock:
            current = self._secrets
        if secret and secret not in current:
            self.set([*current, secret])

    def __call__(self, _logger: WrappedLogger, _name: str, line: Any) -> Any:
        if isinstance(line, str):
            for secret in self._secrets:
                line = line.replace(secret, "***")
        return line


scrubber = SecretScrubber()


def _drop_color_message(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)
    return event


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library through one handler on ``stream`` (stdout)."""
    out = stream or sys.stdout
    json_lines = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(out)
    handler.setFormatter(_formatter(shared, json_lines=json_lines, colors=out.isatty()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    _quiet_libraries(root.level)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *(p for p in shared if not isinstance(p, structlog.stdlib.ExtraAdder)),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _formatter(
    shared: list[Processor], *, json_lines: bool, colors: bool
) -> structlog.stdlib.ProcessorFormatter:
    """JSON lines (exceptions formatted into the line) or the console renderer; scrubbed."""
    renderer: Processor
    finish: list[Processor] = []
    if json_lines:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        finish = [structlog.processors.format_exc_info, structlog.processors.UnicodeDecoder()]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            *finish,
            renderer,
            scrubber,
        ],
    )


def _quiet_libraries(level: int) -> None:
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))
    for name in _QUIETER:
        logging.getLogger(name).setLevel(max(logging.ERROR, level))


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
