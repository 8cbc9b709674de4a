"""Read-ahead (sync/prefetch.py): the next Graph page is fetched while the current one is
stored; the store ends the same, failures surface as they did, and no thread outlives the
round (issue 16, point 4)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text
from syncworld import SECRET, T0, World, later

from entrasync.domain.entra import GroupPage, UserPage
from entrasync.errors import GraphPermissionDenied
from entrasync.graph import GraphClient, settings_from_config
from entrasync.graph._transport import Transport
from entrasync.graph.retry import Cancelled
from entrasync.store.db import Store
from entrasync.sync import mirror, prefetch
from entrasync.sync.cycle import run_cycle
from entrasync.sync.prefetch import read_ahead

WORKER = "entrasync-read-ahead"
USERS_DELTA = r"/v1\.0/users/delta"
GROUPS_DELTA = r"/v1\.0/groups/delta"


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WORKER]


def _tenant(world: World, users: int = 9, page_size: int = 2) -> list[str]:
    ids = [world.tenant.add_user(f"u{i}@contoso.com") for i in range(users)]
    world.tenant.add_members(world.dnt, ids[:5])
    world.tenant.add_members(world.delete, ids[5:])
    world.emu.page_size = page_size
    return ids


def _client(world: World, cancel: threading.Event | None = None) -> GraphClient:
    settings = settings_from_config(world.config().entra, {"ENTRASYNC_CLIENT_SECRET": SECRET})
    return GraphClient(settings, cancel=cancel)


@dataclass
class Recorder:
    """Wraps the store side of a page (`mirror.apply_*_page`, called inside the page's unit
    of work) and the one Graph send path (`Transport.run`)."""

    user_pages: list[tuple[str, ...]] = field(default_factory=list)
    group_pages: list[tuple[str, ...]] = field(default_factory=list)
    store_threads: set[str] = field(default_factory=set)
    graph_threads: set[str] = field(default_factory=set)
    graph_errors: list[BaseException] = field(default_factory=list)
    in_graph: int = 0
    most_in_graph: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_user_page: Callable[[int], None] | None = None
    on_group_page: Callable[[int], None] | None = None


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    apply_user, apply_group, run = mirror.apply_user_page, mirror.apply_group_page, Transport.run

    def user_page(session: Any, page: UserPage, *args: Any) -> Any:
        rec.store_threads.add(threading.current_thread().name)
        rec.user_pages.append(tuple(u.id for u in page.users))
        if rec.on_user_page is not None:
            rec.on_user_page(len(rec.user_pages))
        return apply_user(session, page, *args)

    def group_page(session: Any, page: GroupPage, *args: Any) -> Any:
        rec.store_threads.add(threading.current_thread().name)
        rec.group_pages.append((page.stream, *(c.member_id for c in page.changes)))
        if rec.on_group_page is not None:
            rec.on_group_page(len(rec.group_pages))
        return apply_group(session, page, *args)

    def graph_run(self: Transport, *args: Any, **kw: Any) -> Any:
        with rec.lock:
            rec.in_graph += 1
            rec.most_in_graph = max(rec.most_in_graph, rec.in_graph)
            rec.graph_threads.add(threading.current_thread().name)
        try:
            return run(self, *args, **kw)
        except BaseException as exc:
            rec.graph_errors.append(exc)
            raise
        finally:
            with rec.lock:
                rec.in_graph -= 1

    monkeypatch.setattr(mirror, "apply_user_page", user_page)
    monkeypatch.setattr(mirror, "apply_group_page", group_page)
    monkeypatch.setattr(Transport, "run", graph_run)
    return rec


MIRROR_QUERIES = {
    "entra_users": "SELECT object_id, upn, display_name, deleted_at FROM entra_users",
    "entra_groups": "SELECT id, display_name, role, suspect FROM entra_groups",
    "entra_members": "SELECT group_id, member_id, member_type FROM entra_members",
    "watched_members": "SELECT via_group, object_id FROM watched_members",
    "sync_state": "SELECT stream, delta_link, full_at FROM sync_state",
}


def _mirror(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    with store.reading() as session:
        return {
            name: sorted(tuple(row) for row in session.execute(text(sql)))
            for name, sql in MIRROR_QUERIES.items()
        }


# -- the store ends the same ------------------------------------------------------------------


def test_pages_are_stored_in_graph_order_by_one_thread_and_links_saved(
    world: World, recorder: Recorder, make_store_url: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _tenant(world)
    world.sync()

    # Graph's own page order, read straight from the emulator afterwards (nothing changed).
    with _client(world) as graph:
        fetched = [tuple(u.id for u in page.users) for page in graph.read_users({})]
    assert len(fetched) == 5  # 9 users, 2 a page: the round really had several pages
    assert recorder.user_pages == fetched
    assert sorted(u for page in recorder.user_pages for u in page) == sorted(ids)
    assert len(recorder.group_pages) >= 5  # 9 edges in one stream, 2 a page
    # The store is written by the cycle's thread; Graph is driven by the worker alone.
    assert recorder.store_threads == {threading.current_thread().name}
    assert WORKER in recorder.graph_threads
    assert recorder.most_in_graph == 1  # the client's event loop: never two threads at once
    assert _workers() == []

    # The same cycle without read-ahead, into a second store: the same mirror, links included.
    backend = "postgresql" if world.store.url.startswith("postgresql") else "sqlite"
    other = Store(make_store_url(backend), check_schema=False)
    other.upgrade()
    monkeypatch.setattr(prefetch, "DEFAULT_DEPTH", 0)
    run_cycle(other, world.config(), lambda: _client(world), T0)
    ours, theirs = _mirror(world.store), _mirror(other)
    other.engine.dispose()
    assert ours == theirs
    assert {stream for stream, link, _ in ours["sync_state"] if link} >= {"users"}
    assert len(ours["sync_state"]) == 2  # users and the watched groups' stream

    # The links were saved: the next cycle reads one request per stream.
    world.emu.log.clear()
    world.sync(later(1))
    assert world.emu.log.count(USERS_DELTA) == 1
    assert world.emu.log.count(GROUPS_DELTA) == 1


# -- failures -----------------------------------------------------------------------------------


def test_graph_failing_mid_round_raises_its_own_error_in_the_cycle(
    world: World, recorder: Recorder
) -> None:
    _tenant(world)
    before = {t.ident for t in threading.enumerate()}
    world.emu.faults.add(USERS_DELTA + ".*skiptoken", status=403, skip=1, code="Forbidden")

    with pytest.raises(GraphPermissionDenied, match=r"User\.Read\.All") as raised:
        world.sync()

    assert raised.value is recorder.graph_errors[-1]  # the worker's exception object
    assert len(recorder.user_pages) == 2  # the pages fetched before the failure are stored
    assert recorder.group_pages == []  # the groups round never started
    assert _workers() == []
    # Nothing new on the client's side (the emulator's connection handlers are its own).
    new = [t for t in threading.enumerate() if t.ident not in before]
    assert [t.name for t in new if "process_request_thread" not in t.name] == []
    with world.store.reading() as session:
        links = session.execute(text("SELECT count(*) FROM sync_state")).scalar_one()
    assert links == 0  # no link for a round that did not end: the next one starts over

    world.emu.faults.clear()
    world.sync(later(1))
    with world.store.reading() as session:
        stored = session.execute(text("SELECT count(*) FROM entra_users")).scalar_one()
    assert stored == 9


def test_a_store_failure_stops_the_worker_and_graph_requests(
    world: World, recorder: Recorder
) -> None:
    _tenant(world, users=12, page_size=1)  # 12 user pages

    class StoreBroke(Exception):
        pass

    def fail_on_second(n: int) -> None:
        if n == 2:
            raise StoreBroke("disk full")

    recorder.on_user_page = fail_on_second
    with pytest.raises(StoreBroke):
        world.sync()

    assert _workers() == []  # joined before the error left the read
    # Page 2 was being stored: at most the page queued behind it and the one in flight were
    # fetched; after that the worker sent nothing (it is gone, so nothing can follow).
    assert world.emu.log.count(USERS_DELTA) <= 2 + prefetch.DEFAULT_DEPTH + 1
    assert len(recorder.user_pages) == 2


def test_daemon_cancellation_mid_round_ends_the_worker(world: World, recorder: Recorder) -> None:
    _tenant(world, users=12, page_size=1)
    cancel = threading.Event()

    def cancel_on_second(n: int) -> None:
        if n == 2:
            cancel.set()  # the daemon's stop, while the cycle stores a page

    recorder.on_user_page = cancel_on_second
    with pytest.raises(Cancelled) as raised:
        run_cycle(world.store, world.config(), lambda: _client(world, cancel), T0)

    assert raised.value is recorder.graph_errors[-1]
    assert _workers() == []
    assert world.emu.log.count(USERS_DELTA) <= 2 + prefetch.DEFAULT_DEPTH + 1
    with world.store.reading() as session:
        links = session.execute(text("SELECT count(*) FROM sync_state")).scalar_one()
    assert links == 0


def test_read_ahead_hands_over_the_very_exception_after_the_pages_before_it() -> None:
    boom = RuntimeError("boom")

    def pages() -> Iterator[int]:
        yield 1
        yield 2
        raise boom

    got: list[int] = []
    with pytest.raises(RuntimeError) as raised, read_ahead(pages()) as ahead:
        got.extend(ahead)
    assert raised.value is boom
    assert got == [1, 2]
    assert _workers() == []


# -- overlap ------------------------------------------------------------------------------------


def test_the_next_page_is_fetched_while_the_current_one_is_stored(
    world: World, recorder: Recorder
) -> None:
    """No clock: while page N's unit of work is still open (its store call is running, so
    it has not committed), the emulator has already answered the request for page N+1. A
    reader that fetches only after storing would never get there: the wait below would
    run out, for every page."""
    _tenant(world)
    world.emu.latency = 0.05  # each Graph request takes a round trip, as a real one does
    overlapped: dict[str, list[bool]] = {"users": [], "groups": []}
    pages = {"users": 5, "groups": 5}  # 9 users and 9 edges, 2 a page
    settled = threading.Event()

    def waiter(kind: str, path: str) -> Callable[[int], None]:
        def wait_for_next(n: int) -> None:
            if n >= pages[kind] or settled.is_set():
                return
            deadline = threading.Event()
            for _ in range(200):  # up to 10 s, then the overlap is missing
                if world.emu.log.count(path) > n:
                    overlapped[kind].append(True)
                    return
                deadline.wait(0.05)
            overlapped[kind].append(False)
            settled.set()  # no overlap: do not wait for every page

        return wait_for_next

    recorder.on_user_page = waiter("users", USERS_DELTA)
    recorder.on_group_page = waiter("groups", GROUPS_DELTA)
    world.sync()

    assert world.emu.log.count(USERS_DELTA) == pages["users"]
    assert world.emu.log.count(GROUPS_DELTA) == pages["groups"]
    assert overlapped == {"users": [True] * 4, "groups": [True] * 4}
    graph = world.emu.log.records(r"^/v1\.0/")
    assert graph
    assert all(r.duration >= 0.05 for r in graph)  # the latency applied to each request


def test_a_consumer_that_stops_early_stops_the_reading() -> None:
    stepped: list[int] = []

    def pages() -> Iterator[int]:
        for n in range(100):
            stepped.append(n)  # one step of a round: one Graph request
            yield n

    with read_ahead(pages()) as ahead:
        for _ in ahead:
            break  # the consumer gives up after the first page
    assert _workers() == []
    # The page it took, the one queued behind it and the one being fetched: no more.
    assert 1 <= len(stepped) <= 1 + prefetch.DEFAULT_DEPTH + 1


def test_ctrl_c_while_a_page_is_stored_stops_graph_at_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`entrasync sync` has no cancel event: when the reader gives up (Ctrl-C here) while
    the worker waits out Graph's Retry-After on the next page, the round is abandoned: the
    request in flight is cancelled and no retry is sent, as when the round was read on the
    calling thread."""
    users_delta, page2 = r"/v1\.0/users/delta", r"/v1\.0/users/delta.*skiptoken"
    for i in range(6):
        world.tenant.add_user(f"u{i}@contoso.com")
    world.emu.page_size = 2
    world.emu.faults.add(page2, status=429, retry_after=0.4, times=4)
    at_interrupt: dict[str, int] = {}

    def interrupted(*_args: Any) -> None:
        for _ in range(500):  # until the worker's first try of page 2 was throttled
            if world.emu.log.count(page2, status=429) >= 1:
                break
            threading.Event().wait(0.01)
        at_interrupt["requests"] = world.emu.log.count(users_delta)
        raise KeyboardInterrupt

    monkeypatch.setattr(mirror, "apply_user_page", interrupted)
    with pytest.raises(KeyboardInterrupt):
        world.sync()
    assert world.emu.log.count(page2, status=429) >= 1
    assert world.emu.log.count(users_delta) <= at_interrupt["requests"] + 1
    assert not [t for t in threading.enumerate() if t.name == "entrasync-read-ahead"]
