"""HTML where JSON belongs: a proxy's login page or a gateway's 5xx page in front of the
identity platform or Graph. Never a traceback, never the page itself (it may echo the
secret), exit 69; transient statuses are retried by the shared policy."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import requests
from graph_helpers import FAST_RETRY, SECRET, SmallTenant, make_settings, write_cli_config
from testkit import CliResult

from entrasync.cli.check_config import check_config
from entrasync.errors import ExitCode, GraphUnavailable
from entrasync.graph import GraphClient, RetryPolicy
from entrasync.sim import EntraEmulator

TOKEN = r"/oauth2/v2\.0/token"
HINT = "with an HTML page, not JSON (a proxy or gateway in the way?)"


def _clean(text: str) -> None:
    assert "Traceback" not in text
    assert SECRET not in text
    assert "<html" not in text.lower()


# -- the token endpoint -----------------------------------------------------------------------


def test_login_page_on_the_token_endpoint_is_exit_69_in_check_config(
    cli: Callable[..., CliResult],
    tmp_path: Path,
    emulator: EntraEmulator,
    small: SmallTenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write_cli_config(tmp_path, emulator, [small.dnt], [small.delete])
    emulator.faults.add(TOKEN, status=200, html=True, echo=True, times=None)
    result = cli("--config", str(path), "check-config")
    assert result.code == ExitCode.UNAVAILABLE, result
    assert f"127.0.0.1:{emulator.port}: the token endpoint answered 200 {HINT}" in result.out
    for text in (result.out, result.err, caplog.text):
        _clean(text)


def test_login_page_on_the_token_endpoint_is_exit_69_in_sync(
    cli: Callable[..., CliResult],
    tmp_path: Path,
    emulator: EntraEmulator,
    small: SmallTenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write_cli_config(tmp_path, emulator, [small.dnt], [small.delete])
    emulator.faults.add(TOKEN, status=200, html=True, echo=True, times=None)
    result = cli("--config", str(path), "sync")
    assert result.code == ExitCode.UNAVAILABLE, result
    assert f"the token endpoint answered 200 {HINT}" in result.err
    for text in (result.out, result.err, caplog.text):
        _clean(text)
    # The page really did carry the secret: the client was right not to show it.
    assert emulator.log.count(TOKEN, status=200) == 1


def test_gateway_502_on_the_token_endpoint_is_retried_then_exit_69(
    tmp_path: Path, emulator: EntraEmulator, small: SmallTenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write_cli_config(tmp_path, emulator, [small.dnt], [small.delete])
    emulator.faults.add(TOKEN, status=502, html=True, echo=True, times=None)
    out = _Output()
    retry = RetryPolicy(max_attempts=3, max_total=2.0, backoff_base=0.01, backoff_max=0.02)
    code = check_config(path, console=out.console, environ={}, retry=retry)
    assert code == ExitCode.UNAVAILABLE
    assert f"the token endpoint answered 502 {HINT}" in out.text
    assert "gave up (at most 3 attempts" in out.text
    assert emulator.log.count(TOKEN, status=502) == 3
    _clean(out.text)
    _clean(caplog.text)


def test_gateway_pages_on_the_token_endpoint_then_a_token(
    client: GraphClient, emulator: EntraEmulator
) -> None:
    emulator.faults.add(TOKEN, status=502, html=True, echo=True, times=1)
    emulator.faults.add(TOKEN, status=503, html=True, retry_after="0.3", times=1)
    started = time.monotonic()
    client.check_token()
    assert time.monotonic() - started >= 0.3  # Retry-After of the HTML 503 honoured
    assert [r.status for r in emulator.log.records(TOKEN)] == [502, 503, 200]


def test_json_503_on_the_token_endpoint_is_retried(
    client: GraphClient, emulator: EntraEmulator
) -> None:
    emulator.faults.add(TOKEN, status=503, retry_after="0", times=2)
    client.check_token()
    assert [r.status for r in emulator.log.records(TOKEN)] == [503, 503, 200]


def test_login_page_instead_of_the_openid_configuration_is_exit_69(
    emulator: EntraEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.faults.add(r"openid-configuration", status=200, html=True, times=None)
    with GraphClient(make_settings(emulator)) as client, pytest.raises(GraphUnavailable) as caught:
        client.check_token()
    message = str(caught.value)
    assert f"the OpenID configuration endpoint answered 200 {HINT}" in message
    _clean(message)
    _clean(caplog.text)


# -- Graph ------------------------------------------------------------------------------------


def test_gateway_502_pages_on_delta_are_retried(
    client: GraphClient, emulator: EntraEmulator
) -> None:
    emulator.faults.add(r"/users/delta", status=502, html=True, times=2)
    users = [u for p in client.read_users({}) for u in p.users]
    assert len(users) == 4
    assert [r.status for r in emulator.log.records(r"/users/delta")] == [502, 502, 200]


def test_html_503_on_delta_honours_retry_after(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant
) -> None:
    client.check_token()
    emulator.faults.add(r"/groups/delta", status=503, html=True, retry_after="0.3", times=2)
    pages = list(client.read_groups([small.dnt], {}))
    assert {c.member_id for p in pages for c in p.changes} == {small.alice, small.bob}
    records = emulator.log.records(r"/groups/delta")
    assert [r.status for r in records] == [503, 503, 200]
    gaps = [b.started - (a.started + a.duration) for a, b in itertools.pairwise(records)]
    assert all(gap >= 0.3 for gap in gaps), gaps


def test_html_storm_on_delta_gives_up_naming_the_status(
    client: GraphClient, emulator: EntraEmulator
) -> None:
    emulator.faults.add(r"/users/delta", status=504, html=True, times=None)
    with pytest.raises(GraphUnavailable) as caught:
        list(client.read_users({}))
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.UNAVAILABLE
    assert f"reading users: 127.0.0.1:{emulator.port} answered 504 {HINT}" in message
    assert f"gave up (at most {FAST_RETRY.max_attempts} attempts" in message
    _clean(message)


def test_login_page_instead_of_a_delta_page_is_exit_69(
    client: GraphClient, emulator: EntraEmulator
) -> None:
    emulator.faults.add(r"/users/delta", status=200, html=True, times=None)
    with pytest.raises(GraphUnavailable) as caught:
        list(client.read_users({}))
    assert f"reading users: 127.0.0.1:{emulator.port} answered 200 {HINT}" in str(caught.value)
    assert emulator.log.count(r"/users/delta") == 1  # not a transient status: no retries


def test_html_pages_on_batch_and_its_sub_requests_are_retried(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant
) -> None:
    emulator.faults.add(r"/\$batch", status=502, html=True, times=1)
    emulator.faults.add(r"/\$batch", status=503, html=True, retry_after="0.2", times=1)
    emulator.faults.add(rf"/users/{small.carol}/checkMemberGroups", status=502, html=True)
    emulator.faults.add(
        rf"/users/{small.alice}/checkMemberGroups", status=503, html=True, retry_after="0.2"
    )
    found = client.check_member_groups([small.alice, small.carol], [small.dnt, small.delete])
    assert found == {small.alice: frozenset({small.dnt}), small.carol: frozenset({small.delete})}
    assert [r.status for r in emulator.log.records(r"/\$batch")] == [502, 503, 200, 200]
    assert [r.status for r in emulator.batch_log.records(small.carol)] == [502, 200]
    assert [r.status for r in emulator.batch_log.records(small.alice)] == [503, 200]


def test_html_storm_on_batch_gives_up_naming_the_status(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator, small: SmallTenant
) -> None:
    client = client_for(
        retry=RetryPolicy(max_attempts=2, max_total=1.0, backoff_base=0.01, backoff_max=0.02)
    )
    emulator.faults.add(r"/\$batch", status=502, html=True, times=None)
    with pytest.raises(GraphUnavailable) as caught:
        client.users_exist([small.alice])
    assert f"answered 502 {HINT}" in str(caught.value)


class _Output:
    def __init__(self) -> None:
        import io

        from rich.console import Console

        self._buffer = io.StringIO()
        self.console = Console(file=self._buffer, width=200, no_color=True, soft_wrap=True)

    @property
    def text(self) -> str:
        return self._buffer.getvalue()


def test_a_bare_exception_is_classified_by_the_status_the_middleware_saw() -> None:
    """Kiota before 1.16 raised a bare Exception ("Content type text/html does not have a
    factory registered to be parsed") for a gateway's page: the status recorded by the
    counting middleware still classifies it. (A pure function: the installed Kiota cannot
    be made to raise that over HTTP.)"""
    from entrasync.graph._errors import Exchange, failure
    from entrasync.graph.auth import BodyKind

    seen = Exchange(status=503, headers=httpx.Headers({"Retry-After": "2"}))
    seen.content_type = "text/html; charset=utf-8"
    bare = Exception("Content type text/html does not have a factory registered to be parsed")
    answer = failure(bare, seen)
    assert answer is not None
    assert (answer.status, answer.kind) == (503, BodyKind.HTML)
    assert answer.headers["Retry-After"] == "2"
    assert failure(Exception("a bug, no answer"), Exchange()) is None
    assert failure(Exception("a bug after a 200"), Exchange(status=200)) is None


def test_the_emulators_login_page_echoes_the_posted_form(emulator: EntraEmulator) -> None:
    """What the tests above defend against: the page really carries the secret."""
    emulator.faults.add(TOKEN, status=200, html=True, echo=True)
    url = f"{emulator.authority_host}/{emulator.tenant_id}/oauth2/v2.0/token"
    page = requests.post(
        url, data={"client_secret": SECRET}, verify=str(emulator.ca_file), timeout=10
    )
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert f'name="client_secret" value="{SECRET}"' in page.text
