"""What a piece of work costs the store, for the tests that prove a cost does not grow with
the store (tests/bench): the statements it runs and, on SQLite, its virtual-machine steps
(counted with a progress handler) and the SELECTs whose plans may read a table whole."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from entrasync.store.db import Store

_SCAN = re.compile(r"^SCAN (\w+)(?! USING (?:COVERING )?INDEX)")


@dataclass
class Cost:
    statements: list[str] = field(default_factory=list)
    steps: int = 0  # SQLite: hundreds of virtual-machine instructions
    selects: list[tuple[str, Any]] = field(default_factory=list)

    def full_scans(self, store: Store, tables: Iterable[str]) -> Counter[str]:
        """Tables of `tables` that a SELECT read whole (SQLite query plans), with the SQL."""
        big = set(tables)
        found: Counter[str] = Counter()
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            for sql, params in self.selects:
                for row in cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall():
                    match = _SCAN.match(row[-1])
                    if match and match.group(1) in big:
                        found[f"{match.group(1)}: {sql[:160]}"] += 1
        finally:
            raw.close()
        return found


def measured(store: Store, run: Callable[[], Any]) -> Cost:
    """Run `run` and return what it cost `store`."""
    cost = Cost()
    sqlite = store.dialect == "sqlite"

    def count(*_: Any) -> int:
        cost.steps += 1
        return 0

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.set_progress_handler(count, 100)

    def checkin(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.set_progress_handler(None, 100)

    def before(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        cost.statements.append(statement)
        if sqlite and not many and statement.lstrip().upper().startswith("SELECT"):
            cost.selects.append((statement, params))

    listeners: list[tuple[str, Any]] = [("before_cursor_execute", before)]
    if sqlite:
        store.engine.dispose()  # new connections get the handler at checkout
        listeners += [("checkout", checkout), ("checkin", checkin)]
    for name, fn in listeners:
        event.listen(store.engine, name, fn)
    try:
        run()
    finally:
        for name, fn in listeners:
            event.remove(store.engine, name, fn)
    return cost
