"""`check-config` against the emulator with a generated config file."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from graph_helpers import CLIENT_ID, SECRET, SmallTenant
from rich.console import Console
from testkit import dump_store

from entrasync.cli.check_config import check_config
from entrasync.graph import RetryPolicy
from entrasync.sim import EntraEmulator
from entrasync.store.db import Store

FAST = RetryPolicy(max_attempts=2, max_total=1.0, backoff_base=0.01, backoff_max=0.02)


def write_config(
    tmp_path: Path,
    emu: EntraEmulator,
    dnt: list[str],
    delete: list[str],
    *,
    store_url: str | None = None,
    extra: str = "",
) -> Path:
    secret = tmp_path / "client-secret"
    secret.write_text(SECRET + "\n")
    ca_file = tmp_path / "ca.pem"  # a copy: it outlives the emulator in test_unreachable
    ca_file.write_bytes(emu.ca_file.read_bytes())
    path = tmp_path / "entrasync.toml"
    path.write_text(
        f"""
[entra]
tenant_id = "{emu.tenant_id}"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
authority_host = "{emu.authority_host}"
graph_url = "{emu.graph_url}"
ca_bundle = "{ca_file}"

[groups]
dnt = {dnt!r}
delete = {delete!r}

[store]
url = "{store_url or f"sqlite:///{tmp_path / 'absent' / 'store.db'}"}"
{extra}
""".replace("'", '"')
    )
    return path


def run(path: Path | None, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = check_config(
        path,
        console=Console(file=out, width=100, no_color=True, soft_wrap=True),
        environ=env or {},
        retry=FAST,
    )
    return code, out.getvalue()


def test_all_good(tmp_path: Path, emulator: EntraEmulator, small: SmallTenant) -> None:
    code, out = run(write_config(tmp_path, emulator, [small.dnt], [small.delete]))
    assert code == 0, out
    assert f"✓ DNT group {small.dnt}: Do Not Track, 2 direct members" in out
    assert f"✓ Delete group {small.delete}: Delete, 1 direct members" in out
    assert "✓ token obtained" in out
    assert f"client secret from {tmp_path / 'client-secret'}" in out
    assert SECRET not in out
    assert "✗" not in out


def test_missing_permission_tells_what_to_grant(
    tmp_path: Path, emulator: EntraEmulator, small: SmallTenant
) -> None:
    emulator.register_app(CLIENT_ID, secret=SECRET, permissions={"User.Read.All"})
    code, out = run(write_config(tmp_path, emulator, [small.dnt], []))
    assert code == 77
    line = next(x for x in out.splitlines() if x.startswith("✗"))
    assert "GroupMember.Read.All" in line and "admin consent" in line
    assert "✓ users can be read" in out


def test_unknown_group_is_a_config_error(
    tmp_path: Path, emulator: EntraEmulator, small: SmallTenant
) -> None:
    missing = "0f0f0f0f-0000-4000-8000-000000000000"
    code, out = run(write_config(tmp_path, emulator, [small.dnt, missing], []))
    assert code == 78
    assert f"✗ DNT group {missing}: not found" in out
    assert "groups.dnt" in out
    assert f"✓ DNT group {small.dnt}" in out  # the other group is still checked


def test_wrong_secret_from_environment(tmp_path: Path, emulator: EntraEmulator) -> None:
    path = write_config(tmp_path, emulator, [], [])
    code, out = run(path, {"ENTRASYNC_CLIENT_SECRET": "not-the-secret-123"})
    assert code == 77
    assert "ENTRASYNC_CLIENT_SECRET" in out
    assert "not-the-secret-123" not in out


def test_bad_config_file(tmp_path: Path) -> None:
    path = tmp_path / "entrasync.toml"
    path.write_text("[entra]\ntenant = 1\n")
    code, out = run(path)
    assert code == 78
    assert out.startswith("✗") and "entra.tenant" in out


def test_missing_credential(tmp_path: Path, emulator: EntraEmulator) -> None:
    path = write_config(tmp_path, emulator, [], [])
    (tmp_path / "client-secret").unlink()
    code, out = run(path)
    assert code == 78
    assert "entra.client_secret_file" in out and "no such file" in out


def test_unreachable(tmp_path: Path, emulator: EntraEmulator) -> None:
    path = write_config(tmp_path, emulator, [], [])
    emulator.stop()
    code, out = run(path)
    assert code == 69
    assert "✗ token: cannot reach" in out


# -- what `run` checks, check-config checks too -----------------------------------------------

DB_SECRET = "Db-S3cret-77"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('[daemon]\nlisten = "not-an-address"\n', "daemon.listen"),
        ('[notify]\nusername = "relay"\npassword_file = "/p"\n', "notify.starttls"),
    ],
)
def test_rules_run_applies_fail_check_config(
    tmp_path: Path, emulator: EntraEmulator, small: SmallTenant, extra: str, named: str
) -> None:
    code, out = run(write_config(tmp_path, emulator, [small.dnt], [], extra=extra))
    assert code == 78, out
    assert out.startswith("✗") and named in out


def test_current_store(tmp_path: Path, emulator: EntraEmulator, store_url: str) -> None:
    before = dump_store(store_url)
    code, out = run(write_config(tmp_path, emulator, [], [], store_url=store_url))
    assert code == 0, out
    assert "is reachable, schema at revision" in out and "(current)" in out
    assert dump_store(store_url) == before  # nothing written


def test_absent_sqlite_store_is_a_warning_and_is_not_created(
    tmp_path: Path, emulator: EntraEmulator
) -> None:
    code, out = run(write_config(tmp_path, emulator, [], []))
    assert code == 0, out
    line = next(x for x in out.splitlines() if "store sqlite:" in x)
    assert line.startswith("!") and "entrasync db upgrade" in line
    assert not (tmp_path / "absent").exists()


def test_empty_store_is_a_warning(
    tmp_path: Path, emulator: EntraEmulator, make_store_url: Any
) -> None:
    for backend in ("sqlite", "postgresql"):
        url = make_store_url(backend)
        if backend == "sqlite":
            Path(url.removeprefix("sqlite:///")).touch()
        code, out = run(write_config(tmp_path, emulator, [], [], store_url=url))
        assert code == 0, out
        assert "! store" in out and "is empty" in out and "entrasync db upgrade" in out


def test_schema_behind_the_code_fails(
    tmp_path: Path, emulator: EntraEmulator, make_store_url: Any
) -> None:
    url = make_store_url("sqlite")
    store = Store(url, check_schema=False)
    command.upgrade(store._alembic_config(), "0001")
    store.engine.dispose()
    code, out = run(write_config(tmp_path, emulator, [], [], store_url=url))
    assert code == 78, out
    line = next(x for x in out.splitlines() if x.startswith("✗"))
    assert "revision 0001" in line and "entrasync db upgrade" in line
    assert "✓ token obtained" in out  # the other checks still ran


def test_unreachable_store_exits_69_with_the_password_masked(
    tmp_path: Path, emulator: EntraEmulator
) -> None:
    url = f"postgresql+psycopg://admin:{DB_SECRET}@127.0.0.1:1/db"
    code, out = run(write_config(tmp_path, emulator, [], [], store_url=url))
    assert code == 69, out
    assert "✗ store postgresql+psycopg://admin:***@127.0.0.1:1/db" in out
    assert DB_SECRET not in out
    assert "✓ token obtained" in out


def test_store_under_a_regular_file_is_a_config_failure(
    tmp_path: Path, emulator: EntraEmulator
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    url = f"sqlite:///{blocker}/store.db"
    code, out = run(write_config(tmp_path, emulator, [], [], store_url=url))
    assert code == 78, out
    assert f"✗ store.url: {url}: {blocker} is not a directory" in out


def test_unreadable_smtp_password_file(tmp_path: Path, emulator: EntraEmulator) -> None:
    extra = (
        '[notify]\nsmtp_host = "mx"\nusername = "relay"\nstarttls = true\n'
        f'password_file = "{tmp_path / "missing"}"\n'
    )
    code, out = run(write_config(tmp_path, emulator, [], [], extra=extra))
    assert code == 78, out
    assert "✗ notify.password_file" in out
