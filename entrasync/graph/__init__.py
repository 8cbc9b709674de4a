"""Microsoft Graph access for entrasync (MSAL + msgraph-sdk behind a synchronous facade).

Public API: `GraphClient` (reads; `cancel=` a threading.Event to stop it promptly, raising
`Cancelled`), `GraphSettings` / `RetryPolicy` / credentials, and `settings_from_config`;
`MsalCaches` to keep a token across clients. See client.py for the design and the delta-link protocol.
"""

from entrasync.graph._delta import (
    CHILD_GROUP_PREFIX,
    GROUP_BATCH_PREFIX,
    USERS_STREAM,
    DeltaRound,
    child_group_id,
    child_group_stream,
    group_batch_stream,
)
from entrasync.graph._errors import GROUP_PERMISSION, USER_PERMISSION
from entrasync.graph.auth import MsalCaches
from entrasync.graph.client import GraphClient
from entrasync.graph.credentials import load_certificate, resolve_credential, settings_from_config
from entrasync.graph.retry import Cancelled, RequestCounters, parse_retry_after
from entrasync.graph.settings import (
    ClientCertificate,
    ClientSecret,
    Credential,
    GraphSettings,
    RetryPolicy,
)

__all__ = [
    "CHILD_GROUP_PREFIX",
    "GROUP_BATCH_PREFIX",
    "GROUP_PERMISSION",
    "USERS_STREAM",
    "USER_PERMISSION",
    "Cancelled",
    "ClientCertificate",
    "ClientSecret",
    "Credential",
    "DeltaRound",
    "GraphClient",
    "GraphSettings",
    "MsalCaches",
    "RequestCounters",
    "RetryPolicy",
    "child_group_id",
    "child_group_stream",
    "group_batch_stream",
    "load_certificate",
    "parse_retry_after",
    "resolve_credential",
    "settings_from_config",
]
