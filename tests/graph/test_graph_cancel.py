"""Cancellation: a client given a cancel event stops within a fraction of a second once it is
set, whether a request is in flight or a retry wait is running (a prompt SIGTERM)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from graph_helpers import SmallTenant, make_settings

from entrasync.errors import ExitCode, GraphUnavailable
from entrasync.graph import Cancelled, GraphClient, RetryPolicy
from entrasync.sim import EntraEmulator

PATIENT = RetryPolicy(max_attempts=8, max_total=120.0, max_retry_after=60.0)
SET_AFTER = 0.3


@pytest.fixture
def cancel() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def cancellable(emulator: EntraEmulator, cancel: threading.Event) -> Iterator[GraphClient]:
    client = GraphClient(make_settings(emulator, retry=PATIENT, timeout=30.0), cancel=cancel)
    yield client
    client.close()


def _cancelled_within(cancel: threading.Event, action: Callable[[], object]) -> float:
    """Set the event after SET_AFTER seconds; `action` must raise Cancelled. Returns how
    long after the event was set it returned."""
    timer = threading.Timer(SET_AFTER, cancel.set)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(Cancelled) as caught:
            action()
    finally:
        timer.cancel()
    assert isinstance(caught.value, GraphUnavailable)
    assert caught.value.exit_code == ExitCode.UNAVAILABLE
    return time.monotonic() - started - SET_AFTER


def test_a_request_in_flight_is_abandoned(
    cancellable: GraphClient, emulator: EntraEmulator, cancel: threading.Event
) -> None:
    cancellable.check_token()
    emulator.faults.add(r"/users/delta", delay=10.0)  # Graph hangs
    late = _cancelled_within(cancel, lambda: list(cancellable.read_users({})))
    assert 0 <= late < 0.5


def test_a_retry_wait_is_cut_short(
    cancellable: GraphClient, emulator: EntraEmulator, cancel: threading.Event, small: SmallTenant
) -> None:
    emulator.faults.throttle(r"/groups/delta", times=None, retry_after=30)
    late = _cancelled_within(cancel, lambda: list(cancellable.read_groups([small.dnt], {})))
    assert 0 <= late < 0.5
    assert emulator.log.count(r"/groups/delta") == 1  # no second attempt after the cancel


def test_a_batch_retry_wait_is_cut_short(
    cancellable: GraphClient, emulator: EntraEmulator, cancel: threading.Event, small: SmallTenant
) -> None:
    emulator.faults.throttle(rf"/users/{small.alice}\?", times=None, retry_after=30)
    late = _cancelled_within(cancel, lambda: cancellable.users_exist([small.alice]))
    assert 0 <= late < 0.5


def test_a_token_retry_wait_is_cut_short(
    cancellable: GraphClient, emulator: EntraEmulator, cancel: threading.Event
) -> None:
    emulator.faults.add(r"/oauth2/v2\.0/token", status=503, retry_after=30, times=None)
    late = _cancelled_within(cancel, cancellable.check_token)
    assert 0 <= late < 0.5


def test_a_set_event_stops_the_next_request_before_it_is_sent(
    cancellable: GraphClient, emulator: EntraEmulator, cancel: threading.Event
) -> None:
    pages = iter(cancellable.read_users({}))
    cancel.set()
    with pytest.raises(Cancelled):
        next(pages)
    assert emulator.log.count(r"/users/delta") == 0


def test_the_page_being_read_ends_the_round_cleanly(
    emulator: EntraEmulator, cancel: threading.Event, small: SmallTenant
) -> None:
    """After a cancelled read the client closes at once and a new client works."""
    settings = make_settings(emulator, retry=PATIENT, page_size=1)
    client = GraphClient(settings, cancel=cancel)
    emulator.faults.add(r"/users/delta", delay=10.0, skip=1)  # the second page hangs
    pages = iter(client.read_users({}))
    assert len(next(pages).users) == 1
    late = _cancelled_within(cancel, lambda: next(pages))
    assert late < 0.5
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 1.0
    with GraphClient(make_settings(emulator)) as fresh:
        assert len([u for p in fresh.read_users({}) for u in p.users]) == 4
