"""`check-config` against the emulator with a generated config file."""

from __future__ import annotations

import io
from pathlib import Path

from graph_helpers import CLIENT_ID, SECRET, SmallTenant
from rich.console import Console

from entrasync.cli.check_config import check_config
from entrasync.graph import RetryPolicy
from entrasync.sim import EntraEmulator

FAST = RetryPolicy(max_attempts=2, max_total=1.0, backoff_base=0.01, backoff_max=0.02)


def write_config(tmp_path: Path, emu: EntraEmulator, dnt: list[str], delete: list[str]) -> Path:
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
