"""The main thread of `entrasync run`: start, wait for signals, reload, stop.

* SIGTERM / SIGINT: no new transaction starts, the one in progress finishes (up to
  ``daemon.stop_timeout``), the lock is given up, exit 0. If the deadline passes while a
  transaction is still open (a slow Graph read inside the mirror transaction), the process
  exits anyway with 0: the database rolls that transaction back and the next cycle — here or
  on the standby — redoes it (every action is idempotent).
* SIGHUP: re-read and validate the config file; an invalid one is rejected (logged, the old
  one kept). ``store.url`` and ``daemon.listen`` changes need a restart and are kept as they
  were (logged); everything else applies from the next job on.
* ``run --upgrade`` applies the schema migrations (what ``db upgrade`` does) after the config
  is checked and before the daemon starts, in this same process: under systemd its failure is
  then the main process's exit status, which ``RestartPreventExitStatus=`` sees (69 while the
  store is down: restarted; 78 for a configuration error: left failed). A failing
  ``ExecStartPre=`` is restarted whatever its status.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from entrasync.bootstrap import open_store
from entrasync.config import Config, load_config
from entrasync.daemon.health import parse_listen
from entrasync.daemon.logs import configure_logging, get_logger, scrubber
from entrasync.daemon.service import Daemon
from entrasync.daemon.systemd import Notifier
from entrasync.errors import ConfigError, EntrasyncError
from entrasync.graph import settings_from_config
from entrasync.graph.credentials import CREDENTIALS_DIRECTORY_ENV, SECRET_ENV
from entrasync.notify import check_notify_config
from entrasync.store import urls

log = get_logger("entrasync.daemon")
MIN_TICK = 0.05


def known_secrets(config: Config, environ: Mapping[str, str]) -> list[str]:
    """Secret values the log scrubber must never let through."""
    found: list[str | None] = [environ.get(SECRET_ENV, "").strip()]
    files: list[Path | None] = [
        config.entra.client_secret_file,
        config.entra.certificate_passphrase_file,
        config.notify.password_file,
    ]
    directory = environ.get(CREDENTIALS_DIRECTORY_ENV)
    if directory:
        files.append(Path(directory) / "client-secret")
    for path in files:
        if path is None:
            continue
        try:
            found.append(path.read_text(encoding="utf-8", errors="replace").strip())
        except OSError:
            continue
    try:
        password = urls.parse(config.store.url).password
        found.append(str(password) if password else None)
    except ValueError:
        pass
    return [s for s in found if s]


def validate(config: Config, environ: Mapping[str, str]) -> None:
    """Checks beyond the file's schema that need no network: a credential is configured and
    readable, the listen address parses, the SMTP settings are safe."""
    parse_listen(config.daemon.listen)
    settings_from_config(config.entra, environ)
    check_notify_config(config.notify)


def upgrade_store(config: Config) -> None:
    """Apply the schema migrations; raises StoreUnavailable (69) while the store is down and
    ConfigError/SchemaOutOfDate (78) for a store.url or schema that no retry fixes."""
    store = open_store(config, check_schema=False)
    try:
        before, after = store.upgrade()
    finally:
        store.engine.dispose()
    if before == after:
        log.info("store schema is current", revision=after)
    else:
        log.info("store schema upgraded", before=before or "empty", revision=after)


@dataclass
class _Signals:
    """What the signal handlers (and role changes) told the main loop."""

    wake: threading.Event = field(default_factory=threading.Event)
    stop: str | None = None
    reload: bool = False
    changed: bool = False

    def on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop = signal.Signals(signum).name
        self.wake.set()

    def on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload = True
        self.wake.set()

    def on_change(self, _role: str) -> None:
        self.changed = True
        self.wake.set()

    @contextmanager
    def installed(self) -> Iterator[None]:
        handlers: dict[signal.Signals, Callable[[int, FrameType | None], None]] = {
            signal.SIGTERM: self.on_stop,
            signal.SIGINT: self.on_stop,
            signal.SIGHUP: self.on_hup,
        }
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_daemon(
    config_path: Path,
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    upgrade: bool = False,
) -> int:
    env = dict(os.environ if environ is None else environ)
    configure_logging(config.logging.level, config.logging.format)
    scrubber.set(known_secrets(config, env))
    signals = _Signals()
    with signals.installed():
        _prepare(config, env, upgrade=upgrade)
        if upgrade and signals.stop is not None:  # asked to stop during the migration
            log.info("stopped", signal=signals.stop)
            return 0
        daemon = Daemon(config, env, on_change=signals.on_change)
        daemon.start()
        _serve(daemon, config_path, env, signals)
        _stop(daemon)
        return 0


def _prepare(config: Config, env: Mapping[str, str], *, upgrade: bool) -> None:
    """Validate the config and, with `--upgrade`, migrate the store (either failure is the
    process's exit status)."""
    try:
        validate(config, env)
    except ConfigError as exc:
        log.error("configuration rejected", error=str(exc))
        raise
    if upgrade:
        try:
            upgrade_store(config)
        except EntrasyncError as exc:
            log.error("store upgrade failed", error=str(exc), exit_code=int(exc.exit_code))
            raise


def _serve(daemon: Daemon, config_path: Path, env: Mapping[str, str], signals: _Signals) -> None:
    """The main loop, until a stop signal: reloads, status lines, the watchdog."""
    notifier = Notifier(env)
    notifier.ready(daemon.status_line())
    # At most a second (signals, reloads, the watchdog), never a spin: WATCHDOG_USEC may
    # be tiny.
    tick = max(MIN_TICK, min(1.0, notifier.watchdog_interval or 1.0))
    while signals.stop is None:
        signals.wake.wait(tick)
        signals.wake.clear()
        if signals.reload:
            signals.reload = False
            _reload(daemon, config_path, env, notifier)
        if signals.changed:
            signals.changed = False
            notifier.status(daemon.status_line())
        if daemon.scheduler.running:
            notifier.watchdog_due()
    log.info("stopping", signal=signals.stop, role=daemon.role)
    notifier.stopping()


def _stop(daemon: Daemon) -> None:
    timeout = daemon.config.daemon.stop_timeout.total_seconds()
    if not daemon.stop(timeout):
        log.warning(
            "a transaction was still open at daemon.stop_timeout; exiting anyway "
            "(the database rolls it back, the next cycle redoes it)",
            stop_timeout_s=timeout,
        )
        logging.shutdown()
        os._exit(0)
    log.info("stopped")


def _reload(daemon: Daemon, path: Path, env: Mapping[str, str], notifier: Notifier) -> None:
    notifier.reloading()
    try:
        new = load_config(path)
        validate(new, env)
    except ConfigError as exc:
        log.error("config reload rejected; the running config is kept", error=str(exc))
        notifier.reloaded(daemon.status_line())
        return
    kept = daemon.apply_config(new)
    configure_logging(new.logging.level, new.logging.format)
    scrubber.set(known_secrets(new, env))
    if kept:
        log.warning("config reloaded; these settings need a restart and were kept", kept=kept)
    else:
        log.info("config reloaded", interval_s=new.schedule.interval.total_seconds())
    notifier.reloaded(daemon.status_line())
