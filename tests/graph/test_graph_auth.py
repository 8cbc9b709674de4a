"""Credentials, TLS trust, token refresh and permission errors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import requests
from graph_helpers import CLIENT_ID, SECRET, SmallTenant, make_settings

from entrasync.errors import ConfigError, ExitCode, GraphPermissionDenied, GraphUnavailable
from entrasync.graph import ClientSecret, GraphClient, MsalCaches, load_certificate
from entrasync.graph.credentials import resolve_credential, settings_from_config
from entrasync.sim import EntraEmulator, make_client_certificate
from entrasync.sim.certs import write_tls_files

try:
    from entrasync.config import EntraConfig
except ImportError:  # pragma: no cover - config lands in parallel
    EntraConfig = None  # type: ignore[assignment,misc]


def test_wrong_secret_is_exit_77_and_never_shows_the_secret(
    emulator: EntraEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wr0ng~S3cret.Value_Should_Not-Leak"
    settings = make_settings(emulator, credential=ClientSecret(wrong, "/run/secret"))
    caplog.set_level(logging.DEBUG)
    with GraphClient(settings) as client, pytest.raises(GraphPermissionDenied) as caught:
        client.check_token()
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.PERMISSION
    assert "invalid_client" in message
    assert "/run/secret" in message  # tells the admin which secret to fix
    for text in (message, repr(caught.value), repr(settings), caplog.text):
        assert wrong not in text
        assert SECRET not in text


def test_unknown_client_id_is_exit_77(emulator: EntraEmulator) -> None:
    settings = make_settings(emulator, client_id="00000000-0000-0000-0000-0000000000aa")
    with GraphClient(settings) as client, pytest.raises(GraphPermissionDenied) as caught:
        client.check_token()
    assert "unauthorized_client" in str(caught.value)
    assert "entra.client_id" in str(caught.value)


def test_missing_group_permission_names_it(
    emulator: EntraEmulator, client: GraphClient, small: SmallTenant
) -> None:
    emulator.register_app(CLIENT_ID, secret=SECRET, permissions={"User.Read.All"})
    with pytest.raises(GraphPermissionDenied) as caught:
        list(client.read_groups([small.dnt], {}))
    message = str(caught.value)
    assert caught.value.exit_code == 77
    assert "GroupMember.Read.All" in message
    assert "admin consent" in message
    assert [u for p in client.read_users({}) for u in p.users]  # users still readable


def test_missing_user_permission_names_it(emulator: EntraEmulator, client: GraphClient) -> None:
    emulator.register_app(CLIENT_ID, secret=SECRET, permissions={"GroupMember.Read.All"})
    with pytest.raises(GraphPermissionDenied) as caught:
        list(client.read_users({}))
    assert "User.Read.All" in str(caught.value)
    assert "admin consent" in str(caught.value)


def test_certificate_credential_with_passphrase(
    emulator: EntraEmulator, tmp_path: Path, small: SmallTenant
) -> None:
    pem = tmp_path / "entrasync.pem"
    cert_pem = make_client_certificate(pem, passphrase=b"pass phrase")
    emulator.register_app("cert-app", certificate_pem=cert_pem)
    credential = load_certificate(pem, b"pass phrase")
    settings = make_settings(emulator, client_id="cert-app", credential=credential)
    with GraphClient(settings) as client:
        users = [u for p in client.read_users({}) for u in p.users]
    assert len(users) == 4
    assert "pass phrase" not in repr(settings) and "PRIVATE KEY" not in repr(settings)


def test_unregistered_certificate_is_refused(emulator: EntraEmulator, tmp_path: Path) -> None:
    registered, other = tmp_path / "registered.pem", tmp_path / "other.pem"
    emulator.register_app("cert-app", certificate_pem=make_client_certificate(registered))
    make_client_certificate(other)
    settings = make_settings(emulator, client_id="cert-app", credential=load_certificate(other))
    with GraphClient(settings) as client, pytest.raises(GraphPermissionDenied) as caught:
        client.check_token()
    assert "certificate" in str(caught.value)


def test_ca_bundle_wins_over_requests_ca_bundle(
    emulator: EntraEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = write_tls_files(tmp_path / "other")  # an unrelated CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other.ca_file))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other.ca_file))
    # Control: plain requests lets the environment override session.verify.
    session = requests.Session()
    session.verify = str(emulator.ca_file)
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"{emulator.authority_host}/common/discovery/instance", timeout=5)
    with GraphClient(make_settings(emulator)) as client:
        client.check_token()
        assert [u for p in client.read_users({}) for u in p.users]


def test_without_ca_bundle_tls_failure_is_69_with_a_hint(emulator: EntraEmulator) -> None:
    settings = make_settings(emulator, ca_bundle=None)
    with GraphClient(settings) as client, pytest.raises(GraphUnavailable) as caught:
        client.check_token()
    assert caught.value.exit_code == 69
    assert "entra.ca_bundle" in str(caught.value)


def test_tokens_near_expiry_are_refreshed(small: SmallTenant) -> None:
    # Tokens living 4 minutes are inside MSAL's 5-minute refresh margin: every request must
    # get a fresh one. Tokens living an hour are reused.
    for lifetime, expect_many in ((240, True), (3599, False)):
        with EntraEmulator(small.tenant, token_lifetime=lifetime) as emu:
            emu.register_app(CLIENT_ID, secret=SECRET)
            with GraphClient(make_settings(emu)) as client:
                for _ in range(3):
                    list(client.read_users({}))
            tokens = emu.log.count(r"/oauth2/v2.0/token")
            assert tokens == (3 if expect_many else 1), (lifetime, tokens)


def test_revoked_token_is_replaced_after_401(emulator: EntraEmulator, client: GraphClient) -> None:
    list(client.read_users({}))
    emulator.directory.revoke_all()
    assert [u for p in client.read_users({}) for u in p.users]
    assert emulator.log.count(status=401) == 1
    assert emulator.log.count(r"/oauth2/v2.0/token") == 2


def test_wrong_tenant_is_a_configuration_error(emulator: EntraEmulator) -> None:
    settings = make_settings(emulator, tenant_id="11111111-2222-3333-4444-555555555555")
    with GraphClient(settings) as client, pytest.raises(ConfigError) as caught:
        client.check_token()
    assert "entra.tenant_id" in str(caught.value)


# -- credential resolution ------------------------------------------------------------------

needs_config = pytest.mark.skipif(EntraConfig is None, reason="entrasync.config not present")


def _entra(**values: Any) -> EntraConfig:
    # The config is strict: paths arrive as strings, as from a TOML file.
    values = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
    return EntraConfig(tenant_id="t", client_id="c", **values)


@needs_config
def test_secret_resolution_order(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "client-secret").write_text("from-credentials-dir")
    entra = _entra(client_secret_file=secret_file)
    env = {"ENTRASYNC_CLIENT_SECRET": "from-env", "CREDENTIALS_DIRECTORY": str(creds)}
    assert resolve_credential(entra, env) == ClientSecret("from-env", "ENTRASYNC_CLIENT_SECRET")
    env.pop("ENTRASYNC_CLIENT_SECRET")
    got = resolve_credential(entra, env)
    assert isinstance(got, ClientSecret) and got.value == "from-file"
    got = resolve_credential(_entra(), env)
    assert isinstance(got, ClientSecret) and got.value == "from-credentials-dir"
    with pytest.raises(ConfigError, match="no credential"):
        resolve_credential(_entra(), {})


@needs_config
def test_missing_secret_file_names_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as caught:
        settings_from_config(_entra(client_secret_file=missing), {})
    assert str(caught.value) == f"entra.client_secret_file: {missing}: no such file"
    assert caught.value.exit_code == 78


@needs_config
def test_encrypted_certificate_needs_its_passphrase(tmp_path: Path) -> None:
    pem = tmp_path / "cert.pem"
    make_client_certificate(pem, passphrase=b"pw")
    with pytest.raises(ConfigError, match="certificate_passphrase_file"):
        settings_from_config(_entra(certificate_file=pem), {})
    passphrase = tmp_path / "pw"
    passphrase.write_text("pw\n")
    settings = settings_from_config(
        _entra(certificate_file=pem, certificate_passphrase_file=passphrase), {}
    )
    assert settings.credential.source == str(pem)
    assert settings.authority == "https://login.microsoftonline.com/t"
    assert settings.scope == "https://graph.microsoft.com/.default"


def test_shared_msal_caches_keep_one_token_across_clients(emulator: EntraEmulator) -> None:
    """The daemon builds a client per cycle; with shared caches only the first one signs in."""
    caches = MsalCaches()
    with GraphClient(make_settings(emulator), caches) as first:
        first.check_token()
        assert sum(first.counters.by_status("login").values()) >= 1
    with GraphClient(make_settings(emulator), caches) as second:
        second.check_token()
        assert second.counters.by_status("login") == {}  # no discovery, no token request
    with GraphClient(make_settings(emulator)) as alone:
        alone.check_token()
        assert sum(alone.counters.by_status("login").values()) >= 1
