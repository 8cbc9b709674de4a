"""Access tokens from MSAL for the app (client credentials flow), or for a managed identity.

* A managed identity (`entra.auth = "managed_identity"`): MSAL's `ManagedIdentityClient`,
  which finds the platform's endpoint itself (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER` on App
  Service and Container Apps, else the VM instance metadata service) and is asked for the
  Graph *resource*. Workload identity federation (`"workload_identity"`): the client
  assertion is a callable that reads `AZURE_FEDERATED_TOKEN_FILE` whenever MSAL needs a new
  token, so a rotated projected token is picked up.

* `ConfidentialClientApplication` with the client secret, or the certificate as
  `{"private_key", "public_certificate"}` (MSAL then signs a PS256 client assertion with the
  SHA-256 thumbprint and sends the x5c chain). The token cache is MSAL's in-memory cache,
  shared between clients through `MsalCaches` when a process lives long (the daemon).
* Refresh before expiry: MSAL's `acquire_token_for_client` serves a cached token only while
  it has more than five minutes left (and honours `refresh_in`), otherwise it fetches a new
  one, so a long delta round never sends a token that expires mid-request. After a 401 from
  Graph the cached token is dropped (`drop_cached_tokens`) and the request retried.
* Authority = `authority_host/tenant_id`. MSAL's instance discovery is a call to
  login.microsoftonline.com; it is only used for Microsoft's well-known hosts. Any other
  host (the emulator, a private sovereign endpoint) is trusted as configured and its OIDC
  document is read from the authority itself.
* MSAL uses our `TrustingSession` (see tls.py) and, like the SDK, the shared retry policy.
  The session itself refuses, before MSAL sees them, answers that are not JSON (a proxy's
  login page, a gateway's 502 page: MSAL would log such a body, which can echo the posted
  client secret, and raise a bare ValueError) and transient statuses (429, 500, 502-504:
  MSAL would cache them as throttling hints for whole seconds, fractional Retry-After
  ignored). Both become `IdentityAnswer`, mapped to a retry (transient status) or to
  GraphUnavailable, with a message naming the host, the endpoint and the status only.
* Nothing here puts the secret in a message: MSAL's error text comes from the server, and
  `scrub` removes the secret anyway should a server echo it back.
* Cancellation: retry waits end at once when the client's cancel event is set; a token
  request already sent is not interrupted (MSAL is synchronous) but is bounded by
  `entra.timeout`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import msal
import msal.authority
import requests
from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator

from entrasync.errors import ConfigError, GraphPermissionDenied, GraphUnavailable
from entrasync.graph.credentials import read_federated_token
from entrasync.graph.retry import (
    BACKOFF_STATUSES,
    RETRY_AFTER_STATUSES,
    Cancelled,
    RequestCounters,
    Transient,
    cancellable_sleep,
    parse_retry_after,
    retry_sync,
)
from entrasync.graph.settings import (
    ClientCertificate,
    ClientSecret,
    Credential,
    FederatedToken,
    GraphSettings,
    ManagedIdentity,
)
from entrasync.graph.tls import TrustingSession

# Errors a retry cannot mend. `invalid_request` is what a managed-identity endpoint answers for
# an identity that is not assigned, and the token endpoint for a federated assertion that
# matches no federated credential (AADSTS70021).
REFUSED_ERRORS = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "invalid_grant",
        "access_denied",
        "invalid_request",
    }
)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def tls_hint(settings: GraphSettings) -> str:
    if settings.ca_bundle is None:
        return (
            "the server's TLS certificate is not trusted; if a TLS-inspecting proxy is in "
            "the way, set entra.ca_bundle to its CA file"
        )
    return f"the server's TLS certificate is not trusted, even with entra.ca_bundle = {settings.ca_bundle}"


class BodyKind(Enum):
    """What an HTTP answer carried, in words for a message."""

    JSON = "JSON"
    HTML = "an HTML page"
    EMPTY = "an empty body"
    OTHER = "a body that is not JSON"


def body_kind(content_type: str, body: bytes) -> BodyKind:
    if not body.strip():
        return BodyKind.EMPTY
    try:
        json.loads(body)
    except ValueError:
        html = "html" in content_type.lower() or body.lstrip()[:1] == b"<"
        return BodyKind.HTML if html else BodyKind.OTHER
    return BodyKind.JSON


def answered(subject: str, status: int, kind: BodyKind) -> str:
    """`<subject> answered 502 with an HTML page, not JSON (…)`: the status and what the body
    was, never the body itself (a login page can echo the posted secret)."""
    if kind is BodyKind.JSON:
        return f"{subject} answered {status}"
    return (
        f"{subject} answered {status} with {kind.value}, not JSON (a proxy or gateway in the way?)"
    )


def _endpoint(path: str) -> str:
    if path.endswith("/token"):
        return "the token endpoint"
    if "openid-configuration" in path:
        return "the OpenID configuration endpoint"
    if "discovery/instance" in path:
        return "the instance discovery endpoint"
    return "the identity platform"


class IdentityAnswer(Exception):
    """An identity-platform answer MSAL must not see: not JSON, or a transient status."""

    def __init__(self, url: str, response: requests.Response, kind: BodyKind) -> None:
        parts = urlsplit(url)
        self.status = response.status_code
        self.transient = self.status in RETRY_AFTER_STATUSES | BACKOFF_STATUSES
        self.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        super().__init__(f"{parts.netloc}: {answered(_endpoint(parts.path), self.status, kind)}")


class _CountingSession(TrustingSession):
    def __init__(self, settings: GraphSettings, counters: RequestCounters, context: Any) -> None:
        super().__init__(context, settings.timeout)
        self._counters = counters

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException:
            self._counters.add("login", "error")
            raise
        self._counters.add("login", str(response.status_code))
        kind = body_kind(response.headers.get("Content-Type", ""), response.content)
        if (
            kind is not BodyKind.JSON
            or response.status_code in RETRY_AFTER_STATUSES | BACKOFF_STATUSES
        ):
            response.close()
            raise IdentityAnswer(str(url), response, kind)
        return response


@dataclass
class MsalCaches:
    """MSAL's token cache and HTTP cache (the authority's OIDC document), to share between
    the `GraphClient`s of one long-running process. The daemon builds a client per cycle, so
    that a rotated secret or certificate is read again, yet reuses the token it already has
    instead of signing in again every interval."""

    tokens: msal.TokenCache = field(default_factory=msal.TokenCache)
    http: dict[str, Any] = field(default_factory=dict)


class TokenSource:
    """Thread-safe access tokens for `settings.scope`."""

    def __init__(
        self,
        settings: GraphSettings,
        counters: RequestCounters,
        context: Any,
        caches: MsalCaches | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self._caches = caches or MsalCaches()
        self._settings = settings
        self._session = _CountingSession(settings, counters, context)
        if isinstance(settings.credential, ManagedIdentity):
            # The identity endpoint is on this host (App Service) or link-local (the instance
            # metadata service, which Microsoft says must not be reached through a proxy): an
            # HTTP(S)_PROXY from the environment would receive the identity header.
            self._session.trust_env = False
        self._app: Any = None
        self._lock = threading.Lock()
        self._cancel = cancel
        self._sleep = cancellable_sleep(cancel, "getting an access token")

    def token(self) -> str:
        policy = self._settings.retry
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled("getting an access token: cancelled")
        with self._lock:
            try:
                return retry_sync(policy, self._attempt, self._sleep)
            except Transient as exc:
                raise GraphUnavailable(
                    f"{exc.reason}; gave up (at most {policy.max_attempts} attempts within "
                    f"{policy.max_total:g}s)"
                ) from None

    def drop_cached_tokens(self) -> None:
        with self._lock:
            if isinstance(self._settings.credential, ManagedIdentity):
                # MSAL's managed-identity client has no remove call: start a fresh cache.
                self._caches.tokens = msal.TokenCache()
                self._app = None
            elif self._app is not None:
                self._app.remove_tokens_for_client()

    def close(self) -> None:
        self._session.close()

    def _application(self) -> Any:
        if self._app is None:
            s = self._settings
            if isinstance(s.credential, ManagedIdentity):
                self._app = msal.ManagedIdentityClient(
                    _identity(s.credential),
                    http_client=self._session,
                    token_cache=self._caches.tokens,
                    http_cache=self._caches.http,
                )
                return self._app
            host = urlsplit(s.authority_host).hostname or ""
            try:
                self._app = msal.ConfidentialClientApplication(
                    s.client_id,
                    client_credential=_client_credential(s.credential),
                    authority=s.authority,
                    http_client=self._session,
                    token_cache=self._caches.tokens,
                    http_cache=self._caches.http,
                    instance_discovery=host in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS,
                )
            except ValueError as exc:
                # MSAL could not read the authority's OIDC document (wrong tenant or host).
                raise ConfigError(
                    f"entra.tenant_id / entra.authority_host: {s.authority} is not a usable "
                    f"authority: {scrub(str(exc), s.secret_values())}"
                ) from None
        return self._app

    def _attempt(self) -> str:
        s = self._settings
        try:
            if isinstance(s.credential, ManagedIdentity):
                result = self._application().acquire_token_for_client(resource=s.resource)
            else:
                result = self._application().acquire_token_for_client(scopes=[s.scope])
        except requests.exceptions.SSLError:
            raise GraphUnavailable(f"cannot reach {s.authority_host}: {tls_hint(s)}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Transient(f"cannot reach {s.authority_host}: {type(exc).__name__}") from None
        except IdentityAnswer as exc:
            if exc.transient:
                raise Transient(str(exc), exc.retry_after, exc.status) from None
            raise GraphUnavailable(str(exc)) from None
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error", "unknown_error"))
        description = scrub(str(result.get("error_description", "")), s.secret_values())
        description = description.splitlines()[0] if description else ""
        if error in REFUSED_ERRORS:
            raise GraphPermissionDenied(
                f"the identity platform refused a token for {self._who()} "
                f"({error}): {description} — {self._credential_advice(error)}"
            )
        raise Transient(f"token request failed ({error}): {description}")

    def _who(self) -> str:
        s = self._settings
        if isinstance(s.credential, ManagedIdentity):
            return f"the {s.credential.source}"
        return f"app {s.client_id} in tenant {s.tenant_id}"

    def _credential_advice(self, error: str) -> str:
        s = self._settings
        if isinstance(s.credential, ManagedIdentity):
            return (
                "check that the identity is assigned to this VM, app or container "
                "(and entra.managed_identity_client_id for a user-assigned one)"
            )
        if error == "unauthorized_client":
            return "check entra.client_id and entra.tenant_id"
        if error == "invalid_scope":
            return f"check entra.graph_url ({s.graph_url})"
        if isinstance(s.credential, FederatedToken):
            return (
                f"check the federated credential on app {s.client_id}: its issuer, subject "
                f"and audience must match the token in {s.credential.source} (on AKS: the "
                "cluster's OIDC issuer, system:serviceaccount:NAMESPACE:NAME, "
                "api://AzureADTokenExchange)"
            )
        if isinstance(s.credential, ClientSecret):
            return (
                f"check the client secret (from {s.credential.source}): it may be wrong or "
                "expired; use the secret's value, not its id"
            )
        return (
            f"check that the certificate in {s.credential.source} is uploaded to the app "
            "registration"
        )


def _identity(credential: ManagedIdentity) -> Any:
    if credential.client_id:
        return msal.UserAssignedManagedIdentity(client_id=credential.client_id)
    return msal.SystemAssignedManagedIdentity()


def _client_credential(credential: Credential) -> Any:
    """What MSAL's ConfidentialClientApplication takes for each kind of credential."""
    if isinstance(credential, ClientSecret):
        return credential.value
    if isinstance(credential, ClientCertificate):
        return {
            "private_key": credential.private_key_pem,
            "public_certificate": credential.certificate_pem,
        }
    assert isinstance(credential, FederatedToken)
    # A callable: MSAL calls it for each new token, so a rotated token file is picked up.
    return {"client_assertion": lambda: read_federated_token(credential)}


class MsalAccessTokenProvider(AccessTokenProvider):
    """Kiota's hook: the SDK asks for a bearer token before each request."""

    def __init__(self, source: TokenSource, graph_host: str) -> None:
        self._source = source
        self._hosts = AllowedHostsValidator([graph_host])

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        return self._source.token()

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._hosts
