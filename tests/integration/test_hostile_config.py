"""Broken and hostile configurations through the real CLI: every one ends in a documented
exit code with the key (or the file and line) named, no traceback, and no secret echoed.
Plus the catch-all: an unexpected exception is exit 70, one line, "this is a bug"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from testkit import PG_ENV, CliResult, write_config

from entrasync.errors import ExitCode

SECRET = "Sup3r-S3cret-42"
# Commands that read the config first; `check-config` also talks to the store (and Graph,
# which a config error never reaches).
COMMANDS = (["status"], ["db", "upgrade"], ["check-config"])


def assert_clean_failure(result: CliResult, code: int, *named: str) -> None:
    everything = result.err + result.out
    assert result.code == code, (result.code, everything)
    for text in named:
        assert text in everything, (text, everything)
    assert "Traceback" not in everything
    assert SECRET not in everything


def run_all(cli: Any, path: Path, code: int, *named: str) -> None:
    for args in COMMANDS:
        assert_clean_failure(cli("--config", str(path), *args), code, *named)


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[schedule]\ninterval = "99999999999w"\n', ["schedule.interval", "too long"]),
        ('[schedule]\ninterval = "0s"\n', ["schedule.interval", "out of range", "1s to 1d"]),
        ('[safety]\npurge_delay = "-5m"\n', ["safety.purge_delay"]),
        ('[sync]\nfull_resync_every = "30d"\n', ["sync.full_resync_every", "1h to 7d"]),
        (
            "[account]\npurchased_licenses = 99999999999999999999\n",
            ["account.purchased_licenses", "out of range"],
        ),
        ("[notify]\nsmtp_port = 99999999999999999999\n", ["notify.smtp_port"]),
        ("[safety]\nmax_purges = 99999999999999999999\n", ["safety.max_purges"]),
        (
            "[account]\npurchased_licenses = true\n",
            ["account.purchased_licenses: expected an integer, got a boolean (true)"],
        ),
        (
            '[account]\npurchased_licenses = "250"\n',
            ['account.purchased_licenses: expected an integer, got a string ("250")'],
        ),
        ('[groups]\nnested = "no"\n', ["groups.nested: expected a boolean"]),
        (
            '[groups]\ndnt = ["2b7e4f10-93c6-4d2a-8f5b-6a1c0e9d3b47"]\n'
            'delete = ["2B7E4F10-93C6-4D2A-8F5B-6A1C0E9D3B47"]\n',
            ["2B7E4F10-93C6-4D2A-8F5B-6A1C0E9D3B47", "groups.dnt[0]", "groups.delete[0]"],
        ),
        ('[daemon]\nlisten = "not-an-address"\n', ["daemon.listen", "not-an-address"]),
        (
            '[notify]\nsmtp_host = "mx"\nusername = "relay"\npassword_file = "/p"\n',
            ["notify.username", "starttls"],
        ),
    ],
)
def test_bad_values_exit_78_naming_the_key(
    cli: Any, tmp_path: Path, toml: str, named: list[str]
) -> None:
    path = tmp_path / "entrasync.toml"
    path.write_text(toml, encoding="utf-8")
    run_all(cli, path, ExitCode.CONFIG, str(path), *named)


def test_non_utf8_config_exits_78_naming_file_and_line(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "entrasync.toml"
    path.write_bytes(b"[account]\n# Caf\xe9 licences\npurchased_licenses = 3\n")
    run_all(cli, path, ExitCode.CONFIG, str(path), "not UTF-8", "line 2", "byte offset 15")


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg//admin:{SECRET}@127.0.0.1/db",
        f"postgresql+psycopg:/admin:{SECRET}@127.0.0.1/db",
        f"postgresql+psycopg:admin:{SECRET}@127.0.0.1/db",
        f"admin:{SECRET}@127.0.0.1/db",
        f"postgresql+psycopg://admin:{SECRET}@[::1/db",
        f"oracle://admin:{SECRET}@127.0.0.1/db",
    ],
)
def test_malformed_store_url_never_echoes_the_password(cli: Any, tmp_path: Path, url: str) -> None:
    path = write_config(tmp_path / "entrasync.toml", url)
    run_all(cli, path, ExitCode.CONFIG, "store.url", "***@")


def test_password_in_the_query_is_masked(cli: Any, tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "entrasync.toml", f"postgresql+psycopg://admin@127.0.0.1:1/db?password={SECRET}"
    )
    for args in COMMANDS:
        result = cli("--config", str(path), *args)
        assert_clean_failure(result, ExitCode.UNAVAILABLE, "password=***")


def test_bad_driver_option_is_a_config_error(cli: Any, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://admin:{SECRET}@127.0.0.1:1/db?connect_timeout=abc"
    path = write_config(tmp_path / "entrasync.toml", url)
    run_all(cli, path, ExitCode.CONFIG, "store.url", "connect_timeout", "admin:***@")


def test_unknown_driver_option_is_a_config_error(cli: Any, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://admin:{SECRET}@127.0.0.1:1/db?bogus=1"
    path = write_config(tmp_path / "entrasync.toml", url)
    run_all(cli, path, ExitCode.CONFIG, "store.url", "bogus")


def test_sqlite_store_under_a_regular_file(cli: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x", encoding="utf-8")
    path = write_config(tmp_path / "entrasync.toml", f"sqlite:///{blocker}/sub/store.db")
    for args in (["db", "upgrade"], ["sync", "--dry-run"], ["status"], ["check-config"]):
        result = cli("--config", str(path), *args)
        assert_clean_failure(result, ExitCode.CONFIG, "store.url", str(blocker))
    assert blocker.read_text(encoding="utf-8") == "x"


def test_sqlite_store_that_is_a_directory_or_not_a_database(cli: Any, tmp_path: Path) -> None:
    directory = tmp_path / "store.db"
    directory.mkdir()
    path = write_config(tmp_path / "a.toml", f"sqlite:///{directory}")
    assert_clean_failure(cli("--config", str(path), "db", "upgrade"), ExitCode.CONFIG, "store.url")
    text = tmp_path / "notes.txt"
    text.write_text("not a database, just some text\n" * 40, encoding="utf-8")
    path = write_config(tmp_path / "b.toml", f"sqlite:///{text}")
    result = cli("--config", str(path), "db", "upgrade")
    assert_clean_failure(result, ExitCode.CONFIG, "store.url", "not a database")


def test_unreachable_postgres_exits_69_with_the_password_masked(cli: Any, tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "entrasync.toml", f"postgresql+psycopg://admin:{SECRET}@127.0.0.1:1/db"
    )
    run_all(cli, path, ExitCode.UNAVAILABLE, "admin:***@127.0.0.1:1/db")


# -- the catch-all ---------------------------------------------------------------------------


def _explode(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError(f"could not frobnicate postgresql://admin:{SECRET}@db/x")


def test_an_unexpected_exception_is_exit_70_in_one_line(
    cli: Any, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENTRASYNC_DEBUG", raising=False)
    monkeypatch.setattr("entrasync.services.users.list_users", _explode)
    result = cli("--config", str(config_path), "users", "list")
    assert_clean_failure(result, ExitCode.INTERNAL, "internal error (this is a bug)")
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "RuntimeError" in lines[0]
    assert "entrasync.cli.users_cmd:" in lines[0]  # innermost entrasync frame, module:func:line
    assert "ENTRASYNC_DEBUG=1" in lines[0]
    assert "admin:***@db" in lines[0]


def test_debug_shows_the_traceback_scrubbed(
    cli: Any, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTRASYNC_DEBUG", "1")
    monkeypatch.setattr("entrasync.services.users.list_users", _explode)
    result = cli("--config", str(config_path), "users", "list")
    assert result.code == ExitCode.INTERNAL
    assert "Traceback" in result.err and "_explode" in result.err
    assert SECRET not in result.err
    assert result.err.rstrip().splitlines()[-1].startswith("entrasync: error: internal error")


def test_a_secret_from_the_environment_is_scrubbed_from_the_bug_report(
    cli: Any, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def leak(*_args: object, **_kwargs: object) -> None:
        raise ValueError(f"token request failed for secret {SECRET}")

    monkeypatch.setenv("ENTRASYNC_CLIENT_SECRET", SECRET)
    monkeypatch.setattr("entrasync.services.users.list_users", leak)
    result = cli("--config", str(config_path), "users", "list")
    assert_clean_failure(result, ExitCode.INTERNAL, "ValueError", "***")


def test_ctrl_c_exits_130_quietly(
    cli: Any, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("entrasync.services.users.list_users", interrupt)
    result = cli("--config", str(config_path), "users", "list")
    assert result.code == ExitCode.INTERRUPTED
    assert ExitCode.INTERRUPTED.value == 130
    assert "Traceback" not in result.err and "error" not in result.err


def test_store_left_alone_by_a_config_error(cli: Any, tmp_path: Path) -> None:
    """A config error stops before anything is opened or created."""
    store_file = tmp_path / "store" / "store.db"
    path = tmp_path / "entrasync.toml"
    path.write_text(
        f'[store]\nurl = "sqlite:///{store_file}"\n[schedule]\ninterval = "0s"\n',
        encoding="utf-8",
    )
    run_all(cli, path, ExitCode.CONFIG, "schedule.interval")
    assert not store_file.parent.exists()


@pytest.mark.postgres
def test_postgres_bad_option_on_a_real_server(cli: Any, tmp_path: Path) -> None:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    path = write_config(tmp_path / "entrasync.toml", f"{base}?connect_timeout=abc")
    run_all(cli, path, ExitCode.CONFIG, "store.url", "connect_timeout")
