"""TLS trust for both HTTP stacks (requests under MSAL, httpx under the SDK).

`entra.ca_bundle` is an *extra* CA (a TLS-inspecting proxy's root): it is trusted in
addition to the system roots (OpenSSL default paths, which honour `SSL_CERT_FILE`) and
certifi's Mozilla bundle. We build one `ssl.SSLContext` with all three and give it to both
stacks.

requests needs care: with `trust_env` on, `Session.merge_environment_settings` replaces a
request's `verify` with `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE` whenever it is True/None, so a
CA set on the session silently loses to the environment. `TrustingSession` keeps
`trust_env` (proxies and `NO_PROXY` still come from the environment, as operators expect)
but pins `verify=True` after the merge, and its adapter hands our context to urllib3 and
drops any CA-file path, so nothing else decides trust. Without `ca_bundle` nothing is
pinned: requests and httpx keep their usual behaviour.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import certifi
import requests
from requests.adapters import HTTPAdapter


def trust_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The system roots and certifi's, plus `ca_bundle` when given."""
    context = ssl.create_default_context()  # system roots
    context.load_verify_locations(cafile=certifi.where())
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


class _ContextAdapter(HTTPAdapter):
    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:  # requests' stubs type these as private TypedDicts
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        pool.pop("ca_certs", None)
        pool.pop("ca_cert_dir", None)
        pool["ssl_context"] = self._context
        pool["cert_reqs"] = "CERT_REQUIRED"
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # The base class would point the connection at a CA file; trust is the context's.
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None


class TrustingSession(requests.Session):
    """A requests session whose TLS trust is our context and a default timeout."""

    def __init__(self, context: ssl.SSLContext | None, timeout: float) -> None:
        super().__init__()
        self._pinned = context is not None
        self._timeout = timeout
        if context is not None:
            self.mount("https://", _ContextAdapter(context))

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self._pinned:
            merged["verify"] = True
        return merged

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)
