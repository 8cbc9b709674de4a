"""Resolve the app credential from the `[entra]` config section and the environment.

`entra.auth` names the kind; empty means "what is configured", in this order: a client secret
from `ENTRASYNC_CLIENT_SECRET`, then `entra.client_secret_file`; a certificate
(`entra.certificate_file`: PEM with the certificate and its private key, optionally
encrypted with the passphrase in `entra.certificate_passphrase_file`); then
`$CREDENTIALS_DIRECTORY/client-secret` (systemd `LoadCredential=`). Nothing stored:
`managed_identity` (system-assigned, or user-assigned with `entra.managed_identity_client_id`)
and `workload_identity` (the token in `AZURE_FEDERATED_TOKEN_FILE`, read at each token
request; tenant and client id fall back to `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`). Errors are
`ConfigError`s naming the key and the path, never the content.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from entrasync.config import EntraAuth, EntraConfig
from entrasync.errors import ConfigError
from entrasync.graph.settings import (
    ClientCertificate,
    ClientSecret,
    Credential,
    FederatedToken,
    GraphSettings,
    ManagedIdentity,
    RetryPolicy,
)

SECRET_ENV = "ENTRASYNC_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"
# What Azure's workload identity webhook injects into a pod.
FEDERATED_TOKEN_FILE_ENV = "AZURE_FEDERATED_TOKEN_FILE"  # noqa: S105 - a variable name
CLIENT_ID_ENV = "AZURE_CLIENT_ID"
TENANT_ID_ENV = "AZURE_TENANT_ID"


def settings_from_config(
    entra: EntraConfig, environ: Mapping[str, str], retry: RetryPolicy | None = None
) -> GraphSettings:
    tenant_id, client_id = _app_ids(entra, environ)
    if entra.ca_bundle is not None:
        _read(entra.ca_bundle, "entra.ca_bundle")
    return GraphSettings(
        tenant_id=tenant_id,
        client_id=client_id,
        credential=resolve_credential(entra, environ),
        authority_host=entra.authority_host,
        graph_url=entra.graph_url,
        ca_bundle=entra.ca_bundle,
        timeout=entra.timeout.total_seconds(),
        retry=retry or RetryPolicy(),
    )


def _app_ids(entra: EntraConfig, environ: Mapping[str, str]) -> tuple[str, str]:
    """(tenant id, client id). A managed identity needs neither (the platform knows its
    identity). Workload identity falls back to what the AKS webhook injects, so the same
    ConfigMap serves every cluster."""
    if entra.auth is EntraAuth.MANAGED_IDENTITY:
        return entra.tenant_id, entra.client_id or entra.managed_identity_client_id
    tenant_id, client_id = entra.tenant_id, entra.client_id
    if entra.auth is EntraAuth.WORKLOAD_IDENTITY:
        tenant_id = tenant_id or environ.get(TENANT_ID_ENV, "").strip()
        client_id = client_id or environ.get(CLIENT_ID_ENV, "").strip()
    if not tenant_id:
        raise ConfigError("entra.tenant_id: missing" + _or_env(entra, TENANT_ID_ENV))
    if not client_id:
        raise ConfigError("entra.client_id: missing" + _or_env(entra, CLIENT_ID_ENV))
    return tenant_id, client_id


def _or_env(entra: EntraConfig, name: str) -> str:
    return f" (and {name} is not set)" if entra.auth is EntraAuth.WORKLOAD_IDENTITY else ""


def resolve_credential(entra: EntraConfig, environ: Mapping[str, str]) -> Credential:
    """The credential `entra.auth` names; when empty, a secret if one is configured, else the
    certificate (the order in the module docstring)."""
    if entra.auth is EntraAuth.MANAGED_IDENTITY:
        return ManagedIdentity(entra.managed_identity_client_id.strip() or None)
    if entra.auth is EntraAuth.WORKLOAD_IDENTITY:
        return _federated_token(environ)
    if entra.auth is EntraAuth.CERTIFICATE:
        if entra.certificate_file is None:
            raise ConfigError('entra.auth = "certificate": set entra.certificate_file')
        return _certificate(entra)
    secret = _configured_secret(entra, environ)
    if secret is not None:
        return secret
    if entra.auth is EntraAuth.SECRET:
        raise ConfigError(
            'entra.auth = "secret": no client secret: set entra.client_secret_file, '
            f"{SECRET_ENV} or $CREDENTIALS_DIRECTORY/client-secret"
        )
    if entra.certificate_file is not None:
        return _certificate(entra)
    raise ConfigError(
        "entra: no credential: set entra.client_secret_file or entra.certificate_file, "
        f"or provide {SECRET_ENV} or $CREDENTIALS_DIRECTORY/client-secret, or set "
        'entra.auth = "managed_identity" or "workload_identity"'
    )


def _federated_token(environ: Mapping[str, str]) -> FederatedToken:
    path = environ.get(FEDERATED_TOKEN_FILE_ENV, "").strip()
    if not path:
        raise ConfigError(
            f'entra.auth = "workload_identity": {FEDERATED_TOKEN_FILE_ENV} is not set (the '
            "workload identity webhook sets it in a pod whose service account is annotated)"
        )
    credential = FederatedToken(Path(path), FEDERATED_TOKEN_FILE_ENV)
    read_federated_token(credential)
    return credential


def read_federated_token(credential: FederatedToken) -> str:
    """The current token in the file (the platform rotates it; read at every request)."""
    token = _read(credential.token_file, credential.source).decode("utf-8", "replace").strip()
    if not token:
        raise ConfigError(f"{credential.source}: {credential.token_file}: file is empty")
    return token


def _certificate(entra: EntraConfig) -> ClientCertificate:
    assert entra.certificate_file is not None
    passphrase = None
    if entra.certificate_passphrase_file is not None:
        passphrase = _read(
            entra.certificate_passphrase_file, "entra.certificate_passphrase_file"
        ).strip()
    return load_certificate(entra.certificate_file, passphrase)


def _configured_secret(entra: EntraConfig, environ: Mapping[str, str]) -> ClientSecret | None:
    from_env = environ.get(SECRET_ENV, "").strip()
    if from_env:
        return ClientSecret(from_env, SECRET_ENV)
    if entra.client_secret_file is not None:
        return _secret_file(entra.client_secret_file, "entra.client_secret_file")
    if entra.certificate_file is not None and entra.auth is EntraAuth.CONFIGURED:
        return None  # a configured certificate comes before the systemd credential
    directory = environ.get(CREDENTIALS_DIRECTORY_ENV)
    if directory:
        path = Path(directory) / "client-secret"
        if path.exists():
            return _secret_file(path, f"${CREDENTIALS_DIRECTORY_ENV}/client-secret")
    return None


def _read(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{key}: {path}: is a directory") from None
    except PermissionError:
        raise ConfigError(f"{key}: {path}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"{key}: {path}: cannot be read ({exc.strerror})") from None


def _secret_file(path: Path, key: str) -> ClientSecret:
    value = _read(path, key).decode("utf-8", errors="replace").strip()
    if not value:
        raise ConfigError(f"{key}: {path}: file is empty")
    return ClientSecret(value, str(path))


def load_certificate(path: Path, passphrase: bytes | None = None) -> ClientCertificate:
    """Read a PEM holding the certificate and its private key; decrypt the key here so the
    passphrase is not needed later."""
    key = "entra.certificate_file"
    data = _read(path, key)
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{key}: {path}: no PEM certificate found") from None
    try:
        private_key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        raise ConfigError(
            f"{key}: {path}: the private key is encrypted; set entra.certificate_passphrase_file"
            if not passphrase
            else f"{key}: {path}: the private key is not encrypted but a passphrase was given"
        ) from None
    except ValueError:
        raise ConfigError(
            f"{key}: {path}: no readable private key (wrong passphrase or not PEM)"
        ) from None
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return ClientCertificate(key_pem, cert_pem, str(path))
