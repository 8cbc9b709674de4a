"""Signed checkpoints of the audit chain's head, and what they reveal (pure).

A hash chain shows an edit in its middle but not a cut tail or a chain rebuilt end to end: both
leave a chain that verifies. A checkpoint is the head (seq, hash, time) signed with an Ed25519
key kept outside the store; its canonical bytes are the canonical JSON of those three fields.
Checked against the chain, a checkpoint names three things: records missing after a signed head
(truncation), a signed head whose hash is no longer the chain's at that seq (rewrite), and a
checkpoint whose signature does not hold (forged).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from entrasync.domain.audit import canonical_json


@dataclass(frozen=True)
class Checkpoint:
    """The chain head as signed: its last record's seq and hash, and when it was signed."""

    seq: int
    hash: str
    at: str

    def canonical_bytes(self) -> bytes:
        return canonical_json({"seq": self.seq, "hash": self.hash, "at": self.at}).encode("utf-8")


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    signature: str  # base64 of the 64-byte Ed25519 signature over canonical_bytes()
    source: str = "store"  # where it was read: "store" or a file and line

    def as_json(self) -> dict[str, Any]:
        """One line of a checkpoint file."""
        point = self.checkpoint
        return {"seq": point.seq, "hash": point.hash, "at": point.at, "signature": self.signature}


class CheckpointProblem(StrEnum):
    TRUNCATION = "truncation"
    REWRITE = "rewrite"
    FORGED = "forged checkpoint"


@dataclass(frozen=True)
class CheckpointFinding:
    problem: CheckpointProblem
    seq: int
    detail: str
    source: str


def generate_key_pair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as (private PEM, PKCS#8 unencrypted; public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def sign(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> SignedCheckpoint:
    signature = key.sign(checkpoint.canonical_bytes())
    return SignedCheckpoint(checkpoint, base64.b64encode(signature).decode("ascii"))


def signature_holds(signed: SignedCheckpoint, key: Ed25519PublicKey) -> bool:
    try:
        raw = base64.b64decode(signed.signature, validate=True)
        key.verify(raw, signed.checkpoint.canonical_bytes())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def parse_line(line: str, source: str) -> SignedCheckpoint | None:
    """One checkpoint file line, or None when it is not a checkpoint at all (a forgery too)."""
    try:
        body = json.loads(line)
        if not isinstance(body, dict):
            return None
        point = Checkpoint(int(body["seq"]), str(body["hash"]), str(body["at"]))
        return SignedCheckpoint(point, str(body["signature"]), source)
    except (ValueError, TypeError, KeyError):
        return None


Keys = Ed25519PublicKey | Sequence[Ed25519PublicKey]


def holds_with_any(signed: SignedCheckpoint, keys: Keys) -> bool:
    """The signature holds with one of `keys` (the current key and those it replaced)."""
    several = [keys] if isinstance(keys, Ed25519PublicKey) else list(keys)
    return any(signature_holds(signed, key) for key in several)


def judge(
    checkpoints: Iterable[SignedCheckpoint],
    keys: Keys,
    chain_hashes: Mapping[int, str],
    last_seq: int,
) -> list[CheckpointFinding]:
    """What each checkpoint says about the chain: `chain_hashes` holds the chain's hash at
    (at least) every checkpointed seq present, `last_seq` is the chain's head (0 when empty)."""
    findings = []
    for signed in checkpoints:
        point = signed.checkpoint
        if not holds_with_any(signed, keys):
            detail = (
                "not a checkpoint: a line cut short by a crash, or edited"
                if not signed.signature
                else f"signature does not hold for the checkpoint of record {point.seq}"
            )
            findings.append(
                CheckpointFinding(CheckpointProblem.FORGED, point.seq, detail, signed.source)
            )
        elif point.seq > last_seq:
            detail = (
                f"records {last_seq + 1}..{point.seq} are missing after a head signed at "
                f"{point.at} (the log ends at record {last_seq})"
            )
            findings.append(
                CheckpointFinding(CheckpointProblem.TRUNCATION, point.seq, detail, signed.source)
            )
        elif chain_hashes.get(point.seq) != point.hash:
            detail = (
                f"record {point.seq} no longer has the hash signed at {point.at}: the chain "
                "was rewritten up to it"
            )
            findings.append(
                CheckpointFinding(CheckpointProblem.REWRITE, point.seq, detail, signed.source)
            )
    return findings
