"""The purge figures: entrasync purging Delete-group members against raw SQL deleting the
same rows in the same transactions, each side on a copy of the store made the same way."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from bench.backends import Backend, checkpoint
from bench.scenario import T0
from entrasync.domain.actions import ActionKind
from entrasync.domain.planning import PlannedAction
from entrasync.sim.generate import GeneratedTenant
from entrasync.store.db import Store
from entrasync.store.driver import on_postgresql
from entrasync.sync.apply import PURGE_BATCH, ActionApplier


def purge_targets(
    store: Store, gen: GeneratedTenant, limit: int
) -> tuple[list[tuple[int, str]], tuple[int, str]]:
    """(store user id, object id) of the first `limit` Delete-group members, linked by the
    initial sync, and of a DNT member outside them: the copies' warm-up (`measure_purge`),
    untracked, so that ingest, which writes to unwatched users, never needs their agents."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, entra_object_id FROM users WHERE entra_object_id IS NOT NULL")
        ).all()
    by_object = {str(o): int(i) for i, o in rows}

    def linked(group: str) -> list[tuple[int, str]]:
        ordered = sorted(gen.tenant.groups[group].members)
        return [(by_object[m], m) for m in ordered if m in by_object]

    targets = linked(gen.delete_group)[:limit]
    warm_up = next(u for u in linked(gen.dnt_group) if u not in targets)
    return targets, warm_up


def measure_purge(
    store: Store,
    backend: Backend,
    config: Any,
    targets: list[tuple[int, str]],
    warm_up: tuple[int, str],
) -> dict[str, Any]:
    """entrasync purging `targets` ((store user id, object id)) against raw SQL deleting the
    same rows, both on copies of the store made alike (`Backend.make_copy`, `make_twin`),
    batch by batch in turns, each pair after a checkpoint. Over every four batches each side
    runs on each copy, first and second (a Gray code: what ran before on a copy varies too),
    so the machine's drift (the page cache, a checkpoint, a neighbour) and the copies' own
    state fall on both sides alike; a purge of one batch or fewer cannot be balanced. Until
    the tenth round entrasync purged the store the first sync left and raw SQL a copy just
    written: two physical states compared. Each copy first purges `warm_up` untimed (the
    engines' pools and compiled statements): a user holding history, not among `targets`,
    whom nothing measured later needs on the copies. The store itself is purged afterwards,
    as a cycle would (`purge_on_store_s`), so what the bench measures next starts from the
    same state as before."""
    rows = _count_rows(store.url, [uid for uid, _ in targets])
    copies = [Store(backend.copy_url), Store(backend.twin_url)]
    timings = {"entrasync": 0.0, "raw": 0.0}
    try:
        appliers = [_applier(copy, config) for copy in copies]
        for applier in appliers:
            _purge(applier, [warm_up])
        for turn, start in enumerate(range(0, len(targets), PURGE_BATCH)):
            batch = targets[start : start + PURGE_BATCH]
            ours = (turn ^ (turn >> 1)) & 1
            checkpoint(store)
            for side in sorted(timings, reverse=bool(turn // 2 % 2)):
                started = time.perf_counter()
                if side == "raw":
                    _raw_purge(copies[1 - ours], [uid for uid, _ in batch])
                else:
                    _purge(appliers[ours], batch)
                timings[side] += time.perf_counter() - started
    finally:
        for copy in copies:
            copy.engine.dispose()
    started = time.perf_counter()
    _purge(_applier(store, config), targets)
    on_store_s = time.perf_counter() - started
    user_ids = [uid for uid, _ in targets]
    left = [_count_rows(url, user_ids) for url in (store.url, backend.copy_url, backend.twin_url)]
    assert left == [0, 0, 0], left
    entrasync_s, raw_s = timings["entrasync"], timings["raw"]
    return {
        "purge_users": len(targets),
        "purge_rows": rows,
        "purge_batch_users": PURGE_BATCH,
        "purge_entrasync_s": round(entrasync_s, 3),
        "purge_raw_sql_s": round(raw_s, 3),
        "purge_entrasync_ms_per_user": round(entrasync_s / len(targets) * 1000, 3),
        "purge_vs_raw_sql_ratio": round(entrasync_s / raw_s, 3),
        "purge_on_store_s": round(on_store_s, 3),
    }


def _applier(store: Store, config: Any) -> ActionApplier:
    """An applier as a cycle 25 hours after the start has it: the purge delay has passed."""
    return ActionApplier(store, config, str(uuid.uuid4()), T0 + timedelta(hours=25))


def _purge(applier: ActionApplier, batch: list[tuple[int, str]]) -> None:
    reason = "member of the Delete group (bench)"
    actions = [PlannedAction(ActionKind.PURGE, reason, uid, obj) for uid, obj in batch]
    done = applier.apply_purges(actions)
    assert len(done) == len(batch), (len(done), len(batch))


def _count_rows(url: str, user_ids: list[int]) -> int:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            total = 0
            for start in range(0, len(user_ids), 500):
                chunk = ",".join(str(u) for u in user_ids[start : start + 500])
                total += int(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM activity WHERE agent_id IN "
                            f"(SELECT id FROM agents WHERE user_id IN ({chunk}))"
                        )
                    ).scalar_one()
                )
            return total
    finally:
        store.engine.dispose()


_RAW_PURGE = (
    "DELETE FROM activity WHERE agent_id IN (SELECT id FROM agents WHERE user_id IN ({ids}))",
    "DELETE FROM agent_logons WHERE agent_id IN (SELECT id FROM agents WHERE user_id IN ({ids}))",
    "DELETE FROM agents WHERE user_id IN ({ids})",
    "UPDATE users SET tracking = 'untracked', untracked_by = 'entrasync' WHERE id IN ({ids})",
)


def _raw_purge(store: Store, user_ids: list[int]) -> None:
    """The same rows deleted with plain SQL in one transaction, as entrasync's batch: four
    set-based statements, committed."""
    sqlite = not on_postgresql(store.engine)
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        ids = ",".join(str(u) for u in user_ids)
        if sqlite:
            cursor.execute("BEGIN IMMEDIATE")
        for statement in _RAW_PURGE:
            cursor.execute(statement.format(ids=ids))
        cursor.execute("COMMIT") if sqlite else raw.commit()
    finally:
        raw.close()
