"""Shared fixtures: a migrated store on SQLite and (when ENTRASYNC_TEST_DATABASE_URL is set)
PostgreSQL, a config file pointing at it, and an in-process CLI runner.

Each PostgreSQL test gets its own schema (via the connection's search_path), so tests never
see each other's rows and the shared `test` database is left clean.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from testkit import BACKENDS, PG_ENV, CliResult, write_config

from entrasync.cli import main
from entrasync.config import Config, load_config
from entrasync.store.db import Store

# Where MSAL's managed-identity client looks for a token endpoint: nothing here may send a
# request to the instance metadata address (169.254.169.254), so every test starts with the
# platform variables cleared and the VM protocol pointed at a closed loopback port; a test
# that wants a managed identity sets them to the emulator's.
_IDENTITY_ENV = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
)


@pytest.fixture(autouse=True)
def _no_instance_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")


def _pg_schema_url(base: str, schema: str) -> str:
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def make_store_url(tmp_path: Path) -> Iterator[Any]:
    """Factory: a fresh, empty database URL for the named backend."""
    cleanups: list[tuple[str, str]] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'store-{uuid.uuid4().hex[:6]}.db'}"
        base = os.environ.get(PG_ENV)
        if not base:
            pytest.skip(f"{PG_ENV} is not set")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        engine = create_engine(base)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        engine.dispose()
        cleanups.append((base, schema))
        return _pg_schema_url(base, schema)

    yield make
    for base, schema in cleanups:
        engine = create_engine(base)
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, make_store_url: Any) -> str:
    url: str = make_store_url(request.param)
    Store(url, check_schema=False).upgrade()
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.engine.dispose()


@pytest.fixture
def config_path(tmp_path: Path, store_url: str) -> Path:
    return write_config(
        tmp_path / "entrasync.toml", store_url, "[account]\npurchased_licenses = 10\n"
    )


@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(config_path)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `entrasync ARGS…` in-process; returns exit code and captured output."""
    monkeypatch.setenv("NO_COLOR", "1")

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
