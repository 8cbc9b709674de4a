"""Resolve the app credential from the `[entra]` config section and the environment.

Order for a client secret: `ENTRASYNC_CLIENT_SECRET`, then `entra.client_secret_file`, then
`$CREDENTIALS_DIRECTORY/client-secret` (systemd `LoadCredential=`). A certificate
(`entra.certificate_file`: PEM with the certificate and its private key, optionally
encrypted with the passphrase in `entra.certificate_passphrase_file`) is used when no secret
is configured. Errors are `ConfigError`s naming the key and the path, never the content.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from entrasync.errors import ConfigError
from entrasync.graph.settings import (
    ClientCertificate,
    ClientSecret,
    Credential,
    GraphSettings,
    RetryPolicy,
)

if TYPE_CHECKING:
    from entrasync.config import EntraConfig

SECRET_ENV = "ENTRASYNC_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"


def settings_from_config(
    entra: EntraConfig, environ: Mapping[str, str], retry: RetryPolicy | None = None
) -> GraphSettings:
    if not entra.tenant_id:
        raise ConfigError("entra.tenant_id: missing")
    if not entra.client_id:
        raise ConfigError("entra.client_id: missing")
    if entra.ca_bundle is not None:
        _read(entra.ca_bundle, "entra.ca_bundle")
    return GraphSettings(
        tenant_id=entra.tenant_id,
        client_id=entra.client_id,
        credential=resolve_credential(entra, environ),
        authority_host=entra.authority_host,
        graph_url=entra.graph_url,
        ca_bundle=entra.ca_bundle,
        timeout=entra.timeout.total_seconds(),
        retry=retry or RetryPolicy(),
    )


def resolve_credential(entra: EntraConfig, environ: Mapping[str, str]) -> Credential:
    from_env = environ.get(SECRET_ENV, "").strip()
    if from_env:
        return ClientSecret(from_env, SECRET_ENV)
    if entra.client_secret_file is not None:
        return _secret_file(entra.client_secret_file, "entra.client_secret_file")
    if entra.certificate_file is not None:
        passphrase = None
        if entra.certificate_passphrase_file is not None:
            passphrase = _read(
                entra.certificate_passphrase_file, "entra.certificate_passphrase_file"
            ).strip()
        return load_certificate(entra.certificate_file, passphrase)
    directory = environ.get(CREDENTIALS_DIRECTORY_ENV)
    if directory:
        path = Path(directory) / "client-secret"
        if path.exists():
            return _secret_file(path, f"${CREDENTIALS_DIRECTORY_ENV}/client-secret")
    raise ConfigError(
        "entra: no credential: set entra.client_secret_file or entra.certificate_file, "
        f"or provide {SECRET_ENV} or $CREDENTIALS_DIRECTORY/client-secret"
    )


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
