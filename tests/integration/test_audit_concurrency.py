"""Two OS processes writing the audit log at once never fork the chain (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import multiprocessing
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from testkit import report, write_config

from entrasync.domain.audit import GENESIS, AuditEvent, verify_chain
from entrasync.store import audit
from entrasync.store.db import Store

ITERATIONS = 60

# Each worker waits for the start signal, then alternates a raw append (one transaction, two
# records) with an audited admin action (untrack / track of its own user).
WORKER = r"""
import random, sys, time
from datetime import UTC, datetime
from pathlib import Path
from entrasync.config import load_config
from entrasync.domain.audit import AuditEvent
from entrasync.services import users
from entrasync.store import audit
from entrasync.store.db import Store

config_path, name, ident, iterations, go = sys.argv[1:6]
config = load_config(Path(config_path))
store = Store(config.store.url)
store.schema_versions()  # connected
Path(go + "." + name).touch()
deadline = time.monotonic() + 30
while not Path(go).exists():
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.005)
for i in range(int(iterations)):
    now = datetime.now(UTC)
    if i % 2 == 0:
        with store.unit_of_work(now, actor=f"admin:{name}", run_id=name) as uow:
            uow.audit(
                AuditEvent("merge.skipped", f"{name} {i} a"), AuditEvent("merge.skipped", f"{name} {i} b")
            )
    else:
        action = users.untrack if i % 4 == 1 else users.track
        action(store, config, ident, actor=f"admin:{name}", now=now, dry_run=False)
    time.sleep(random.random() * 0.01)  # other work between writes, as a real writer has
store.engine.dispose()
"""


def _records(store: Store) -> list[dict[str, Any]]:
    with store.reading() as session:
        return list(audit.iter_all(session))


def test_two_processes_never_fork_the_chain(
    store: Store, config_path: Path, ingest: Any, es: Any, tmp_path: Path
) -> None:
    ingest(report("C\\alice", "PC", upn="alice@c.com"), report("C\\bob", "PC", upn="bob@c.com"))
    es("status")  # settle the account row and its audit record before the race
    before = len(_records(store))
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(config_path), name, ident, str(ITERATIONS), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, ident in (("w1", "alice@c.com"), ("w2", "bob@c.com"))
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"go.{name}").exists() for name in ("w1", "w2")):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(w.poll() is None for w in workers), workers[0].stderr
        time.sleep(0.01)
    go.touch()  # both are connected: start together
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err

    records = _records(store)
    per_worker = ITERATIONS // 2 * 2 + ITERATIONS // 2  # raw appends write two records
    assert len(records) == before + 2 * per_worker
    assert verify_chain(records) is None
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert len({r["prev_hash"] for r in records}) == len(records)
    for name in ("w1", "w2"):
        mine = [r for r in records if r["actor"] == f"admin:{name}"]
        assert len(mine) == per_worker
        assert sorted(r["reason"] for r in mine if r["action"] == "merge.skipped") == sorted(
            f"{name} {i} {part}" for i in range(0, ITERATIONS, 2) for part in "ab"
        )
    # The two writers really interleaved (otherwise the test proves nothing).
    actors = [r["actor"] for r in records[before:]]
    switches = sum(1 for a, b in itertools.pairwise(actors) if a != b)
    assert switches >= 2
    result = es("audit", "verify")
    assert result.code == 0
    assert f"{len(records)} records verified" in result.out


def test_a_forked_record_is_rejected_by_the_store(store: Store) -> None:
    """A fork is a second record on the same predecessor. A writer takes `seq` and
    `prev_hash` from one read of the head, so the fork's `seq` is taken: the primary key
    rejects it (prev_hash has no unique index since migration 0013)."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    with store.unit_of_work(now, actor="t") as uow:
        uow.audit(AuditEvent("merge.skipped", "one"))
    # A second writer that read the same (empty) head, as `Chain` builds its record.
    stale = audit.Chain(0, GENESIS, "t", "x", None)
    (fork,) = stale.records([AuditEvent("merge.skipped", "fork")])
    assert (fork.seq, fork.field("prev_hash")) == (1, GENESIS)
    with pytest.raises(IntegrityError), store.transaction() as session:
        audit.insert_records(session, [fork])
    assert [r["reason"] for r in _records(store)] == ["one"]


def _upgrade_at_barrier(config: str, barrier: Any) -> None:
    import contextlib
    import io

    from entrasync.cli import main

    barrier.wait(timeout=60)
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--config", config, "db", "upgrade"])
    if code != 0:
        raise SystemExit(f"db upgrade exited {code}")


def test_first_commands_on_a_fresh_store_race_safely(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    # Four processes run `entrasync db upgrade` (a writer: it applies [account]) at the same
    # instant on a store without an account row yet: one creates it and audits the settings,
    # the others wait and find it. (`status` only reads: it would create nothing.)
    config = write_config(tmp_path / "race.toml", store_url, "[account]\npurchased_licenses = 7\n")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    processes = [
        context.Process(target=_upgrade_at_barrier, args=(str(config), barrier)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    changes = [r for r in _records(store) if r["action"] == "account.settings_changed"]
    assert len(changes) == 1
    assert changes[0]["details"]["purchased_licenses"]["after"] == 7
    assert verify_chain(_records(store)) is None


def test_readers_do_not_wait_for_a_writer(store: Store, store_url: str) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    with store.unit_of_work(now, actor="t") as uow:
        uow.audit(AuditEvent("merge.skipped", "one"))
    other = Store(store_url)
    try:
        with store.unit_of_work(now, actor="t") as uow:  # a writer holds the lock, uncommitted
            uow.audit(AuditEvent("merge.skipped", "two"))
            started = time.monotonic()
            with other.reading() as reader:
                seen = [r["reason"] for r in audit.iter_all(reader)]
            assert time.monotonic() - started < 5
            assert seen == ["one"]  # the committed snapshot only
    finally:
        other.engine.dispose()
    assert [r["reason"] for r in _records(store)] == ["one", "two"]
