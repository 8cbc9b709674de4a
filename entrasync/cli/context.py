"""What every command shares: the config path, the loaded config and the store, made lazily
so that `--help` and `db upgrade` work on a store that is not ready yet."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import typer

from entrasync.config import Config, load_config, resolve_config_path
from entrasync.domain.audit import admin_actor
from entrasync.store.db import Store


@dataclass
class AppContext:
    config_path: Path | None
    _config: Config | None = field(default=None, init=False)
    _store: Store | None = field(default=None, init=False)
    _close_registered: bool = field(default=False, init=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(resolve_config_path(self.config_path))
        return self._config

    def store(self, *, check_schema: bool = True) -> Store:
        if self._store is None:
            self._store = Store(self.config.store.url, check_schema=check_schema)
        return self._store

    def close(self) -> None:
        """Release the store's connections (a PostgreSQL pool must not outlive the command)."""
        if self._store is not None:
            self._store.engine.dispose()
            self._store = None


def app_context(ctx: typer.Context) -> AppContext:
    root = ctx.find_root()
    obj = root.obj
    assert isinstance(obj, AppContext)
    if not obj._close_registered:
        root.call_on_close(obj.close)
        obj._close_registered = True
    return obj


def now() -> datetime:
    return datetime.now(UTC)


def actor_name(explicit: str | None) -> str:
    return admin_actor(explicit or getpass.getuser())
