"""The daemon signs the audit chain's head after a cycle that wrote records, with
`audit.signing_key_file`, and the checkpoints verify with the public key alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from daemonworld import DaemonWorld, wait_for
from testkit import report

from entrasync.config import load_config
from entrasync.domain.reports import parse_reports
from entrasync.services import audit_checkpoint
from entrasync.services.ingest import ingest_reports
from entrasync.store import checkpoints


def test_a_cycle_that_wrote_records_is_checkpointed(sqlite_world: DaemonWorld) -> None:
    world = sqlite_world
    private, public = audit_checkpoint.write_key_pair(world.tmp / "audit")
    anchor = world.tmp / "anchor"
    extra = f'\n[audit]\nsigning_key_file = "{private}"\ncheckpoint_dir = "{anchor}"\n'
    path = world.write_config(extra=extra)
    store = world.store()
    people = [world.tenant.add_user(f"p{i}@contoso.com") for i in range(2)]
    lines = [report(f"CONTOSO\\p{i}", "PC", upn=f"p{i}@contoso.com") for i in range(2)]
    ingest_reports(store, load_config(path), parse_reports(lines), datetime.now(UTC), "test")
    world.tenant.add_members(world.dnt, people)

    daemon = world.start("a")
    daemon.wait_event("cycle finished")
    signed = daemon.wait_event("audit checkpoint signed")
    with store.reading() as session:
        head = checkpoints.chain_head(session)
    assert head is not None
    assert signed["seq"] <= head[0]
    wait_for("the checkpoint file", (anchor / "checkpoints.jsonl").exists)
    written = [
        json.loads(line)
        for line in (anchor / "checkpoints.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert written[0]["seq"] == signed["seq"]
    key = audit_checkpoint.read_public_key(public)
    result = audit_checkpoint.verify_signed(store, key, anchor)
    assert result.ok, result
    assert result.checkpoints >= 2
    store.engine.dispose()
