"""No secret in error messages; every command's --help; usage errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from testkit import write_config

from entrasync.errors import ConfigError, ExitCode, StoreUnavailable
from entrasync.store.db import Store
from entrasync.store.urls import safe_url as _safe_url

SECRET = "Sup3r-S3cret"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (f"postgresql+psycopg://admin:{SECRET}@127.0.0.1:1/db", ExitCode.UNAVAILABLE),
        (f"postgresql+psycopg://admin:{SECRET}@host.invalid/db", ExitCode.UNAVAILABLE),
        (f"postgresql+psycopg://admin:{SECRET}@127.0.0.1:notaport/db", ExitCode.CONFIG),
        (f"postgresql+nodriver://admin:{SECRET}@127.0.0.1/db", ExitCode.CONFIG),
        (f"postgresql+psycopg://admin:{SECRET}@127.0.0.1:1/db?sslmode=bogus", ExitCode.UNAVAILABLE),
    ],
)
def test_store_url_password_never_appears(cli: Any, tmp_path: Path, url: str, code: int) -> None:
    config = write_config(tmp_path / "c.toml", url)
    for args in (["status"], ["db", "upgrade"], ["users", "list"], ["audit", "verify"]):
        result = cli("--config", str(config), *args)
        assert result.code == code, (args, result.err)
        assert SECRET not in result.err + result.out
        assert "entrasync: error: " in result.err
        assert "***" in result.err


def test_password_in_a_driver_message_is_hidden() -> None:
    url = f"postgresql+psycopg://admin:{SECRET}@127.0.0.1:1/db"
    with pytest.raises(StoreUnavailable) as caught:
        Store(url)
    assert SECRET not in str(caught.value)
    assert "admin:***@127.0.0.1:1/db" in str(caught.value)


def test_encoded_password_is_hidden() -> None:
    url = "postgresql+psycopg://admin:p%40ss%3Aword@127.0.0.1:bad/db"
    assert "p%40ss" not in _safe_url(url)
    with pytest.raises(ConfigError) as caught:
        Store(url)
    assert "p%40ss" not in str(caught.value) and "p@ss" not in str(caught.value)


def test_safe_url_keeps_what_helps() -> None:
    assert _safe_url(f"postgresql+psycopg://u:{SECRET}@db:5432/x") == (
        "postgresql+psycopg://u:***@db:5432/x"
    )
    assert _safe_url("sqlite:////var/lib/entrasync/store.db") == (
        "sqlite:////var/lib/entrasync/store.db"
    )


HELP = [
    [],
    ["users"],
    ["users", "show"],
    ["users", "list"],
    ["users", "untrack"],
    ["users", "track"],
    ["users", "purge"],
    ["users", "merge"],
    ["audit"],
    ["audit", "list"],
    ["audit", "show"],
    ["audit", "export"],
    ["audit", "verify"],
    ["ingest"],
    ["status"],
    ["db"],
    ["db", "upgrade"],
]


@pytest.mark.parametrize("args", HELP, ids=lambda a: " ".join(a) or "entrasync")
def test_help(cli: Any, args: list[str]) -> None:
    result = cli(*args, "--help")
    assert result.code == 0, result.err
    assert "Usage: entrasync" in result.out
    assert result.err == ""


def test_help_needs_no_config(cli: Any, tmp_path: Path) -> None:
    result = cli("--config", str(tmp_path / "missing.toml"), "users", "purge", "--help")
    assert result.code == 0
    assert "--yes" in result.out and "--dry-run" in result.out


def test_unknown_command_and_option_are_usage_errors(cli: Any) -> None:
    assert cli("frobnicate").code == ExitCode.USAGE
    assert cli("status", "--bogus").code == ExitCode.USAGE
    assert cli("users", "merge", "only-one").code == ExitCode.USAGE


def _all_commands() -> list[list[str]]:
    import typer.main

    from entrasync.cli import app

    found: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        found.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_every_registered_command_has_working_help(cli: Any) -> None:
    commands = _all_commands()
    assert ["users", "merge"] in commands and ["audit", "verify"] in commands
    for args in commands:
        result = cli(*args, "--help")
        assert result.code == 0, (args, result.err)
        assert "Usage: entrasync" in result.out, args
