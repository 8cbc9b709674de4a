"""The emulated managed-identity endpoints, both protocols MSAL's `ManagedIdentityClient`
speaks, so tests drive the real MSAL code without the instance metadata address:

* App Service, Functions and Container Apps
  (https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference):
  `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=R[&client_id=C]` with the
  `X-IDENTITY-HEADER` the platform put in `IDENTITY_HEADER`; the answer carries `expires_on`
  (epoch seconds, a string). Served at `/msi/token`.
* The VM instance metadata service
  (https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token):
  `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id=C]` with
  `Metadata: true`; the answer carries `expires_in` (a string). MSAL reaches it at
  `AZURE_POD_IDENTITY_AUTHORITY_HOST` when that is set, which is how tests point it here.
  Errors as that page lists them: 400 `invalid_request` for a missing Metadata header or an
  identity that is not assigned, 400 `invalid_resource` for an unknown resource.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from entrasync.sim.server import EntraEmulator

APP_SERVICE_PATH = "/msi/token"
IMDS_PATH = "/metadata/identity/oauth2/token"
PATHS = (APP_SERVICE_PATH, IMDS_PATH)

Answer = tuple[int, dict[str, Any]]


@dataclass
class ManagedIdentities:
    """The identities assigned to "this machine": at most one system-assigned and any number
    of user-assigned ones, each an app registration of the directory."""

    system_assigned: str | None = None
    user_assigned: set[str] = field(default_factory=set)
    identity_header: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def pick(self, client_id: str | None) -> str | None:
        if client_id:
            return client_id if client_id in self.user_assigned else None
        return self.system_assigned


def answer(emu: EntraEmulator, path: str, headers: dict[str, str]) -> Answer:
    url = urlsplit(path)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    if url.path == IMDS_PATH and headers.get("metadata", "").lower() != "true":
        return 400, _error("invalid_request", "Required metadata header not specified")
    if url.path == APP_SERVICE_PATH and (
        headers.get("x-identity-header") != emu.managed_identities.identity_header
    ):
        return 401, {"statusCode": 401, "message": "Unauthorized request"}
    resource = query.get("resource", "").rstrip("/")
    if resource != emu.graph_url:
        return 400, _error(
            "invalid_resource",
            f"AADSTS500011: The resource principal named {resource} was not found in the "
            f"tenant named {emu.tenant_id}.",
        )
    client_id = emu.managed_identities.pick(query.get("client_id"))
    if client_id is None:
        return 400, _error("invalid_request", "Identity not found")
    return 200, _token(emu, client_id, resource, imds=url.path == IMDS_PATH)


def _token(emu: EntraEmulator, client_id: str, resource: str, *, imds: bool) -> dict[str, Any]:
    issued = emu.directory.issue_to(client_id)
    lifetime = int(issued["expires_in"])
    body = {
        "access_token": issued["access_token"],
        "expires_on": str(int(time.time()) + lifetime),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id,
    }
    if imds:
        body |= {"expires_in": str(lifetime), "ext_expires_in": str(lifetime)}
    return body


def _error(error: str, description: str) -> dict[str, Any]:
    return {"error": error, "error_description": description}
