"""What every command shares: the config path, the loaded config and the store, made lazily
so that `--help` and `db upgrade` work on a store that is not ready yet."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import typer

from entrasync.bootstrap import open_store
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
        """The store for a command that writes (it may create a missing SQLite file)."""
        return self._open(check_schema=check_schema, read_only=False)

    def reader(self) -> Store:
        """The store for a read command: opened read-only (DESIGN.md "Read-only commands"),
        so that it works on a read-only file or role, never creates a missing store, and a
        write by mistake fails instead of happening."""
        return self._open(check_schema=True, read_only=True)

    def _open(self, *, check_schema: bool, read_only: bool) -> Store:
        if self._store is None:
            self._store = open_store(self.config, read_only=read_only, check_schema=check_schema)
        assert self._store.read_only == read_only, "a command opens the store one way"
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
