"""Config errors name the key; the CLI turns them into exit 78."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from entrasync.config import CONFIG_ENV, load_config, parse_config, resolve_config_path
from entrasync.errors import ConfigError, ExitCode
from entrasync.store import urls


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
    assert caught.value.exit_code == ExitCode.CONFIG
    assert ExitCode.CONFIG.value == 78


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


# -- strict types: the file says what it means -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            "[account]\npurchased_licenses = true\n",
            "account.purchased_licenses: expected an integer, got a boolean (true)",
        ),
        (
            '[account]\npurchased_licenses = "250"\n',
            'account.purchased_licenses: expected an integer, got a string ("250")',
        ),
        ("[account]\npurchased_licenses = 2.0\n", "expected an integer, got a number (2.0)"),
        ('[groups]\nnested = "no"\n', "groups.nested: expected a boolean (true or false), got a"),
        ("[account]\npending_mode = 1\n", "account.pending_mode: expected a boolean"),
        ("[notify]\nsmtp_port = true\n", "notify.smtp_port: expected an integer"),
        ('[daemon]\nfailure_alert_after = "3"\n', "daemon.failure_alert_after: expected an"),
        ("[entra]\ntenant_id = 5\n", "entra.tenant_id: expected a string, got an integer (5)"),
        ('[notify]\nadmins = "a@b.c"\n', "notify.admins: expected a list"),
        ("[notify]\nadmins = [1]\n", "notify.admins[0]: expected a string"),
        ("[merge]\ndomain_map = {a = 1}\n", "merge.domain_map.a: expected a string"),
        ("store = 5\n", "store: expected a table, got an integer (5)"),
        ("[safety]\nmax_purges = true\n", "safety.max_purges: expected a count"),
        ("[safety]\nmax_purges = 1.5\n", "safety.max_purges: expected a count"),
        ("[safety]\nexport_dir = 5\n", "safety.export_dir: expected a path"),
        ('[safety]\nexport_dir = "/tmp/a\\u0000b"\n', "safety.export_dir: the path contains a NUL"),
        ("[account]\nplan = 1\n", 'account.plan: expected one of "paid" or "free"'),
        ("[schedule]\ninterval = 1979-05-27\n", "got a date/time (1979-05-27)"),
    ],
)
def test_types_are_strict_and_say_what_was_expected(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert named in str(caught.value)


# -- bounds: every integer and duration key has them ----------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[schedule]\ninterval = "99999999999w"\n', "schedule.interval: invalid duration"),
        ('[schedule]\ninterval = "0s"\n', "schedule.interval: 0s is out of range: expected 1s"),
        ('[schedule]\ninterval = "0.5s"\n', "schedule.interval: 0.5s is out of range"),
        ('[schedule]\ninterval = "2d"\n', "schedule.interval: 2d is out of range"),
        ('[entra]\ntimeout = "0s"\n', "entra.timeout: 0s is out of range"),
        ('[daemon]\nmax_backoff = "30d"\n', "daemon.max_backoff"),
        ('[daemon]\nstop_timeout = "1h"\n', "daemon.stop_timeout"),
        ('[account]\npending_retention = "1h"\n', "account.pending_retention"),
        ('[safety]\npurge_delay = "999999999d"\n', "safety.purge_delay"),
        ('[sync]\nfull_resync_every = "0s"\n', "sync.full_resync_every"),
        ('[sync]\nfull_resync_every = "8d"\n', "sync.full_resync_every: 8d is out of range"),
        (
            "[account]\npurchased_licenses = 99999999999999999999\n",
            "account.purchased_licenses: 99999999999999999999 is out of range: expected 0 to",
        ),
        ("[account]\npurchased_licenses = -1\n", "account.purchased_licenses: -1 is out of range"),
        ("[notify]\nsmtp_port = 99999999999999999999\n", "notify.smtp_port"),
        ("[notify]\nsmtp_port = 0\n", "notify.smtp_port: 0 is out of range: expected 1 to 65535"),
        ("[daemon]\nfailure_alert_after = 0\n", "daemon.failure_alert_after"),
        ("[daemon]\nfailure_alert_after = 10_000_000_000\n", "daemon.failure_alert_after"),
        ("[safety]\nmax_purges = 99999999999999999999\n", "safety.max_purges: invalid threshold"),
        ('[safety]\nmax_merges = "nan%"\n', "safety.max_merges: invalid threshold"),
        ('[safety]\nmax_merges = "1e999"\n', "safety.max_merges: invalid threshold"),
    ],
)
def test_values_out_of_bounds_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert named in str(caught.value)


def test_zero_purge_delay_and_zero_stop_timeout_are_allowed(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, '[safety]\npurge_delay = "0s"\n[daemon]\nstop_timeout = "0s"\n')
    )
    assert config.safety.purge_delay == timedelta(0)
    assert config.daemon.stop_timeout == timedelta(0)


def test_bounds_are_inclusive(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[schedule]\ninterval = "1s"\n[sync]\nfull_resync_every = "7d"\n'
            "[account]\npurchased_licenses = 10_000_000\n[notify]\nsmtp_port = 65535\n",
        )
    )
    assert config.schedule.interval == timedelta(seconds=1)
    assert config.sync.full_resync_every == timedelta(days=7)
    assert config.account.purchased_licenses == 10_000_000


# -- groups: each group once -----------------------------------------------------------------

G1 = "2b7e4f10-93c6-4d2a-8f5b-6a1c0e9d3b47"
G2 = "e4a19c3d-70f2-4b8e-a6d5-1f3b2c9e8a60"


@pytest.mark.parametrize(
    ("groups", "places"),
    [
        (f'dnt = ["{G1}", "{G2}", "{G1}"]', ["groups.dnt[0]", "groups.dnt[2]"]),
        (
            f'dnt = ["{G1}"]\ndelete = ["{G2}", "{G1.upper()}"]',
            ["groups.dnt[0]", "groups.delete[1]"],
        ),
        (f'delete = ["{G2}", "{G2}"]', ["groups.delete[0]", "groups.delete[1]"]),
    ],
)
def test_a_group_listed_twice_is_refused(tmp_path: Path, groups: str, places: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"[groups]\n{groups}\n"))
    message = str(caught.value)
    assert "listed twice" in message
    assert all(place in message for place in places), message
    assert G1 in message.lower() or G2 in message.lower()


# -- rules `run` applies, checked on load -----------------------------------------------------


@pytest.mark.parametrize(
    "listen", ["not-an-address", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:http", "a b:80", ":²"]
)
def test_bad_listen_address(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError, match=r"daemon\.listen"):
        load_config(write(tmp_path, f'[daemon]\nlisten = "{listen}"\n'))


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9464", ("0.0.0.0", 9464)),  # noqa: S104
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_listen_address(tmp_path: Path, listen: str, address: tuple[str, int]) -> None:
    config = load_config(write(tmp_path, f'[daemon]\nlisten = "{listen}"\n'))
    assert config.daemon.listen_address == address


def test_smtp_login_needs_starttls_and_a_password_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"notify.username: .*starttls"):
        load_config(write(tmp_path, '[notify]\nusername = "relay"\npassword_file = "/p"\n'))
    with pytest.raises(ConfigError, match=r"notify.username: .*password_file"):
        load_config(write(tmp_path, '[notify]\nusername = "relay"\nstarttls = true\n'))
    config = load_config(
        write(tmp_path, '[notify]\nusername = "relay"\nstarttls = true\npassword_file = "/p"\n')
    )
    assert config.notify.password_file == Path("/p")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg//admin:Sup3r-S3cret@db/x",
        "postgresql+psycopg:/admin:Sup3r-S3cret@db/x",
        "postgresql+psycopg:admin:Sup3r-S3cret@db/x",
        "admin:Sup3r-S3cret@db/x",
        "mysql://admin:Sup3r-S3cret@db/x",
        "postgresql+psycopg2://admin:Sup3r-S3cret@db/x",
        "postgresql+psycopg://admin:Sup3r-S3cret@db:port/x",
        "",
    ],
)
def test_store_url_that_is_no_database_url(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f'[store]\nurl = "{url}"\n'))
    message = str(caught.value)
    assert "store.url: " in message
    assert "Sup3r-S3cret" not in message
    assert ("***" in message) == bool(url)


@pytest.mark.parametrize(
    ("url", "driver"),
    [("postgresql+psycopg2://u@db/x", "psycopg2"), ("sqlite+pysqlcipher:////x.db", "pysqlcipher")],
)
def test_store_url_names_a_driver_entrasync_does_not_use(
    tmp_path: Path, url: str, driver: str
) -> None:
    """The store needs psycopg 3 (pipelines, COPY, its dumpers): another driver is a
    configuration error naming it, not an AttributeError at the first connection."""
    with pytest.raises(ConfigError, match=rf"store\.url: .*unsupported driver '{driver}'"):
        load_config(write(tmp_path, f'[store]\nurl = "{url}"\n'))
    for plain in ("postgresql://u@db/x", "sqlite:////x.db", "sqlite+pysqlite:////x.db"):
        assert load_config(write(tmp_path, f'[store]\nurl = "{plain}"\n')).store.url == plain


def test_a_sqlite_without_json_functions_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Id lists reach SQLite through `json_each` (store/id_lists.py): a Python whose SQLite
    lacks JSON1 is told so when the config is read (exit 78), not at the first purge."""
    assert urls.sqlite_has_json()  # this machine's SQLite has it
    monkeypatch.setattr(urls, "sqlite_has_json", lambda: False)
    with pytest.raises(ConfigError, match=r"store\.url: .*no JSON functions") as caught:
        load_config(write(tmp_path, '[store]\nurl = "sqlite:////x.db"\n'))
    assert caught.value.exit_code == ExitCode.CONFIG
    postgres = 'url = "postgresql+psycopg://u@db/x"'
    assert load_config(write(tmp_path, f"[store]\n{postgres}\n")).store.url.startswith("postgresql")


@pytest.mark.parametrize("endpoint", ["login.microsoftonline.com", "ftp://x", "https://"])
def test_endpoints_are_https_urls(tmp_path: Path, endpoint: str) -> None:
    with pytest.raises(ConfigError, match=r"entra\.authority_host"):
        load_config(write(tmp_path, f'[entra]\nauthority_host = "{endpoint}"\n'))


# -- the file itself ------------------------------------------------------------------------


def test_non_utf8_file_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "entrasync.toml"
    path.write_bytes(b'[store]\nurl = "sqlite:////x.db"\n# caf\xe9\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert "not UTF-8" in message and "line 3, column 6" in message and "0xe9" in message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "entrasync.toml"
    path.write_bytes(b"\xef\xbb\xbf[account]\npurchased_licenses = 7\n")
    assert load_config(path).account.purchased_licenses == 7


def test_a_directory_or_endless_file_is_not_read_forever(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="larger than"):
        load_config(Path("/dev/zero"))


def test_deeply_nested_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n"))


def test_group_id_with_a_trailing_newline_is_not_a_guid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"groups\.dnt"):
        load_config(write(tmp_path, f'[groups]\ndnt = ["{G1}\\n"]\n'))
