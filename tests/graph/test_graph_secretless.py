"""Signing in without a stored secret, through the real MSAL code against the emulator:
a managed identity (App Service and VM protocols, system- and user-assigned) and workload
identity federation (a projected token file, read again at every token request)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from graph_helpers import CLIENT_ID, make_settings

from entrasync.config import EntraAuth, EntraConfig
from entrasync.errors import ConfigError, ExitCode, GraphPermissionDenied
from entrasync.graph import GraphClient
from entrasync.graph.credentials import resolve_credential, settings_from_config
from entrasync.graph.settings import FederatedToken, ManagedIdentity
from entrasync.sim import EntraEmulator

SUBJECT = "system:serviceaccount:entrasync:entrasync"
ISSUER = "https://oidc.example.test/cluster-1/"


def _paths(emulator: EntraEmulator) -> list[str]:
    return [record.path.split("?")[0] for record in emulator.log.records()]


def _use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("protocol", ["app_service", "imds"])
def test_system_assigned_identity_reads_graph(
    emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    emulator.assign_managed_identity(system_assigned=True)
    _use(monkeypatch, emulator.managed_identity_env(protocol))
    settings = make_settings(emulator, client_id="", credential=ManagedIdentity(None))
    with GraphClient(settings) as client:
        client.check_token()
        client.check_user_read()
        client.check_token()  # from MSAL's cache
    paths = _paths(emulator)
    endpoint = "/msi/token" if protocol == "app_service" else "/metadata/identity/oauth2/token"
    assert paths.count(endpoint) == 1
    assert not [p for p in paths if p.endswith("/oauth2/v2.0/token")]
    assert "/v1.0/users" in paths


def test_user_assigned_identity_is_chosen_by_client_id(
    emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = emulator.assign_managed_identity(permissions={"User.Read.All"})
    _use(monkeypatch, emulator.managed_identity_env("imds"))
    with GraphClient(make_settings(emulator, credential=ManagedIdentity(mine))) as client:
        client.check_user_read()
    other = make_settings(emulator, credential=ManagedIdentity("not-assigned-here"))
    with GraphClient(other) as client, pytest.raises(GraphPermissionDenied) as caught:
        client.check_token()
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.PERMISSION
    assert "user-assigned managed identity not-assigned-here" in message
    assert "Identity not found" in message
    assert "entra.managed_identity_client_id" in message


def test_no_assigned_identity_and_a_wrong_identity_header_are_named(
    emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, emulator.managed_identity_env("imds"))
    settings = make_settings(emulator, credential=ManagedIdentity(None))
    with GraphClient(settings) as client, pytest.raises(GraphPermissionDenied) as caught:
        client.check_token()
    assert "system-assigned managed identity" in str(caught.value)
    assert "Identity not found" in str(caught.value)
    emulator.assign_managed_identity(system_assigned=True)
    _use(monkeypatch, emulator.managed_identity_env("app_service"))
    monkeypatch.setenv("IDENTITY_HEADER", "stale-header")
    with GraphClient(settings) as client, pytest.raises(GraphPermissionDenied) as caught:
        client.check_token()
    assert "Unauthorized request" in str(caught.value)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return tmp_path / "azure-identity-token"


def _federated(emulator: EntraEmulator, token_file: Path) -> GraphClient:
    return GraphClient(
        make_settings(emulator, credential=FederatedToken(token_file, "AZURE_FEDERATED_TOKEN_FILE"))
    )


def test_workload_identity_reads_the_token_file_at_every_token_request(
    emulator: EntraEmulator, token_file: Path
) -> None:
    issuer = emulator.trust_issuer(ISSUER)
    emulator.add_federated_credential(CLIENT_ID, ISSUER, SUBJECT)
    token_file.write_text(issuer.token(SUBJECT), encoding="utf-8")
    with _federated(emulator, token_file) as client:
        client.check_user_read()
        # The platform rotates the file; a token for another service account is refused,
        # which shows the file is read again (not kept from the first request).
        token_file.write_text(issuer.token("system:serviceaccount:other:sa"), encoding="utf-8")
        emulator.directory.revoke_all()  # Graph answers 401; the client asks for a new token
        with pytest.raises(GraphPermissionDenied) as caught:
            client.check_user_read()
        message = str(caught.value)
        assert "AADSTS70021" in message
        assert "system:serviceaccount:NAMESPACE:NAME" in message  # what to check
        token_file.write_text(issuer.token(SUBJECT), encoding="utf-8")
        client.check_user_read()
    assert len(emulator.log.records(path="/oauth2/v2.0/token$", status=200)) == 2


@pytest.mark.parametrize(
    ("audience", "lifetime", "code"),
    [
        ("api://SomethingElse", 3600.0, "AADSTS70021"),
        ("api://AzureADTokenExchange", -60.0, "AADSTS700024"),
    ],
)
def test_a_wrong_or_expired_federated_token_is_refused(
    emulator: EntraEmulator, token_file: Path, audience: str, lifetime: float, code: str
) -> None:
    issuer = emulator.trust_issuer(ISSUER)
    emulator.add_federated_credential(CLIENT_ID, ISSUER, SUBJECT)
    token = issuer.token(SUBJECT, audience=audience, lifetime=lifetime)
    token_file.write_text(token, encoding="utf-8")
    with _federated(emulator, token_file) as client, pytest.raises(GraphPermissionDenied) as caught:
        client.check_token()
    assert code in str(caught.value)
    assert token not in str(caught.value)


def test_auth_modes_resolve_from_the_config_and_the_environment(
    tmp_path: Path, token_file: Path
) -> None:
    managed = EntraConfig(auth=EntraAuth.MANAGED_IDENTITY, managed_identity_client_id="c-1")
    assert resolve_credential(managed, {}) == ManagedIdentity("c-1")
    settings = settings_from_config(EntraConfig(auth=EntraAuth.MANAGED_IDENTITY), {})
    assert settings.credential == ManagedIdentity(None)  # no tenant or client id needed

    workload = EntraConfig(auth=EntraAuth.WORKLOAD_IDENTITY)
    with pytest.raises(ConfigError, match="AZURE_FEDERATED_TOKEN_FILE is not set"):
        settings_from_config(workload, {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c"})
    env = {"AZURE_FEDERATED_TOKEN_FILE": str(token_file)}
    with pytest.raises(
        ConfigError, match=re.escape("entra.tenant_id: missing (and AZURE_TENANT_ID")
    ):
        settings_from_config(workload, env)
    with pytest.raises(ConfigError, match="no such file"):
        settings_from_config(workload, {**env, "AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c"})
    token_file.write_text("a.b.c\n", encoding="utf-8")
    from_env = settings_from_config(
        workload, {**env, "AZURE_TENANT_ID": "t-env", "AZURE_CLIENT_ID": "c-env"}
    )
    assert (from_env.tenant_id, from_env.client_id) == ("t-env", "c-env")
    configured = EntraConfig(auth=EntraAuth.WORKLOAD_IDENTITY, tenant_id="t", client_id="c")
    assert settings_from_config(configured, {**env, "AZURE_CLIENT_ID": "x"}).client_id == "c"

    secret_only = EntraConfig.model_validate(
        {"auth": "secret", "tenant_id": "t", "client_id": "c", "certificate_file": "/x/c.pem"}
    )
    with pytest.raises(ConfigError, match=re.escape('entra.auth = "secret": no client secret')):
        resolve_credential(secret_only, {})
    with pytest.raises(
        ConfigError, match=re.escape('entra.auth = "certificate": set entra.certificate_file')
    ):
        resolve_credential(
            EntraConfig(auth=EntraAuth.CERTIFICATE), {"ENTRASYNC_CLIENT_SECRET": "s"}
        )


def test_a_proxy_in_the_environment_never_sees_managed_identity_requests(
    emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TLS-inspecting proxy set for the whole host must not receive the identity header."""
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(4)
    proxy.settimeout(0.5)
    url = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    emulator.assign_managed_identity(system_assigned=True)
    _use(monkeypatch, emulator.managed_identity_env("app_service"))
    try:
        with GraphClient(make_settings(emulator, credential=ManagedIdentity(None))) as client:
            client.check_token()
        with pytest.raises(TimeoutError):
            proxy.accept()  # nobody connected to the proxy
    finally:
        proxy.close()
    assert len(emulator.log.records(path="/msi/token", status=200)) == 1
