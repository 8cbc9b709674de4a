"""Signing in without a stored secret (`entra.auth`), the way admins deploy in 2026: the CLI
against the emulator, on both stores. A managed identity (App Service / Container Apps
protocol) and workload identity federation (a projected token file, as on AKS); check-config
names the mode, a cycle applies as with a secret, and a token the tenant no longer trusts is
exit 77 with what to check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from syncworld import CLIENT_ID, World
from test_safety_stories import ingest, user
from testkit import report

from entrasync.errors import ExitCode

SUBJECT = "system:serviceaccount:entrasync:entrasync"
ISSUER = "https://oidc.example.test/aks-1/"


def _with_auth(world: World, auth: str, *, keep_ids: bool) -> None:
    text = world.config_path.read_text(encoding="utf-8")
    kept = [
        line
        for line in text.splitlines()
        if keep_ids or not line.startswith(("tenant_id =", "client_id ="))
    ]
    body = "\n".join(kept).replace("[entra]", f'[entra]\nauth = "{auth}"', 1)
    world.config_path.write_text(body + "\n", encoding="utf-8")


def _dnt_story(world: World, es: Any) -> None:
    ann = world.tenant.add_user("ann@contoso.com")
    ingest(es, world, report("CONTOSO\\ann", "PC", upn="ann@contoso.com", events=2))
    world.tenant.add_member(world.dnt, ann)
    result = es("sync")
    assert result.code == 0, result.out + result.err
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"
    (record,) = es("audit", "list", "--action", "user.untracked", "--json").json()
    assert "Do Not Track" in record["reason"]


def test_a_managed_identity_signs_in_without_any_stored_secret(
    world: World, es: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.emu.assign_managed_identity(system_assigned=True)
    for name, value in world.emu.managed_identity_env("app_service").items():
        monkeypatch.setenv(name, value)
    _with_auth(world, "managed_identity", keep_ids=False)
    checked = es("check-config")
    assert checked.code == 0, checked.out
    assert "managed identity: the system-assigned managed identity (no stored secret)" in (
        checked.out
    )
    _dnt_story(world, es)
    token_paths = {r.path.split("?")[0] for r in world.emu.log.records(path="token")}
    assert token_paths == {"/msi/token"}  # never the client-credentials endpoint


def test_workload_identity_follows_the_projected_token(
    world: World, es: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    issuer = world.emu.trust_issuer(ISSUER)
    world.emu.add_federated_credential(CLIENT_ID, ISSUER, SUBJECT)
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(issuer.token(SUBJECT), encoding="utf-8")
    # What the AKS webhook injects: the ids come from here when the config leaves them out.
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AZURE_TENANT_ID", world.emu.tenant_id)
    _with_auth(world, "workload_identity", keep_ids=False)
    checked = es("check-config")
    assert checked.code == 0, checked.out
    assert "workload identity: the federated token in $AZURE_FEDERATED_TOKEN_FILE" in checked.out
    _dnt_story(world, es)

    # The federated credential is removed in Entra (or the service account renamed): the next
    # token request is refused, with what to compare, and nothing is applied.
    world.emu.directory.federation.credentials.clear()
    world.emu.directory.revoke_all()
    refused = es("sync")
    assert refused.code == ExitCode.PERMISSION
    assert "AADSTS70021" in refused.err
    assert "system:serviceaccount:NAMESPACE:NAME" in refused.err
    assert token_file.read_text(encoding="utf-8") not in refused.err + refused.out


def test_a_mode_without_its_material_is_exit_78(world: World, es: Any) -> None:
    _with_auth(world, "workload_identity", keep_ids=True)
    result = es("sync")
    assert result.code == ExitCode.CONFIG
    assert "AZURE_FEDERATED_TOKEN_FILE is not set" in result.err
