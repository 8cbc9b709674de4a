"""Erasure receipts (`audit receipt`, `audit verify-receipt`), end to end: the CLI against the
Graph emulator on both stores. People are purged the ways the audit log records it (a Delete
group purge after the delay, an admin's `users purge`, twice over, after a UPN merge); each
story asserts the receipt, the store, the audit log and the exit code.

Time passing (the purge delay) is simulated as in tests/scenarios: the store's clocks move
back (the membership's `first_seen_at`, the scheduled purge's due time)."""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from testkit import dump_store, report, sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sync"))

from syncworld import SECRET, World, make_world

from entrasync.errors import ExitCode
from entrasync.store.db import Store
from entrasync.store.schema import ScheduledPurgeRow, WatchedMemberRow

_files = itertools.count()
ANN = "ann@contoso.com"


@pytest.fixture
def world(tmp_path: Path, store_url: str) -> Iterator[World]:
    yield from make_world(tmp_path, store_url)


@pytest.fixture
def run(cli: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`entrasync --config <the world's config> ARGS…`, with the client secret in the env."""
    monkeypatch.setenv("ENTRASYNC_CLIENT_SECRET", SECRET)
    return lambda *args: cli("--config", str(world.config_path), *args)


@pytest.fixture
def keys(cli: Any, tmp_path: Path) -> tuple[Path, Path]:
    result = cli("audit", "keygen", "--out", str(tmp_path / "audit"))
    assert result.code == 0, result.err
    return tmp_path / "audit.key", tmp_path / "audit.pub"


def ingest(run: Any, world: World, *lines: str) -> None:
    path = world.config_path.parent / f"reports-{next(_files)}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run("ingest", str(path))
    assert result.code == 0, result.err


def synced(run: Any) -> None:
    result = run("sync")
    assert result.code == 0, result.out + result.err


def time_passes(world: World, hours: float) -> None:
    """Move the store's clocks `hours` into the past (as if that much time went by)."""
    shift = timedelta(hours=hours)
    with world.store.transaction() as s:
        for member in s.scalars(select(WatchedMemberRow)):
            member.first_seen_at -= shift
        for purge in s.scalars(select(ScheduledPurgeRow)):
            purge.due_at -= shift


def delete_group_purge(run: Any, world: World, object_id: str) -> None:
    """The person joins the Delete group; a cycle schedules the purge; after the delay the
    next cycle purges them."""
    world.tenant.add_member(world.delete, object_id)
    synced(run)
    time_passes(world, 48)
    synced(run)


def receipt(run: Any, ident: str) -> dict[str, Any]:
    result = run("audit", "receipt", ident, "--json")
    assert result.code == 0, result.err
    document: dict[str, Any] = result.json()
    return document


def records(run: Any, action: str) -> list[dict[str, Any]]:
    result = run("audit", "list", "--action", action, "--json")
    assert result.code == 0, result.err
    found: list[dict[str, Any]] = result.json()
    return found


def rows(run: Any, ident: str) -> int:
    view = run("users", "show", ident, "--json").json()
    return sum(a["activity_rows"] for a in view["agents"])


def verified(run: Any) -> None:
    result = run("audit", "verify")
    assert result.code == 0, result.out + result.err


def test_receipt_after_a_delete_group_purge(
    run: Any, world: World, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = world.tenant.add_user(ANN, display_name="Ann Example", employee_id="E-17")
    ingest(run, world, report("CONTOSO\\ann", "PC1", upn=ANN, events=4))
    ingest(run, world, report("CONTOSO\\ann", "PC2", upn=ANN, events=2))
    assert rows(run, ANN) == 6
    delete_group_purge(run, world, ann)
    (purged,) = records(run, "user.purged")
    assert rows(run, ANN) == 0
    before = dump_store(store_url)

    document = receipt(run, "CONTOSO\\ann")
    assert document["signature"] is None  # no signing key configured
    body = document["receipt"]
    assert body["kind"] == "entrasync.erasure-receipt"
    assert body["subject"]["display_name"] == "Ann Example"
    assert body["subject"]["entra_object_id"] == ann
    assert body["remaining"] == {"activity_rows": 0, "agents": 0}
    (erasure,) = body["erasures"]
    assert erasure["cause"] == "delete_group"
    assert erasure["group"] == {"id": world.delete, "name": "Delete"}
    assert erasure["since"].endswith("Z")
    assert (erasure["rows_purged"], erasure["agents_removed"], erasure["licenses_freed"]) == (
        6,
        1,
        1,
    )
    shown = run("audit", "show", str(erasure["seq"]), "--json").json()
    assert (erasure["seq"], erasure["hash"]) == (purged["seq"], purged["hash"])
    assert (shown["hash"], shown["run_id"], shown["action"]) == (
        erasure["hash"],
        erasure["run_id"],
        "user.purged",
    )
    assert {"kind": "upn", "value": ANN} in erasure["identifiers"]

    monkeypatch.setenv("COLUMNS", "200")  # the receipt keeps to 80 columns on any terminal
    text = run("audit", "receipt", ANN)
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert all(len(line) <= 80 for line in lines), [x for x in lines if len(x) > 80]
    assert "Erasure 1 of 1: Delete group purge" in lines
    assert f"  group         Delete ({world.delete})" in lines
    assert "  removed       6 activity rows, 1 agent; 1 license freed" in lines
    assert f"  record hash   {purged['hash']}" in lines
    assert f"  audit record  {purged['seq']} (entrasync audit show {purged['seq']})" in lines
    assert "  activity rows 0 (none of this person's history remains)" in lines
    assert "Unsigned: audit.signing_key_file is not set." in text.out
    assert dump_store(store_url) == before  # a receipt only reads
    verified(run)


def test_receipt_after_an_admin_purge(run: Any, world: World) -> None:
    ingest(run, world, report("CONTOSO\\bob", "PC", upn="bob@contoso.com", events=3))
    purged = run("users", "purge", "bob@contoso.com", "--yes", "--actor", "dpo")
    assert purged.code == 0, purged.err
    (record,) = records(run, "user.purged")
    assert record["actor"] == "admin:dpo"
    body = receipt(run, "bob@contoso.com")["receipt"]
    (erasure,) = body["erasures"]
    assert erasure["cause"] == "admin_purge"
    assert (erasure["actor"], erasure["seq"], erasure["hash"]) == (
        "admin:dpo",
        record["seq"],
        record["hash"],
    )
    assert erasure["group"] is None and erasure["since"] is None
    assert erasure["reason"] == "purged by an administrator"
    assert erasure["rows_purged"] == 3
    assert body["subject"]["entra_object_id"] is None  # never linked to Entra
    assert body["remaining"]["activity_rows"] == 0 == rows(run, "bob@contoso.com")
    text = run("audit", "receipt", "bob@contoso.com").out
    assert "Erasure 1 of 1: purged by an administrator" in text
    assert "  by            admin:dpo" in text


def test_a_person_purged_twice_gets_both_erasures(run: Any, world: World) -> None:
    """Purged by the Delete group, taken out of it and tracked again by an admin, reporting
    again, then purged by an admin: both purges, in order, and nothing left."""
    ann = world.tenant.add_user(ANN)
    ingest(run, world, report("CONTOSO\\ann", "PC", upn=ANN, events=2))
    delete_group_purge(run, world, ann)
    world.tenant.remove_member(world.delete, ann)
    synced(run)
    assert run("users", "track", ANN, "--actor", "hr").code == 0
    ingest(
        run, world, report("CONTOSO\\ann", "PC", upn=ANN, events=5, start="2026-07-01T09:00:00Z")
    )
    assert rows(run, ANN) == 5
    mid = receipt(run, ANN)["receipt"]
    assert len(mid["erasures"]) == 1
    assert mid["remaining"] == {"activity_rows": 5, "agents": 1}  # live: collected since
    assert "5 (held now: see `entrasync users show`)" in run("audit", "receipt", ANN).out

    assert run("users", "purge", ANN, "--yes", "--actor", "dpo").code == 0
    purges = records(run, "user.purged")
    body = receipt(run, ANN)["receipt"]
    assert [e["seq"] for e in body["erasures"]] == [r["seq"] for r in purges]
    assert [e["cause"] for e in body["erasures"]] == ["delete_group", "admin_purge"]
    assert [e["rows_purged"] for e in body["erasures"]] == [2, 5]
    assert body["remaining"] == {"activity_rows": 0, "agents": 0}
    text = run("audit", "receipt", ANN).out
    assert "Erasure 1 of 2: Delete group purge" in text
    assert "Erasure 2 of 2: purged by an administrator" in text
    verified(run)


def test_receipt_by_an_old_identifier_after_a_upn_merge(run: Any, world: World) -> None:
    """Renamed in Entra, reporting under the new UPN and logon: a second record, merged into
    the first; then purged. Every identifier the person ever had finds the receipt, the
    merged-away record's store id included."""
    t = world.tenant
    ann = t.add_user("ann@oldco.com", display_name="Ann Old")
    ingest(run, world, report("OLDCO\\ann", "PC", upn="ann@oldco.com", events=2))
    synced(run)
    t.rename_upn(ann, "ann@newco.com")
    later = "2026-07-01T09:00:00Z"
    ingest(run, world, report("NEWCO\\ann", "PC", upn="ann@newco.com", events=3, start=later))
    synced(run)
    (merged,) = records(run, "user.merged")
    source, survivor = merged["user_id"], merged["details"]["target_user_id"]
    assert run("users", "show", "ann@oldco.com", "--json").json()["id"] == survivor
    delete_group_purge(run, world, ann)
    (purged,) = records(run, "user.purged")
    assert purged["user_id"] == survivor

    idents = ("ann@oldco.com", "OLDCO\\ann", "NEWCO\\ann", f"id:{source}", "ann@newco.com", ann)
    bodies = [receipt(run, ident)["receipt"] for ident in idents]
    for body in bodies:
        (erasure,) = body["erasures"]
        assert (erasure["seq"], erasure["hash"]) == (purged["seq"], purged["hash"])
        assert erasure["rows_purged"] == 5  # both records' history, merged before the purge
        assert sorted(body["subject"]["user_ids"]) == sorted([source, survivor])
        assert body["subject"]["entra_object_id"] == ann
        assert body["remaining"]["activity_rows"] == 0
    kept = {i["value"] for i in bodies[0]["subject"]["identifiers"]}
    assert {"ann@oldco.com", "ann@newco.com", "oldco\\ann", "newco\\ann"} <= kept
    verified(run)


@pytest.fixture
def signing(world: World, keys: tuple[Path, Path]) -> tuple[Path, Path]:
    world.configure(f'[audit]\nsigning_key_file = "{keys[0]}"\n')
    return keys


def _purged_ann(run: Any, world: World) -> None:
    ann = world.tenant.add_user(ANN, display_name="Ann Ëxample")  # not ASCII: UTF-8 signed
    ingest(run, world, report("CONTOSO\\ann", "PC", upn=ANN, events=2))
    delete_group_purge(run, world, ann)


def _save(run: Any, path: Path, *args: str) -> Path:
    result = run("audit", "receipt", ANN, *args)
    assert result.code == 0, result.err
    path.write_text(result.out, encoding="utf-8")
    return path


def test_a_signed_receipt_verifies_with_the_public_key_alone(
    run: Any,
    world: World,
    signing: tuple[Path, Path],
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _purged_ann(run, world)
    path = _save(run, tmp_path / "receipt.json", "--json")
    document = json.loads(path.read_text(encoding="utf-8"))
    signature = document["signature"]
    assert signature["algorithm"] == "Ed25519"
    assert signature["key_id"].startswith("sha256:") and len(signature["key_id"]) == 71
    text = run("audit", "receipt", ANN).out
    assert f"  {signature['key_id']}" in text.splitlines()

    # Another machine: no config, no store; only the receipt and the public key.
    monkeypatch.setenv("ENTRASYNC_CONFIG", str(tmp_path / "no-such-config.toml"))
    checked = cli("audit", "verify-receipt", str(path), "--public-key", str(signing[1]))
    assert checked.code == 0, checked.out + checked.err
    assert checked.out.startswith("receipt verified: signature holds")
    as_json = cli("audit", "verify-receipt", str(path), "--public-key", str(signing[1]), "--json")
    assert as_json.code == 0
    assert as_json.json()["ok"] is True
    assert as_json.json()["key_id"] == signature["key_id"]

    # With the store at hand, the receipted records are still in the chain.
    in_store = run(
        "audit", "verify-receipt", str(path), "--public-key", str(signing[1]), "--in-store"
    )
    assert in_store.code == 0, in_store.out + in_store.err
    assert "its 1 audit records are in the store's log" in in_store.out


def _check(cli: Any, path: Path, public: Path) -> tuple[Any, Any]:
    text = cli("audit", "verify-receipt", str(path), "--public-key", str(public))
    as_json = cli("audit", "verify-receipt", str(path), "--public-key", str(public), "--json")
    return text, as_json


def _fails(cli: Any, path: Path, public: Path, problem: str) -> str:
    text, as_json = _check(cli, path, public)
    assert text.code == int(ExitCode.FAILURE), text.out + text.err
    assert as_json.code == int(ExitCode.FAILURE)
    assert text.out.startswith(f"RECEIPT {problem.upper()}: "), text.out
    assert "Traceback" not in text.out + text.err
    assert as_json.json()["ok"] is False
    assert as_json.json()["problem"] == problem
    return str(text.out)


def test_tampered_wrong_key_unsigned_and_not_a_receipt_are_named(
    run: Any, world: World, signing: tuple[Path, Path], cli: Any, tmp_path: Path
) -> None:
    _purged_ann(run, world)
    public = signing[1]
    good = _save(run, tmp_path / "receipt.json", "--json")
    document = json.loads(good.read_text(encoding="utf-8"))

    tampered = json.loads(json.dumps(document))
    tampered["receipt"]["erasures"][0]["rows_purged"] = 1
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(tampered, indent=2), encoding="utf-8")
    assert "changed after signing" in _fails(cli, path, public, "tampered")
    tampered["receipt"]["erasures"][0]["rows_purged"] = 2  # back as it was: holds again
    path.write_text(json.dumps(tampered), encoding="utf-8")
    assert _check(cli, path, public)[0].code == 0

    assert cli("audit", "keygen", "--out", str(tmp_path / "other")).code == 0
    wrong = _fails(cli, good, tmp_path / "other.pub", "wrong key")
    assert document["signature"]["key_id"] in wrong

    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps({**document, "signature": None}), encoding="utf-8")
    assert "carries no signature" in _fails(cli, unsigned, public, "unsigned")

    text_form = _save(run, tmp_path / "receipt.txt")
    assert "not the text form" in _fails(cli, text_form, public, "not a receipt")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"seq": 1, "hash": "x"}), encoding="utf-8")
    _fails(cli, other, public, "not a receipt")
    missing = cli(
        "audit", "verify-receipt", str(tmp_path / "nope.json"), "--public-key", str(public)
    )
    assert missing.code == int(ExitCode.FAILURE)
    assert "nope.json" in missing.err and "Traceback" not in missing.err
    no_key = cli("audit", "verify-receipt", str(good))
    assert no_key.code == int(ExitCode.USAGE)


def test_a_receipt_whose_record_left_the_chain_fails_in_store(
    run: Any, world: World, signing: tuple[Path, Path], store_url: str, tmp_path: Path
) -> None:
    _purged_ann(run, world)
    path = _save(run, tmp_path / "receipt.json", "--json")
    seq = json.loads(path.read_text(encoding="utf-8"))["receipt"]["erasures"][0]["seq"]
    sql(store_url, "UPDATE audit_log SET hash = :h WHERE seq = :s", h="0" * 64, s=seq)
    args = ("audit", "verify-receipt", str(path), "--public-key", str(signing[1]))
    assert run(*args).code == 0  # the signature alone still holds
    result = run(*args, "--in-store")
    assert result.code == int(ExitCode.FAILURE)
    assert result.out.startswith(f"RECEIPT NOT IN CHAIN: record {seq} has hash")
    assert run("audit", "verify").code == int(ExitCode.FAILURE)


def test_no_purge_on_record_and_unknown_person_are_named_errors(
    run: Any, world: World, store_url: str
) -> None:
    ingest(
        run,
        world,
        report("CONTOSO\\carl", "PC", upn="carl@contoso.com", events=2),
        report("CONTOSO\\dora", "PC", upn="dora@contoso.com", employee_id="1"),
    )
    before = dump_store(store_url)
    unknown = run("audit", "receipt", "nobody@contoso.com")
    assert unknown.code == int(ExitCode.FAILURE)
    assert "no user matches 'nobody@contoso.com'" in unknown.err
    kept = run("audit", "receipt", "carl@contoso.com", "--json")
    assert kept.code == int(ExitCode.FAILURE)
    assert kept.out == ""  # no receipt
    assert "no erasure on record for 'carl@contoso.com'" in kept.err
    carl = run("users", "show", "carl@contoso.com", "--json").json()["id"]
    # Dora's employee id "1" is also carl's store id (1): say which one is meant.
    assert carl == 1
    both = run("audit", "receipt", "1")
    assert both.code == int(ExitCode.FAILURE)
    assert "names more than one person" in both.err
    assert "no erasure on record" in run("audit", "receipt", "id:1").err
    assert "Traceback" not in unknown.err + kept.err + both.err
    assert dump_store(store_url) == before
    assert records(run, "user.purged") == []


# --- a read-only SQLite store ------------------------------------------------------------------


@pytest.fixture
def sqlite_world(cli: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, World, Any]]:
    top = Path(tempfile.mkdtemp(prefix="entrasync-receipt-"))
    data = top / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'store.db'}"
    store = Store(url, check_schema=False)
    store.upgrade()
    store.engine.dispose()
    monkeypatch.setenv("ENTRASYNC_CLIENT_SECRET", SECRET)
    worlds = make_world(top, url)
    world = next(worlds)
    try:
        yield data, world, lambda *args: cli("--config", str(world.config_path), *args)
    finally:
        data.chmod(0o755)
        for path in data.iterdir():
            path.chmod(0o644)
        next(worlds, None)
        shutil.rmtree(top)


def test_receipt_on_a_read_only_sqlite_store(sqlite_world: tuple[Path, World, Any]) -> None:
    data, world, run = sqlite_world
    _purged_ann(run, world)
    expected = receipt(run, ANN)
    text = run("audit", "receipt", ANN)
    world.store.engine.dispose()
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    (data / "store.db").chmod(0o444)
    data.chmod(0o555)

    again = receipt(run, ANN)
    for document in (expected, again):
        document["receipt"].pop("issued_at")
    assert again == expected

    def stable(out: str) -> list[str]:  # the issue and count times move with the clock
        return [line for line in out.splitlines()[3:] if not line.startswith("Now (counted")]

    assert stable(run("audit", "receipt", ANN).out) == stable(text.out)
    assert {p.name: p.read_bytes() for p in data.iterdir()}["store.db"] == before["store.db"]
    assert not [p.name for p in data.iterdir() if p.name.endswith("-journal")]
