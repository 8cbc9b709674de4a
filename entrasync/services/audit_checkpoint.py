"""Signed checkpoints of the audit log: making one, and verifying the chain against them.

A checkpoint is stored in the store and appended to `audit.checkpoint_dir/checkpoints.jsonl`.
Verification reads both (the files are the anchor an intruder in the store cannot reach).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from entrasync.domain import checkpoint as signing
from entrasync.domain.audit import ChainBreak, format_at, verify_chain
from entrasync.domain.checkpoint import Checkpoint, CheckpointFinding, SignedCheckpoint
from entrasync.errors import ChainContradicted, ConfigError, EntrasyncError, InputError
from entrasync.store import audit, checkpoints
from entrasync.store.db import Store
from entrasync.store.session import Session

K = TypeVar("K", Ed25519PrivateKey, Ed25519PublicKey)

CHECKPOINT_FILE = "checkpoints.jsonl"
CHECKPOINT_EVERY = timedelta(hours=1)
# What a chain without signed checkpoints cannot show (DESIGN.md, "Audit log").
UNDETECTED_WITHOUT_KEY = (
    "not checked without --public-key: records cut from the end of the log (truncation) "
    "and a chain recomputed after an edit (rewrite)"
)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    return _read_key(path, signing.load_private_key, ConfigError, "audit.signing_key_file")


def read_public_key(path: Path) -> Ed25519PublicKey:
    return _read_key(path, signing.load_public_key, InputError, "--public-key")


def _read_key(path: Path, load: Callable[[bytes], K], error: type[EntrasyncError], label: str) -> K:
    """`load` the PEM key in `path`; a file that cannot be read or is not such a key raises
    `error` naming `label` and the path (an encrypted private key is a TypeError to
    `cryptography`: no password is ever asked for)."""
    try:
        return load(path.read_bytes())
    except OSError as exc:
        raise error(f"{label} {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise error(f"{label} {path}: {exc}") from None


def write_key_pair(prefix: Path) -> tuple[Path, Path]:
    """`PREFIX.key` (private, mode 0600) and `PREFIX.pub`; never overwrites either."""
    private_path, public_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (private_path, public_path):
        if path.exists():
            raise InputError(f"{path} already exists: not overwriting a key")
    private, public = signing.generate_key_pair()
    try:
        _write_new(private_path, private, 0o600)
        _write_new(public_path, public, 0o644)
    except OSError as exc:
        raise InputError(f"--out {prefix}: {exc.strerror or exc}") from None
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def make_checkpoint(
    store: Store, key: Ed25519PrivateKey, now: datetime, checkpoint_dir: Path | None
) -> SignedCheckpoint | None:
    """Sign the chain head, store the checkpoint and append it to `checkpoint_dir`; None when
    the log is still empty (there is no head to sign)."""
    with store.unit_of_work(now) as uow:
        uow.lock()  # the head must not move between reading and signing it
        head = checkpoints.chain_head(uow.session)
        if head is None:
            return None
        _refuse_a_contradicted_chain(uow.session, key, head[0], checkpoint_dir)
        signed = signing.sign(Checkpoint(head[0], head[1], format_at(now)), key)
        checkpoints.save(uow, signed)
    # After the commit: a file line whose row rolled back would still be a true statement
    # about the chain, but a row without its file line is what the files exist to prevent.
    if checkpoint_dir is not None:
        append_to_dir(checkpoint_dir, signed)
    return signed


def _refuse_a_contradicted_chain(
    session: Session, key: Ed25519PrivateKey, head_seq: int, checkpoint_dir: Path | None
) -> None:
    """Signing a head that contradicts an earlier checkpoint would vouch for a cut or rebuilt
    chain: the newest checkpoint this key signed, in the store and in `checkpoint_dir`, must
    still hold. Checkpoints of a key used before a rotation, and a line a crash left half
    written, are not this check's to judge (`audit verify` does, with every public key)."""
    public = key.public_key()
    found = [
        signed
        for signed in (checkpoints.latest_signed(session), _last_in_dir(checkpoint_dir, public))
        if signed is not None and signing.signature_holds(signed, public)
    ]
    hashes = {}
    for signed in found:
        record = audit.record(session, signed.checkpoint.seq)
        if record is not None:
            hashes[signed.checkpoint.seq] = str(record["hash"])
    findings = signing.judge(found, public, hashes, head_seq)
    if findings:
        first = findings[0]
        raise ChainContradicted(
            f"refusing to sign the audit chain: {first.problem} at record {first.seq} "
            f"({first.detail}; {first.source}); run `entrasync audit verify --public-key FILE "
            "--checkpoints DIR` and investigate before anything is signed again"
        )


def _last_in_dir(directory: Path | None, key: Ed25519PublicKey) -> SignedCheckpoint | None:
    """The newest line in the directory that `key` signed."""
    path = directory / CHECKPOINT_FILE if directory is not None else None
    if path is None or not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"audit.checkpoint_dir {path}: {reason}") from None
    lines = text.splitlines()
    for number in range(len(lines), 0, -1):
        signed = signing.parse_line(lines[number - 1], f"{path}:{number}")
        if signed is not None and signing.signature_holds(signed, key):
            return signed
    return None


def checkpoint_if_due(
    store: Store,
    key: Ed25519PrivateKey,
    now: datetime,
    checkpoint_dir: Path | None,
    every: timedelta = CHECKPOINT_EVERY,
) -> SignedCheckpoint | None:
    """The daemon's checkpoint: when records were written since the last one, or it is
    `every` old (a fresh signature on an unchanged head shows the log was not cut meanwhile)."""
    with store.reading() as session:
        head = checkpoints.chain_head(session)
        last = checkpoints.latest(session)
    if head is None:
        return None
    if last is not None and last.seq == head[0] and last.at > format_at(now - every):
        return None
    return make_checkpoint(store, key, now, checkpoint_dir)


def append_to_dir(directory: Path, signed: SignedCheckpoint) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    # A line a crash cut short stays a line of its own (verify names it) instead of swallowing
    # this one.
    cut_short = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        line = json.dumps(signed.as_json(), sort_keys=True) + "\n"
        handle.write(("\n" if cut_short else "") + line)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def read_dir(directory: Path) -> list[SignedCheckpoint]:
    """Every checkpoint line of every `*.jsonl` file in `directory`; a line that is not a
    checkpoint counts as a forged one (it claims to be one and cannot be checked)."""
    if not directory.is_dir():
        raise InputError(f"--checkpoints {directory}: not a directory")
    found = []
    for path in sorted(directory.glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            source = f"{path}:{number}"
            parsed = signing.parse_line(line, source)
            found.append(parsed or SignedCheckpoint(Checkpoint(0, "", ""), "", source))
    return found


@dataclass(frozen=True)
class SignedVerification:
    records: int
    problem: ChainBreak | None
    checkpoints: int
    findings: list[CheckpointFinding]

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.findings


def verify_signed(
    store: Store, key: signing.Keys, checkpoint_dir: Path | None
) -> SignedVerification:
    """The hash chain, then every checkpoint (store and files) against it."""
    extra = read_dir(checkpoint_dir) if checkpoint_dir is not None else []
    with store.reading() as session:
        stored = checkpoints.all_signed(session)
    every = [*stored, *extra]
    wanted = {signed.checkpoint.seq for signed in every}
    hashes: dict[int, str] = {}
    tally = {"records": 0, "last": 0}

    def walked() -> Iterator[dict[str, Any]]:
        with store.reading() as session:
            for record in audit.iter_all(session):
                tally["records"] += 1
                tally["last"] = int(record["seq"])
                if record["seq"] in wanted:
                    hashes[int(record["seq"])] = str(record["hash"])
                yield record

    records = walked()
    problem = verify_chain(records)
    # verify_chain stops at a break: walk the rest so every checkpoint is judged on the chain.
    for _ in records:
        pass
    findings = signing.judge(every, key, hashes, tally["last"])
    return SignedVerification(tally["records"], problem, len(every), findings)
