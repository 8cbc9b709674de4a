"""The emulated identity platform: instance discovery, OpenID configuration and the token
endpoint of the client credentials flow (secret or certificate assertion), as MSAL calls them
(https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).

Each answer is `(status, JSON body)`; an unknown path or method raises GraphError.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from entrasync.sim._graph_http import GraphError
from entrasync.sim.auth import TokenError

if TYPE_CHECKING:
    from entrasync.sim.server import EntraEmulator

Answer = tuple[int, dict[str, Any]]

_ENDPOINT = re.compile(r"/([^/]+)/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token)")


def identity(emu: EntraEmulator, method: str, path: str, body: bytes) -> Answer:
    """Answer one request to the identity platform."""
    base, tenant = emu.base_url, emu.tenant_id
    if method == "GET" and path == "/common/discovery/instance":
        return 200, _instance_discovery(base, tenant)
    match = _ENDPOINT.fullmatch(path)
    if match is None:
        raise GraphError(404, "NotFound", f"No such endpoint {path}")
    if match.group(1) not in (tenant, "organizations"):
        return 400, {
            "error": "invalid_tenant",
            "error_description": f"AADSTS90002: Tenant '{match.group(1)}' not found.",
        }
    if method == "GET" and match.group(2).startswith("v2.0"):
        return 200, _openid_configuration(base, tenant)
    if method != "POST":
        raise GraphError(405, "NotFound", "Use POST for the token endpoint.")
    return _token(emu, body)


def _instance_discovery(base: str, tenant: str) -> dict[str, Any]:
    return {
        "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [],
    }


def _openid_configuration(base: str, tenant: str) -> dict[str, Any]:
    root = f"{base}/{tenant}"
    return {
        "issuer": f"{root}/v2.0",
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_types_supported": ["code", "id_token", "token"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
        ],
        "tenant_region_scope": "EU",
    }


def _token(emu: EntraEmulator, body: bytes) -> Answer:
    form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
    scope = form.get("scope", "")
    if f"{emu.graph_url}/.default" not in scope.split():
        return 400, {
            "error": "invalid_scope",
            "error_description": f"AADSTS1002012: The provided value for scope "
            f"{scope} is not valid. Client credential flows must have a scope "
            "value with /.default suffixed to the resource identifier.",
        }
    try:
        result = emu.directory.issue(form, f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token")
    except TokenError as exc:
        return exc.status, {"error": exc.error, "error_description": exc.description}
    return 200, result
