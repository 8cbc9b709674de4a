"""Ingestion is idempotent (DESIGN.md): an event (agent, device, start, duration, app, title) is
stored once however often it is ingested — a repeated file, a re-run after an interrupted
ingest, the same event twice in one file, or two agents holding it that are merged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from testkit import BACKENDS, report, sql, write_config

from entrasync.store.db import Store


def _rows(url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT id, agent_id, device, start, duration_s, app, title "
                        "FROM activity ORDER BY id"
                    )
                )
            ]
    finally:
        engine.dispose()


def _count(url: str) -> int:
    return len(_rows(url))


def _event(start: str, duration: int = 60, title: str | None = "Book.xlsx", **more: Any) -> Any:
    event: dict[str, Any] = {"start": start, "duration_s": duration, "app": "excel.exe", **more}
    if title is not None:
        event["title"] = title
    return event


def _line(logon: str, device: str, *events: Any, **ids: str) -> str:
    return json.dumps({"device": device, "logon": logon, **ids, "events": list(events)})


def test_the_same_file_twice_is_stored_once(ingest: Any, es: Any, store_url: str) -> None:
    lines = [
        report("CONTOSO\\jdoe", "PC-1", upn="jdoe@contoso.com", events=3),
        report("CONTOSO\\amy", "PC-2", upn="amy@contoso.com", events=2),
    ]
    first = ingest(*lines).json()
    assert (first["rows_stored"], first["rows_already_stored"]) == (5, 0)
    rows = _rows(store_url)
    second = ingest(*lines).json()
    assert (second["rows_stored"], second["rows_already_stored"]) == (0, 5)
    assert (second["users_created"], second["agents_created"]) == (0, 0)
    assert _rows(store_url) == rows
    assert es("status", "--json").json()["licenses"]["used"] == 2
    audit = es("audit", "list", "--action", "ingest.completed", "--json").json()
    assert [r["details"]["rows_already_stored"] for r in audit] == [0, 5]


def test_the_same_event_twice_in_one_file_is_stored_once(ingest: Any, store_url: str) -> None:
    twice = _event("2026-06-01T09:00:00Z")
    same_instant = _event("2026-06-01T11:00:00+02:00")  # the same moment, another offset
    other_title = _event("2026-06-01T09:00:00Z", title="Other.xlsx")
    result = ingest(
        _line("CONTOSO\\jdoe", "PC-1", twice, twice, same_instant, other_title),
        _line("CONTOSO\\jdoe", "PC-1", twice),
        _line("CONTOSO\\jdoe", "PC-2", twice),  # another device: another event
    ).json()
    assert result["rows_stored"] == 3
    assert result["rows_already_stored"] == 3
    assert _count(store_url) == 3


def test_an_event_without_title_is_one_identity(ingest: Any, store_url: str) -> None:
    """A missing title and an empty one are the same event (the unique index compares
    COALESCE(title, '')); both engines agree."""
    untitled = _event("2026-06-01T09:00:00Z", title=None)
    result = ingest(
        _line("C\\u", "PC", untitled, untitled, _event("2026-06-01T09:00:00Z", title=""))
    ).json()
    assert (result["rows_stored"], result["rows_already_stored"]) == (1, 2)
    assert ingest(_line("C\\u", "PC", untitled)).json()["rows_stored"] == 0
    assert [r[-1] for r in _rows(store_url)] == [None]


def test_a_rerun_after_a_partial_load_adds_only_the_rest(
    ingest: Any, es: Any, store_url: str
) -> None:
    lines = [report(f"CONTOSO\\u{i}", "PC", events=4) for i in range(6)]
    ingest(*lines[:4])  # what an interrupted run had committed (e.g. a split file)
    ingest(*lines[:2], "{broken", expect=1)  # a failed run stores nothing
    result = ingest(*lines).json()
    assert (result["rows_stored"], result["rows_already_stored"]) == (8, 16)
    assert _count(store_url) == 24
    assert es("status", "--json").json()["licenses"]["used"] == 6


def test_a_killed_ingest_rerun_stores_every_event_once(
    tmp_path: Path, config_path: Path, store_url: str
) -> None:
    """A real interruption: the process is killed at some point of a large load (before,
    during or after its commit), then the same file is ingested again, twice."""
    path = tmp_path / "big.jsonl"
    lines = [report(f"CONTOSO\\u{i}", f"PC-{i}", events=50) for i in range(400)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "entrasync", "--config", str(config_path), "ingest"]
    env = {**os.environ, "NO_COLOR": "1"}
    victim = subprocess.Popen([*command, str(path)], env=env, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for _ in range(2):
        done = subprocess.run([*command, str(path)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert _count(store_url) == 400 * 50


# -- merges move history between agents: duplicates are dropped, never an error ------------


def _two_records_with_the_same_events(ingest: Any) -> None:
    events = [_event(f"2026-06-01T0{h}:00:00Z") for h in range(3)]
    ingest(
        _line("CONTOSO\\jdoe", "PC-1", *events, upn="jdoe@contoso.com"),
        # the same device's events, reported again under the new logon after a rename
        _line(
            "NEWCO\\jdoe", "PC-1", *events[1:], _event("2026-06-02T09:00:00Z"), upn="jdoe@newco.com"
        ),
    )


def test_merging_users_whose_agents_hold_the_same_events(
    ingest: Any, es: Any, store_url: str
) -> None:
    _two_records_with_the_same_events(ingest)
    assert _count(store_url) == 3 + 3
    result = es("users", "merge", "jdoe@contoso.com", "jdoe@newco.com", "--yes")
    assert result.code == 0, result.err
    user = es("users", "show", "jdoe@newco.com", "--json").json()
    assert [a["activity_rows"] for a in user["agents"]] == [4]
    assert user["licenses"] == 1
    assert _count(store_url) == 4
    assert len({r[1:] for r in _rows(store_url)}) == 4


def test_merging_a_pending_users_agent_into_one_holding_the_same_events(
    cli: Any, tmp_path: Path, store_url: str
) -> None:
    config = write_config(
        tmp_path / "pending.toml",
        store_url,
        "[account]\npurchased_licenses = 1\npending_mode = true\n",
    )
    events = [_event(f"2026-06-01T0{h}:00:00Z") for h in range(3)]
    path = tmp_path / "r.jsonl"
    path.write_text(
        _line("CONTOSO\\jdoe", "PC-1", *events, upn="jdoe@contoso.com")
        + "\n"
        + _line("LAPTOP-9\\jdoe", "PC-1", *events[:2], upn="jdoe@laptop.example")
        + "\n",
        encoding="utf-8",
    )

    def es(*args: str) -> Any:
        return cli("--config", str(config), *args)

    assert es("ingest", str(path)).code == 0
    licensed = es("users", "show", "jdoe@contoso.com", "--json").json()
    agent = licensed["agents"][0]["id"]
    result = es("pending", "merge", "laptop-9\\jdoe", "--into-agent", str(agent), "--yes")
    assert result.code == 0, result.err
    user = es("users", "show", "jdoe@contoso.com", "--json").json()
    assert [a["activity_rows"] for a in user["agents"]] == [3]
    assert _count(store_url) == 3


# -- migration 0005: existing duplicates are folded before the unique index is created -------


@pytest.fixture(params=BACKENDS)
def store_at_0004(request: pytest.FixtureRequest, make_store_url: Callable[[str], str]) -> str:
    from alembic import command

    url = make_store_url(request.param)
    store = Store(url, check_schema=False)
    try:
        command.upgrade(store._alembic_config(), "0004")
    finally:
        store.engine.dispose()
    return url


def test_migration_0005_removes_duplicates_keeping_the_lowest_id(store_at_0004: str) -> None:
    url = store_at_0004
    sql(
        url,
        "INSERT INTO users (id, tracking, status, created_at) VALUES "
        "(1, 'tracked', 'active', '2026-01-01 00:00:00'), "
        "(2, 'tracked', 'active', '2026-01-01 00:00:00')",
    )
    sql(
        url,
        "INSERT INTO agents (id, user_id, created_at) VALUES "
        "(1, 1, '2026-01-01 00:00:00'), (2, 2, '2026-01-01 00:00:00')",
    )
    rows = [
        # id, agent, device, start, duration, app, title
        (1, 1, "PC", "2026-06-01 09:00:00", 60, "excel.exe", "Book"),
        (2, 1, "PC", "2026-06-01 09:00:00", 60, "excel.exe", "Book"),  # duplicate of 1
        (3, 1, "PC", "2026-06-01 09:00:00", 60, "excel.exe", None),
        (4, 1, "PC", "2026-06-01 09:00:00", 60, "excel.exe", None),  # duplicate of 3
        (5, 1, "PC", "2026-06-01 09:00:00", 60, "excel.exe", ""),  # same identity as 3
        (6, 2, "PC", "2026-06-01 09:00:00", 60, "excel.exe", "Book"),  # another agent
        (7, 1, "PC", "2026-06-01 09:00:00", 61, "excel.exe", "Book"),  # another duration
        (8, 1, "PC", "2026-06-01 09:00:00", 60, "excel.exe", "Book"),  # duplicate of 1
    ]
    for row in rows:
        sql(
            url,
            "INSERT INTO activity (id, agent_id, device, start, duration_s, app, title, "
            "received_at) VALUES (:id, :agent, :device, :start, :duration, :app, :title, "
            ":start)",
            id=row[0],
            agent=row[1],
            device=row[2],
            start=row[3],
            duration=row[4],
            app=row[5],
            title=row[6],
        )
    store = Store(url, check_schema=False)
    try:
        store.upgrade()
    finally:
        store.engine.dispose()
    assert [r[0] for r in _rows(url)] == [1, 3, 6, 7]
    with pytest.raises(IntegrityError):
        sql(
            url,
            "INSERT INTO activity (agent_id, device, start, duration_s, app, title, "
            "received_at) SELECT agent_id, device, start, duration_s, app, '', received_at "
            "FROM activity WHERE id = 3",
        )
    sql(
        url,
        "INSERT INTO activity (agent_id, device, start, duration_s, app, title, "
        "received_at) SELECT agent_id, device, start, duration_s, app, 'Other', received_at "
        "FROM activity WHERE id = 3",
    )
    assert _count(url) == 5
