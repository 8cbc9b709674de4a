"""Throttling, server errors, dropped connections, timeouts and unreachable endpoints."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable
from email.utils import formatdate

import pytest
from graph_helpers import SECRET, SmallTenant, make_settings

from entrasync.errors import ExitCode, GraphUnavailable
from entrasync.graph import GraphClient, RetryPolicy, parse_retry_after
from entrasync.sim import EntraEmulator


def test_throttling_storm_waits_at_least_retry_after_then_succeeds(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant
) -> None:
    client.check_token()
    emulator.faults.throttle(r"/users/delta", times=3, retry_after="0.3")
    started = time.monotonic()
    users = [u for p in client.read_users({}) for u in p.users]
    elapsed = time.monotonic() - started
    assert len(users) == 4
    records = emulator.log.records(r"/users/delta")
    assert [r.status for r in records] == [429, 429, 429, 200]
    gaps = [b.started - (a.started + a.duration) for a, b in itertools.pairwise(records)]
    assert all(gap >= 0.3 for gap in gaps), gaps
    assert elapsed >= 0.9
    assert client.counters.by_status("graph") == {"429": 3, "200": 1}


def test_retry_after_as_http_date_is_honoured(client: GraphClient, emulator: EntraEmulator) -> None:
    client.check_token()
    when = formatdate(time.time() + 2, usegmt=True)  # whole seconds: waits 1–2 s
    emulator.faults.throttle(r"/groups/", times=1, retry_after=when)
    started = time.monotonic()
    assert client.get_group("00000000-0000-0000-0000-000000000001") is None
    assert time.monotonic() - started >= 0.9


def test_503_then_success(client: GraphClient, emulator: EntraEmulator) -> None:
    emulator.faults.add(r"/users/delta", status=503, times=2)
    users = [u for p in client.read_users({}) for u in p.users]
    assert len(users) == 4
    assert [r.status for r in emulator.log.records(r"/users/delta")] == [503, 503, 200]


def test_dropped_connection_is_retried(client: GraphClient, emulator: EntraEmulator) -> None:
    emulator.faults.add(r"/users/delta", drop=True, times=1)
    users = [u for p in client.read_users({}) for u in p.users]
    assert len(users) == 4
    assert client.counters.by_status("graph").get("error") == 1


def test_slow_response_times_out_and_is_retried(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator
) -> None:
    client = client_for(timeout=0.3)
    emulator.faults.add(r"/users/delta", delay=1.0, times=1)
    users = [u for p in client.read_users({}) for u in p.users]
    assert len(users) == 4
    assert client.counters.by_status("graph") == {"error": 1, "200": 1}


def test_endless_storm_gives_up_within_bounds_with_exit_69(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator
) -> None:
    client = client_for(
        retry=RetryPolicy(max_attempts=4, max_total=2.0, backoff_base=0.01, backoff_max=0.05)
    )
    emulator.faults.throttle(r"/users/delta", times=None, retry_after="0.1")
    started = time.monotonic()
    with pytest.raises(GraphUnavailable) as caught:
        list(client.read_users({}))
    assert caught.value.exit_code == ExitCode.UNAVAILABLE
    assert "429" in str(caught.value)
    assert emulator.log.count(r"/users/delta", status=429) == 4
    assert time.monotonic() - started < 2.0


def test_time_bound_stops_before_a_long_retry_after(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator
) -> None:
    client = client_for(retry=RetryPolicy(max_attempts=10, max_total=1.0))
    emulator.faults.throttle(r"/users/delta", times=None, retry_after="30")
    started = time.monotonic()
    with pytest.raises(GraphUnavailable):
        list(client.read_users({}))
    assert time.monotonic() - started < 1.0  # did not sleep 30 s past the bound


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_authority_is_exit_69(emulator: EntraEmulator) -> None:
    port = _closed_port()
    settings = make_settings(
        emulator,
        authority_host=f"https://127.0.0.1:{port}",
        retry=RetryPolicy(max_attempts=2, max_total=1.0, backoff_base=0.01, backoff_max=0.02),
    )
    with GraphClient(settings) as client, pytest.raises(GraphUnavailable) as caught:
        client.check_token()
    assert caught.value.exit_code == 69
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_graph_going_away_mid_run_is_exit_69(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator
) -> None:
    client = client_for(
        retry=RetryPolicy(max_attempts=3, max_total=1.0, backoff_base=0.01, backoff_max=0.02)
    )
    client.check_token()  # the token is cached; now the service disappears
    graph_url = emulator.graph_url
    emulator.stop()
    with pytest.raises(GraphUnavailable) as caught:
        list(client.read_users({}))
    assert caught.value.exit_code == 69
    assert f"cannot reach {graph_url}" in str(caught.value)
    assert client.counters.by_status("graph") == {"error": 3}


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("1.5", 1.5), ("  0.25 ", 0.25), ("-4", 0.0), ("soon", None), ("", None)],
)
def test_parse_retry_after(header: str, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 120, usegmt=True), now=now) == 120.0
    assert parse_retry_after(formatdate(now - 5, usegmt=True), now=now) == 0.0
