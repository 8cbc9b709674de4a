"""Config errors name the key; the CLI turns them into exit 78."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from entrasync.config import CONFIG_ENV, load_config, parse_config, resolve_config_path
from entrasync.errors import ConfigError, ExitCode


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "entrasync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_values(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[schedule]\ninterval = "90s"\n[safety]\nmax_purges = 7\npurge_delay = "2d"\n'
            '[notify]\nfrom = "x@y.z"\n[merge]\nagent_merge = "none"\n',
        )
    )
    assert config.schedule.interval == timedelta(seconds=90)
    assert config.safety.purge_delay == timedelta(days=2)
    assert config.safety.max_purges.limit(1000) == 7
    assert config.safety.max_untracks.limit(1000) == 100  # default 10%
    assert config.notify.from_address == "x@y.z"
    assert config.merge.agent_merge == "none"
    assert config.account.plan == "paid"
    assert config.entra.ca_bundle is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[store]\nurll = 'x'\n", "store.urll: unknown key"),
        ("[stor]\nurl = 'x'\n", "stor: unknown key"),
        ("[safety]\npurge_delay = 'soon'\n", "safety.purge_delay: invalid duration 'soon'"),
        ("[schedule]\ninterval = 5\n", "schedule.interval: expected a duration"),
        ("[safety]\nmax_purges = 'lots'\n", "safety.max_purges: invalid threshold"),
        ("[account]\nplan = 'gold'\n", "account.plan"),
        ("[account]\npurchased_licenses = -1\n", "account.purchased_licenses"),
        ("[groups]\ndnt = ['not-a-guid']\n", "groups.dnt"),
        ("[merge]\nagent_merge = 'some'\n", "merge.agent_merge"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert named in str(caught.value)
    assert str(tmp_path / "entrasync.toml") in str(caught.value)
    assert caught.value.exit_code == ExitCode.CONFIG == 78


def test_every_bad_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"store": {"x": 1}, "schedule": {"interval": "soon"}})
    assert "store.x: unknown key" in str(caught.value)
    assert "schedule.interval" in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as caught:
        load_config(tmp_path / "nope.toml")
    assert "nope.toml" in str(caught.value)
    assert CONFIG_ENV in str(caught.value)


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[store\n"))


def test_config_path_resolution() -> None:
    assert resolve_config_path(Path("/a.toml"), {CONFIG_ENV: "/b.toml"}) == Path("/a.toml")
    assert resolve_config_path(None, {CONFIG_ENV: "/b.toml"}) == Path("/b.toml")
    assert resolve_config_path(None, {}) == Path("/etc/entrasync/entrasync.toml")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[store]\nurll = 'x'\n", "store.urll: unknown key"),
        ("[schedule]\ninterval = 'soon'\n", "schedule.interval: invalid duration"),
    ],
)
def test_cli_exits_78_naming_the_key(tmp_path: Path, cli: Any, text: str, named: str) -> None:
    result = cli("--config", str(write(tmp_path, text)), "status")
    assert result.code == 78
    assert named in result.err


def test_cli_missing_config_exits_78(tmp_path: Path, cli: Any) -> None:
    result = cli("--config", str(tmp_path / "missing.toml"), "users", "list")
    assert result.code == 78
    assert "missing.toml" in result.err
    assert "not found" in result.err


def test_cli_reads_config_from_environment(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(write(tmp_path, "[bogus]\n")))
    result = cli("status")
    assert result.code == 78
    assert "bogus: unknown key" in result.err
