"""SIGKILL a real `entrasync sync` process at many points of a cycle, restart it, and check
that the store ends exactly as after an uninterrupted cycle, with no audit record duplicated
or missing and the chain intact."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from syncworld import SECRET, World, make_world, report

from entrasync.services.audit_review import verify
from entrasync.services.users import list_users
from entrasync.store.db import Store
from entrasync.store.schema import AuditRow

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
CRASHES = [
    "mirror-read:1",
    "mid-action:1",
    "between-actions:1",
    "mid-action:3",
    "between-actions:4",
    "mid-action:6",
    "between-actions:8",
    "confirmed:1",  # Graph confirmed the purges; nothing purged yet
]


def _populate(world: World) -> list[str]:
    t = world.tenant
    dnt = [
        t.add_user(f"d{i}@contoso.com", id=f"00000000-0000-4000-8000-00000000000{i}")
        for i in range(3)
    ]
    dele = [
        t.add_user(f"x{i}@contoso.com", id=f"00000000-0000-4000-8000-00000000001{i}")
        for i in range(2)
    ]
    t.add_user("ghost@contoso.com", id="00000000-0000-4000-8000-000000000020")
    moved = [
        t.add_user(
            f"m{i}@newco.com",
            id=f"00000000-0000-4000-8000-00000000003{i}",
            proxy_addresses=[f"SMTP:m{i}@newco.com", f"smtp:m{i}@oldco.com"],
        )
        for i in range(2)
    ]
    t.add_members(world.dnt, dnt)
    t.add_members(world.delete, [*dele, "00000000-0000-4000-8000-000000000020"])
    return [*dnt, *dele, *moved]


def _sync(config: Path, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENTRASYNC_CLIENT_SECRET": SECRET}
    env.pop("ENTRASYNC_CRASH_AT", None)
    if crash:
        env["ENTRASYNC_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, "-m", "entrasync", "--config", str(config), "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _snapshot(store: Store) -> tuple[Any, Any]:
    users = sorted(
        (
            tuple(sorted(i["value"] for i in u["identifiers"])),
            u["tracking"],
            u["agents"],
            u["activity_rows"],
            u["licenses"],
        )
        for u in list_users(store)
    )
    with store.reading() as s:
        records = Counter(
            (action, user_id is not None)
            for action, user_id in s.execute(select(AuditRow.action, AuditRow.user_id))
        )
    return users, records


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_anywhere_in_a_cycle_then_restart_converges(
    tmp_path: Path, make_store_url: Any, backend: str
) -> None:
    results = {}
    for case in [None, *CRASHES]:
        url = make_store_url(backend)
        Store(url, check_schema=False).upgrade()
        case_dir = tmp_path / (case or "reference").replace(":", "-")
        case_dir.mkdir()
        for world in make_world(case_dir, url):
            world.config_path.write_text(
                world.config_path.read_text().replace('purge_delay = "24h"', 'purge_delay = "0s"')
            )
            _populate(world)
            world.ingest(*_lines())
            if case is not None:
                crashed = _sync(world.config_path, case)
                assert crashed.returncode == -9, (case, crashed.stdout, crashed.stderr)
            finished = _sync(world.config_path)
            assert finished.returncode == 0, (case, finished.stdout, finished.stderr)
            again = _sync(world.config_path)  # a further cycle finds nothing left to do
            assert again.returncode == 0 and "0 actions" in again.stdout, again.stdout
            assert verify(world.store).problem is None
            results[case] = _snapshot(world.store)
    reference = results.pop(None)
    assert reference[1]["user.purged", True] == 2 and reference[1]["user.merged", True] == 2
    for case, snapshot in results.items():
        assert snapshot == reference, case


def _lines() -> list[str]:
    lines = [report(f"CONTOSO\\d{i}", "PC", upn=f"d{i}@contoso.com") for i in range(3)]
    lines += [report(f"CONTOSO\\x{i}", "PC", upn=f"x{i}@contoso.com", events=3) for i in range(2)]
    lines += [report(f"OLDCO\\m{i}", "PC", upn=f"m{i}@oldco.com") for i in range(2)]
    lines += [report(f"NEWCO\\m{i}", "PC", upn=f"m{i}@newco.com") for i in range(2)]
    return lines
