"""Ctrl-C pressed again and again while `entrasync users purge` runs, end to end on both stores.

The story: an admin starts a purge of a person with a large history, thinks better of it and
presses Ctrl-C, then again because nothing seems to happen. A purge cannot be undone, so the
presses must leave either the whole purge with its audit record or nothing at all; the
process ends with exit 130 (or by the signal, which shells also report as 130) and no
traceback, and running the command again purges the person.

The first press is caught while the purge's transaction is open (SQLite: another connection
cannot take the write lock; PostgreSQL: the command's own connection, found by its
application name, runs the history DELETE), most often while the DELETE runs: on SQLite on
the worker thread of `store.driver.pipelined`. The later presses come 1 ms and 20 ms after
it, while the command unwinds and rolls back: the CLI then ends the process by the signal
(`cli._second_ctrl_c_ends_the_process`), which commits nothing either. What the driver does
when it is interrupted again while it waits for its thread is tested in
`tests/integration/test_driver_errors.py`.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url
from testkit import report, sessions_named, sql

HISTORY = 200_000  # rows: the history DELETE runs for a good part of a second on both stores
PRESSES_AFTER_S = (0.0, 0.001, 0.02)  # an impatient admin: the first press, then two more

_MULTIPLY = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO activity (agent_id, device, start, duration_s, app, title, received_at)
SELECT a.agent_id, a.device, a.start, a.duration_s, a.app, 'copy ' || n.i, a.received_at
FROM activity a, n
"""


@contextmanager
def _purge_in_progress(url: str, app: str) -> Iterator[Callable[[], bool]]:
    """Whether the purge's transaction is open (SQLite: the write lock is held) or the
    history DELETE of the process named `app` is running (PostgreSQL, whose server other
    processes may share)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = str(parsed.database)

        def locked() -> bool:
            probe = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                return False
            except sqlite3.OperationalError:
                return True
            finally:
                probe.close()

        yield locked
        return

    engine = create_engine(url)

    def deleting() -> bool:
        with engine.connect() as conn:
            where = "state = 'active' AND query LIKE '%DELETE FROM activity%'"
            return sessions_named(conn, app, where) > 0

    try:
        yield deleting
    finally:
        engine.dispose()


def _purge_and_press_ctrl_c(config_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    app = f"entrasync-test-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "entrasync", "--config", str(config_path)]
    purge = subprocess.Popen(
        [*command, "users", "purge", "amy@contoso.com", "--yes"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "PGAPPNAME": app},
    )
    try:
        with _purge_in_progress(url, app) as in_progress:
            deadline = time.monotonic() + 60
            while not in_progress():
                assert purge.poll() is None, "the purge ended before it could be interrupted"
                assert time.monotonic() < deadline, "the purge never started"
                time.sleep(0.005)
        time.sleep(0.05)  # SQLite: past the transaction's first reads, into the DELETE
        pressed = time.monotonic()
        for after in PRESSES_AFTER_S:
            time.sleep(max(0.0, pressed + after - time.monotonic()))
            purge.send_signal(signal.SIGINT)
        out, err = purge.communicate(timeout=60)
    finally:
        if purge.poll() is None:
            purge.kill()
            purge.wait()
    return subprocess.CompletedProcess(purge.args, purge.returncode, out, err)


def test_ctrl_c_pressed_again_and_again_during_an_admin_purge_keeps_nothing(
    ingest: Any, es: Any, dump: Any, store_url: str, config_path: Path
) -> None:
    ingest(report("LAPTOP-1\\amy", "LAPTOP-1", email="amy@contoso.com"))
    sql(store_url, _MULTIPLY, rows=HISTORY)
    before = dump()
    assert len(before["activity"]) == HISTORY + 1

    interrupted = _purge_and_press_ctrl_c(config_path, store_url)

    # Exit 130, or ended by the later press (a shell reports both as 130); never a crash
    # (SIGSEGV once, when a later press closed the connection under the thread), never a
    # traceback (a press that interrupted the rollback or the closing of a connection).
    assert interrupted.returncode in (130, -signal.SIGINT), interrupted.stderr
    assert "Traceback" not in interrupted.stderr, interrupted.stderr
    assert dump() == before  # nothing of the purge: no row gone, no audit record
    assert es("audit", "list", "--action", "user.purged", "--json").json() == []
    assert es("audit", "verify").code == 0

    again = es("users", "purge", "amy@contoso.com", "--yes", "--json")
    assert again.code == 0, again.err
    assert again.json()["details"]["rows_purged"] == HISTORY + 1
    records = es("audit", "list", "--action", "user.purged", "--json").json()
    assert [r["details"]["rows_purged"] for r in records] == [HISTORY + 1]
    assert es("users", "show", "amy@contoso.com", "--json").json()["agents"] == []
