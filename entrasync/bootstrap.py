"""The composition root: how the CLI, the daemon, the demo and the bench get a store and a
Graph client from a config. Nothing else constructs either."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from entrasync.config import Config
from entrasync.graph import GraphClient, MsalCaches, settings_from_config
from entrasync.graph.settings import RetryPolicy
from entrasync.store.db import Store

GraphFactory = Callable[[], GraphClient]


def open_store(config: Config, *, read_only: bool = False, check_schema: bool = True) -> Store:
    """The store `config` names: read-only for the read commands (DESIGN.md)."""
    return Store(config.store.url, check_schema=check_schema, read_only=read_only)


def graph_factory(
    config: Config,
    environ: Mapping[str, str],
    *,
    caches: MsalCaches | None = None,
    cancel: threading.Event | None = None,
    retry: RetryPolicy | None = None,
) -> GraphFactory:
    """A factory of Graph clients for `config` (one per cycle). The credential is resolved
    now, so a missing secret fails before any cycle starts. `caches` keeps a token across
    clients (the daemon); `cancel` stops a client's reads promptly (Cancelled)."""
    settings = settings_from_config(config.entra, environ, retry=retry)
    return lambda: GraphClient(settings, caches, cancel=cancel)
