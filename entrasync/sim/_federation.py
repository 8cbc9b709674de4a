"""Workload identity federation in the emulator: outside issuers it trusts (a Kubernetes
cluster's OIDC issuer, say) and the federated credentials of its apps.

An app with a federated credential accepts, as its client assertion, a JWT from a trusted
issuer whose `iss`, `sub` and `aud` match that credential exactly (case-sensitive) and whose
signature and `exp` hold (https://learn.microsoft.com/entra/workload-id/workload-identity-federation).
No match is what Entra answers with AADSTS70021, `invalid_request`, status 400 (as reported in
Azure/azure-workload-identity#616); an expired assertion AADSTS700024.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# The audience Entra expects in a federated assertion (and AKS projects tokens for).
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 - an audience URI


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    """What the token endpoint answers instead of a token: status, OAuth error, AADSTS text."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass
class FederatedIssuer:
    """A token issuer the emulator trusts: it mints RS256 JWTs like a projected Kubernetes
    service account token."""

    issuer: str
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def token(
        self, subject: str, audience: str = TOKEN_EXCHANGE_AUDIENCE, lifetime: float = 3600
    ) -> str:
        now = time.time()
        header = {"alg": "RS256", "typ": "JWT", "kid": "test"}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": [audience],
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + lifetime),
            "jti": secrets.token_hex(8),
        }
        signed = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64(signature)}"


@dataclass(frozen=True)
class FederatedCredential:
    issuer: str
    subject: str
    audience: str = TOKEN_EXCHANGE_AUDIENCE


@dataclass
class Federation:
    issuers: dict[str, FederatedIssuer] = field(default_factory=dict)
    credentials: dict[str, list[FederatedCredential]] = field(default_factory=dict)

    def claims_of(self, assertion: str) -> dict[str, object] | None:
        """The claims of an assertion from a trusted issuer, or None (not federated)."""
        try:
            header_b64, claims_b64, _ = assertion.split(".")
            claims = json.loads(_unb64(claims_b64))
            json.loads(_unb64(header_b64))
        except ValueError:
            return None
        if isinstance(claims, dict) and claims.get("iss") in self.issuers:
            return claims
        return None

    def check(self, client_id: str, assertion: str, claims: dict[str, object]) -> None:
        issuer = self.issuers[str(claims["iss"])]
        header_b64, claims_b64, signature_b64 = assertion.split(".")
        try:
            issuer.key.public_key().verify(
                _unb64(signature_b64),
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise TokenError(
                401,
                "invalid_client",
                "AADSTS700027: Client assertion contains an invalid signature.",
            ) from None
        if float(str(claims.get("exp", 0))) < time.time():
            raise TokenError(
                401,
                "invalid_client",
                "AADSTS700024: Client assertion is not within its valid time range.",
            )
        audiences = claims.get("aud")
        audience_list = audiences if isinstance(audiences, list) else [audiences]
        for credential in self.credentials.get(client_id, []):
            if (
                credential.issuer == claims["iss"]
                and credential.subject == claims.get("sub")
                and credential.audience in audience_list
            ):
                return
        raise TokenError(
            400,
            "invalid_request",
            "AADSTS70021: No matching federated identity record found for presented assertion. "
            f"Assertion Issuer: '{claims['iss']}'. Assertion Subject: '{claims.get('sub')}'. "
            f"Assertion Audience: '{','.join(map(str, audience_list))}'.",
        )
