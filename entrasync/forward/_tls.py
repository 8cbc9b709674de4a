"""The TLS trust a collector connection uses: the system roots and certifi's, plus
`audit.forward_ca_bundle` when set (a private PKI's root)."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi

from entrasync.errors import ConfigError


def client_context(ca_bundle: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError(f"audit.forward_ca_bundle {ca_bundle}: {reason}") from None
    return context
