"""What the Graph adapter needs to know, independent of the config file.

`GraphSettings` is a frozen value built by `settings_from_config` (credentials.py) in the
daemon and directly in tests. The credential's secret material is excluded from `repr` so
that a logged or printed settings object never carries it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"


@dataclass(frozen=True)
class ClientSecret:
    value: str = field(repr=False)
    source: str  # where it came from, for messages: "ENTRASYNC_CLIENT_SECRET", a file path


@dataclass(frozen=True)
class ClientCertificate:
    private_key_pem: str = field(repr=False)  # unencrypted (decrypted at load time)
    certificate_pem: str
    source: str


@dataclass(frozen=True)
class ManagedIdentity:
    """An Azure managed identity: nothing stored, MSAL asks the platform's endpoint."""

    client_id: str | None  # a user-assigned identity's client id; None = system-assigned

    @property
    def source(self) -> str:
        if self.client_id:
            return f"user-assigned managed identity {self.client_id}"
        return "system-assigned managed identity"


@dataclass(frozen=True)
class FederatedToken:
    """Workload identity federation: a token the platform keeps fresh in `token_file`
    (Kubernetes' projected service account token), read again at every token request."""

    token_file: Path
    source: str  # where the path came from, e.g. "AZURE_FEDERATED_TOKEN_FILE"


Credential = ClientSecret | ClientCertificate | ManagedIdentity | FederatedToken


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for one request's retries (tenacity). Defaults suit the daemon; tests shrink
    them. `max_attempts` counts the first try; `max_total` (seconds) stops retrying when the
    next wait would end past it; `max_retry_after` caps a server-sent Retry-After."""

    max_attempts: int = 8
    max_total: float = 300.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 300.0


@dataclass(frozen=True)
class GraphSettings:
    tenant_id: str
    client_id: str
    credential: Credential
    authority_host: str = DEFAULT_AUTHORITY_HOST
    graph_url: str = DEFAULT_GRAPH_URL
    ca_bundle: Path | None = None
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    page_size: int | None = None  # Prefer: odata.maxpagesize on delta; None = Graph's default

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"

    @property
    def graph_base(self) -> str:
        return f"{self.graph_url.rstrip('/')}/v1.0"

    @property
    def resource(self) -> str:
        """What a managed-identity endpoint is asked for (a resource, not a scope)."""
        return self.graph_url.rstrip("/")

    @property
    def scope(self) -> str:
        return f"{self.graph_url.rstrip('/')}/.default"

    def secret_values(self) -> tuple[str, ...]:
        """Strings that must never appear in a message (scrubbed defensively)."""
        if isinstance(self.credential, ClientSecret):
            return (self.credential.value,) if self.credential.value else ()
        if isinstance(self.credential, ClientCertificate):
            return (self.credential.private_key_pem,)
        return ()  # nothing stored: the federated token is read when needed and never kept
