"""The TLS trust a collector connection uses: the same as Graph's (`graph.tls.trust_context`:
the system roots and certifi's), plus `audit.forward_ca_bundle` when set (a private PKI's
root)."""

from __future__ import annotations

import ssl
from pathlib import Path

from entrasync.errors import ConfigError
from entrasync.graph.tls import trust_context


def client_context(ca_bundle: Path | None) -> ssl.SSLContext:
    try:
        return trust_context(ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"audit.forward_ca_bundle {ca_bundle}: {reason}") from None
