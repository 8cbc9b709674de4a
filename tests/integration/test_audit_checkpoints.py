"""Signed checkpoints: `audit keygen`, `audit checkpoint` and `audit verify --public-key`
naming truncation, rewrite and a forged checkpoint, on both stores."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from testkit import sql, write_config

from entrasync.domain.audit import GENESIS, AuditEvent, record_hash
from entrasync.errors import ExitCode
from entrasync.services import audit_checkpoint
from entrasync.store.db import Store

DAY = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RECORDS = 6


@pytest.fixture
def keys(cli: Any, tmp_path: Path) -> tuple[Path, Path]:
    result = cli("audit", "keygen", "--out", str(tmp_path / "keys" / "audit"))
    assert result.code == 1  # the folder does not exist: a clear error, not a traceback
    (tmp_path / "keys").mkdir()
    result = cli("audit", "keygen", "--out", str(tmp_path / "keys" / "audit"))
    assert result.code == 0, result.err
    private, public = tmp_path / "keys" / "audit.key", tmp_path / "keys" / "audit.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes()
    assert b"PUBLIC KEY" in public.read_bytes()
    again = cli("audit", "keygen", "--out", str(tmp_path / "keys" / "audit"))
    assert again.code == 1
    assert "already exists" in again.err
    return private, public


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    return tmp_path / "anchor" / "checkpoints"


@pytest.fixture
def signer(
    cli: Any, tmp_path: Path, store_url: str, keys: tuple[Path, Path], checkpoint_dir: Path
) -> Any:
    """`entrasync ARGS…` with a config that signs checkpoints."""
    extra = f'[audit]\nsigning_key_file = "{keys[0]}"\ncheckpoint_dir = "{checkpoint_dir}"\n'
    path = write_config(tmp_path / "signing.toml", store_url, extra)
    return lambda *args: cli("--config", str(path), *args)


@pytest.fixture
def signed_log(store: Store, signer: Any, checkpoint_dir: Path) -> Store:
    """Six records, a checkpoint after the third and one after the sixth."""
    for index in range(RECORDS):
        moment = DAY + timedelta(hours=index)
        with store.unit_of_work(moment, run_id=f"run-{index // 2}") as uow:
            uow.audit(AuditEvent("user.purged", f"delete group, #{index}", user_id=index + 1))
        if index + 1 in {3, RECORDS}:
            result = signer("audit", "checkpoint")
            assert result.code == 0, result.err
            assert f"signed checkpoint: record {index + 1}" in result.out
    assert stat.S_IMODE(checkpoint_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((checkpoint_dir / "checkpoints.jsonl").stat().st_mode) == 0o600
    return store


def verify(es: Any, keys: tuple[Path, Path], checkpoint_dir: Path, *more: str) -> Any:
    return es(
        "audit", "verify", "--public-key", str(keys[1]), "--checkpoints", str(checkpoint_dir), *more
    )


def _findings(result: Any) -> list[tuple[str, int]]:
    return [(f["problem"], f["seq"]) for f in result.json()["findings"]]


@pytest.mark.usefixtures("signed_log")
def test_intact(es: Any, keys: tuple[Path, Path], checkpoint_dir: Path) -> None:
    result = verify(es, keys, checkpoint_dir)
    assert result.code == 0, result.out + result.err
    assert f"{RECORDS} records verified" in result.out
    assert "4 signed checkpoints hold" in result.out  # two in the store, two in the file
    as_json = verify(es, keys, checkpoint_dir, "--json").json()
    assert as_json["ok"] is True
    assert as_json["checkpoints"] == 4
    assert as_json["findings"] == []


@pytest.mark.usefixtures("signed_log")
def test_without_a_key_verify_says_what_it_cannot_detect(es: Any, store_url: str) -> None:
    sql(store_url, "DELETE FROM audit_log WHERE seq > 4")
    result = es("audit", "verify")
    assert result.code == 0  # the chain that is left holds
    assert "4 records verified" in result.out
    assert "not checked without --public-key" in result.out
    assert "truncation" in result.out and "rewrite" in result.out


@pytest.mark.usefixtures("signed_log")
@pytest.mark.parametrize("drop_stored", [False, True])
def test_cut_tail_is_truncation(
    es: Any, store_url: str, keys: tuple[Path, Path], checkpoint_dir: Path, drop_stored: bool
) -> None:
    sql(store_url, "DELETE FROM audit_log WHERE seq > 4")
    if drop_stored:  # the intruder also removes the checkpoints they can reach
        sql(store_url, "DELETE FROM audit_checkpoints")
    result = verify(es, keys, checkpoint_dir)
    assert result.code == int(ExitCode.FAILURE)
    assert "audit chain intact: 4 records verified" in result.out
    assert "TRUNCATION" in result.out
    assert "records 5..6 are missing" in result.out
    found = _findings(verify(es, keys, checkpoint_dir, "--json"))
    expected = [("truncation", RECORDS)] * (1 if drop_stored else 2)
    assert found == expected


def _rewrite_chain(es: Any, store_url: str, seq: int) -> None:
    """Edit record `seq`, then recompute every hash from it on: a chain that verifies."""
    records = [json.loads(line) for line in es("audit", "export").out.splitlines()]
    prev = GENESIS
    for record in records:
        if record["seq"] == seq:
            record["reason"] = "nothing to see here"
        digest = record_hash(record, prev)
        if record["seq"] >= seq:
            sql(
                store_url,
                "UPDATE audit_log SET reason = :r, prev_hash = :p, hash = :h WHERE seq = :s",
                r=record["reason"],
                p=prev,
                h=digest,
                s=record["seq"],
            )
        prev = digest


@pytest.mark.usefixtures("signed_log")
def test_rewritten_chain_is_rewrite(
    es: Any, store_url: str, keys: tuple[Path, Path], checkpoint_dir: Path
) -> None:
    _rewrite_chain(es, store_url, 2)
    assert es("audit", "verify").code == 0  # the chain alone cannot tell
    result = verify(es, keys, checkpoint_dir)
    assert result.code == int(ExitCode.FAILURE)
    assert "REWRITE" in result.out
    assert "record 3 no longer has the hash signed" in result.out
    found = _findings(verify(es, keys, checkpoint_dir, "--json"))
    assert sorted(found) == [("rewrite", 3)] * 2 + [("rewrite", RECORDS)] * 2


@pytest.mark.usefixtures("signed_log")
def test_edited_checkpoint_file_is_forged(
    es: Any, store_url: str, keys: tuple[Path, Path], checkpoint_dir: Path
) -> None:
    path = checkpoint_dir / "checkpoints.jsonl"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    # The intruder cuts the tail, then moves the signed head back to match what is left.
    sql(store_url, "DELETE FROM audit_log WHERE seq > 3")
    sql(store_url, "DELETE FROM audit_checkpoints")
    lines[1]["seq"] = 3
    lines[1]["hash"] = lines[0]["hash"]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    result = verify(es, keys, checkpoint_dir)
    assert result.code == int(ExitCode.FAILURE)
    assert "FORGED CHECKPOINT" in result.out
    assert "signature does not hold" in result.out
    assert _findings(verify(es, keys, checkpoint_dir, "--json")) == [("forged checkpoint", 3)]


@pytest.mark.usefixtures("signed_log")
def test_a_checkpoint_signed_by_another_key_is_forged(
    cli: Any, es: Any, tmp_path: Path, checkpoint_dir: Path
) -> None:
    assert cli("audit", "keygen", "--out", str(tmp_path / "other")).code == 0
    other = (tmp_path / "other.key", tmp_path / "other.pub")
    result = verify(es, other, checkpoint_dir, "--json")
    assert result.code == int(ExitCode.FAILURE)
    assert {problem for problem, _ in _findings(result)} == {"forged checkpoint"}


def test_checkpoint_needs_a_key_and_a_head(es: Any, signer: Any, checkpoint_dir: Path) -> None:
    missing = es("audit", "checkpoint")
    assert missing.code == int(ExitCode.CONFIG)
    assert "audit.signing_key_file is not set" in missing.err
    empty = signer("audit", "checkpoint")
    assert empty.code == 0, empty.err
    assert "audit log is empty" in empty.out
    assert not checkpoint_dir.exists()


def test_verify_with_a_key_and_no_checkpoints_says_so(
    es: Any, store: Store, keys: tuple[Path, Path]
) -> None:
    with store.unit_of_work(DAY) as uow:
        uow.audit(AuditEvent("user.purged", "x", user_id=1))
    result = es("audit", "verify", "--public-key", str(keys[1]))
    assert result.code == 0, result.err
    assert "no signed checkpoints found" in result.out


def test_the_daemon_signs_when_the_head_moved_or_hourly(
    store: Store, keys: tuple[Path, Path], checkpoint_dir: Path
) -> None:
    key = audit_checkpoint.read_private_key(keys[0])

    def due(moment: datetime) -> int | None:
        signed = audit_checkpoint.checkpoint_if_due(store, key, moment, checkpoint_dir)
        return signed.checkpoint.seq if signed else None

    assert due(DAY) is None  # an empty log has no head
    with store.unit_of_work(DAY) as uow:
        uow.audit(AuditEvent("user.purged", "x", user_id=1))
    assert due(DAY) == 1
    assert due(DAY + timedelta(minutes=30)) is None  # nothing written, not an hour old
    with store.unit_of_work(DAY) as uow:
        uow.audit(AuditEvent("user.purged", "y", user_id=2))
    assert due(DAY + timedelta(minutes=31)) == 2  # a cycle wrote records
    assert due(DAY + timedelta(minutes=50)) is None
    assert due(DAY + timedelta(minutes=92)) == 2  # an hour since the last one
    lines = (checkpoint_dir / "checkpoints.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 2]


@pytest.mark.usefixtures("signed_log")
@pytest.mark.parametrize("drop_stored", [False, True])
def test_no_checkpoint_is_signed_over_a_cut_or_rebuilt_chain(
    es: Any,
    signer: Any,
    store_url: str,
    keys: tuple[Path, Path],
    checkpoint_dir: Path,
    drop_stored: bool,
) -> None:
    """Signing the head of a cut chain would vouch for it: `audit checkpoint` (and the daemon)
    refuse while the newest checkpoint (in the store, or the file when the store's are gone)
    no longer holds."""
    sql(store_url, "DELETE FROM audit_log WHERE seq > 4")
    if drop_stored:
        sql(store_url, "DELETE FROM audit_checkpoints")
    before = (checkpoint_dir / "checkpoints.jsonl").read_text(encoding="utf-8")
    result = signer("audit", "checkpoint")
    assert result.code == int(ExitCode.FAILURE)
    assert "refusing to sign the audit chain: truncation at record 6" in result.err
    assert "entrasync audit verify --public-key" in result.err
    assert (checkpoint_dir / "checkpoints.jsonl").read_text(encoding="utf-8") == before
    _rewrite_chain(es, store_url, 2)
    rewritten = signer("audit", "checkpoint")
    assert rewritten.code == int(ExitCode.FAILURE)
    assert "refusing to sign the audit chain:" in rewritten.err
    found = _findings(verify(es, keys, checkpoint_dir, "--json"))
    assert ("rewrite", 3) in found  # the signed head of record 3 no longer matches


@pytest.mark.usefixtures("signed_log")
def test_a_key_rotation_and_a_line_cut_short_do_not_stop_signing(
    cli: Any,
    es: Any,
    tmp_path: Path,
    store_url: str,
    keys: tuple[Path, Path],
    checkpoint_dir: Path,
) -> None:
    """The admin rotates the signing key, and a crash once left half a line in the file:
    signing goes on with the new key, and `verify` with both public keys holds, naming only the
    half line (which is what it is: not a checkpoint)."""
    (tmp_path / "keys2").mkdir()
    assert cli("audit", "keygen", "--out", str(tmp_path / "keys2" / "audit")).code == 0
    new_private, new_public = tmp_path / "keys2" / "audit.key", tmp_path / "keys2" / "audit.pub"
    anchor = checkpoint_dir / "checkpoints.jsonl"
    with anchor.open("a", encoding="utf-8") as handle:
        handle.write('{"seq": 6, "hash": "ab')  # no newline: the write a crash cut short
    extra = f'[audit]\nsigning_key_file = "{new_private}"\ncheckpoint_dir = "{checkpoint_dir}"\n'
    path = write_config(tmp_path / "rotated.toml", store_url, extra)
    signed = cli("--config", str(path), "audit", "checkpoint")
    assert signed.code == 0, signed.err
    assert f"signed checkpoint: record {RECORDS}" in signed.out
    assert anchor.read_text(encoding="utf-8").splitlines()[-1].startswith('{"at"')

    both = ("--public-key", str(keys[1]), "--public-key", str(new_public))
    result = es("audit", "verify", *both, "--checkpoints", str(checkpoint_dir), "--json")
    assert result.json()["checkpoints"] == 7  # three in the store, four lines in the file
    findings = result.json()["findings"]
    assert [(f["problem"], f["detail"]) for f in findings] == [
        ("forged checkpoint", "not a checkpoint: a line cut short by a crash, or edited")
    ]
    only_new = verify(es, (keys[0], new_public), checkpoint_dir, "--json").json()["findings"]
    assert {f["problem"] for f in only_new} == {"forged checkpoint"}  # the old key's, unknown
    assert len(only_new) == 5  # two in the store, two in the file, and the half line
