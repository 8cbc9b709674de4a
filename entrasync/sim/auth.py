"""The identity-platform half of the emulator: app registrations, the token endpoint's
credential checks (client secret, or a client assertion JWT verified against the
registered certificate, RS256 or PS256 as MSAL sends), and issued access tokens.

Access tokens are opaque random strings here: Graph clients never look inside them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from entrasync.sim._federation import Federation, TokenError

__all__ = ["ALL_PERMISSIONS", "AppRegistration", "Directory", "TokenError"]

ALL_PERMISSIONS = frozenset({"GroupMember.Read.All", "User.Read.All"})

# A granted permission that implies the one an endpoint needs (Graph's permission model).
IMPLIED_BY = {
    "GroupMember.Read.All": {
        "GroupMember.Read.All",
        "Group.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    },
    "User.Read.All": {
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    },
}


@dataclass
class AppRegistration:
    client_id: str
    secrets: set[str] = field(default_factory=set)
    certificates: list[x509.Certificate] = field(default_factory=list)
    permissions: set[str] = field(default_factory=lambda: set(ALL_PERMISSIONS))

    def grants(self, permission: str) -> bool:
        return bool(self.permissions & IMPLIED_BY.get(permission, {permission}))


@dataclass(frozen=True)
class IssuedToken:
    client_id: str
    expires_at: float


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Directory:
    """App registrations and the access tokens issued to them (thread-safe)."""

    def __init__(self, token_lifetime: int = 3599) -> None:
        self.apps: dict[str, AppRegistration] = {}
        self.token_lifetime = token_lifetime
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()
        self.federation = Federation()

    def register_app(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        certificate_pem: bytes | None = None,
        permissions: set[str] | frozenset[str] = ALL_PERMISSIONS,
    ) -> AppRegistration:
        app = self.apps.get(client_id) or AppRegistration(client_id)
        if secret:
            app.secrets.add(secret)
        if certificate_pem:
            app.certificates.append(x509.load_pem_x509_certificate(certificate_pem))
        app.permissions = set(permissions)
        self.apps[client_id] = app
        return app

    def issue(self, form: dict[str, str], token_endpoint: str) -> dict[str, Any]:
        """Check a client-credentials request; return the token response body."""
        if form.get("grant_type") != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", "AADSTS70003: unsupported grant")
        client_id = form.get("client_id", "")
        app = self.apps.get(client_id)
        if app is None:
            raise TokenError(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in "
                "the directory. This can happen if the application has not been installed "
                "by the administrator of the tenant.",
            )
        if "client_assertion" in form:
            assertion = form["client_assertion"]
            claims = self.federation.claims_of(assertion)
            if claims is not None:
                self.federation.check(client_id, assertion, claims)
            else:
                self._check_assertion(app, assertion, token_endpoint)
        elif form.get("client_secret", "") not in app.secrets:
            raise TokenError(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent "
                "in the request is the client secret value, not the client secret ID.",
            )
        return self.issue_to(client_id)

    def issue_to(self, client_id: str) -> dict[str, Any]:
        """A new access token for a registered app (or managed identity)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = IssuedToken(client_id, time.time() + self.token_lifetime)
        return {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }

    def app_for_token(self, token: str) -> AppRegistration | None:
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or issued.expires_at < time.time():
            return None
        return self.apps.get(issued.client_id)

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    def _check_assertion(self, app: AppRegistration, assertion: str, audience: str) -> None:
        def refuse(code: str, what: str) -> TokenError:
            return TokenError(401, "invalid_client", f"{code}: {what}")

        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64decode(header_b64))
            claims = json.loads(_b64decode(claims_b64))
            signature = _b64decode(signature_b64)
        except (ValueError, json.JSONDecodeError) as exc:
            raise refuse("AADSTS50027", "Invalid JWT token. The token is malformed.") from exc
        signed = f"{header_b64}.{claims_b64}".encode()
        for cert in app.certificates:
            if not _thumbprint_matches(header, cert):
                continue
            key = cert.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                continue
            pad: padding.AsymmetricPadding
            if header.get("alg") == "PS256":
                pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            elif header.get("alg") == "RS256":
                pad = padding.PKCS1v15()
            else:
                raise refuse("AADSTS5002730", f"Unsupported algorithm {header.get('alg')}")
            try:
                key.verify(signature, signed, pad, hashes.SHA256())
            except InvalidSignature as exc:
                raise refuse(
                    "AADSTS700027", "Client assertion contains an invalid signature."
                ) from exc
            if claims.get("aud") != audience or claims.get("iss") != app.client_id:
                raise refuse("AADSTS700027", "Client assertion has a wrong audience or issuer.")
            if float(claims.get("exp", 0)) < time.time():
                raise refuse("AADSTS700024", "Client assertion is not within its valid range.")
            return
        raise refuse(
            "AADSTS700027",
            "The certificate with identifier used to sign the client assertion is not "
            "registered on application.",
        )


def _thumbprint_matches(header: dict[str, Any], cert: x509.Certificate) -> bool:
    from cryptography.hazmat.primitives.serialization import Encoding

    der = cert.public_bytes(Encoding.DER)
    if "x5t#S256" in header:
        return _b64decode(header["x5t#S256"]) == hashlib.sha256(der).digest()
    if "x5t" in header:
        return _b64decode(header["x5t"]) == hashlib.sha1(der).digest()  # noqa: S324 - x5t is SHA-1
    return False
