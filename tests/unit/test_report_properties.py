"""Property-based: whatever a report line holds, the parser returns a storable report or a
ReportError naming the line — never another exception (random JSON values, report-shaped
objects with wrong types, huge numbers and odd strings, and random bytes read from a file)."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import UTC
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_strategies import any_char, json_value, report_object

from entrasync.domain.reports import (
    EARLIEST_START,
    LATEST_START,
    MAX_APP_CHARS,
    MAX_DEVICE_CHARS,
    MAX_EVENT_DURATION_S,
    MAX_IDENTIFIER_CHARS,
    AgentReport,
    ReportError,
    parse_report,
)
from entrasync.errors import InputError
from entrasync.services.ingest import read_reports

FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _storable(text: str, limit: int | None = None) -> None:
    text.encode("utf-8")  # no lone surrogate
    assert "\x00" not in text
    assert limit is None or len(text) <= limit


def _check(line: int, text: str) -> AgentReport | None:
    """The property: a storable report, or a ReportError for this line."""
    try:
        report = parse_report(line, text)
    except ReportError as exc:
        assert exc.line == line
        assert str(exc).startswith(f"line {line}: ")
        str(exc).encode("utf-8")  # printable as it is
        return None
    _storable(report.device, MAX_DEVICE_CHARS)
    assert report.device
    _storable(report.logon, MAX_IDENTIFIER_CHARS)
    for _, value in report.identifiers:
        _storable(value, MAX_IDENTIFIER_CHARS)
    for item in report.events:
        assert item.start.tzinfo == UTC
        assert EARLIEST_START <= item.start < LATEST_START
        assert 0 <= item.duration_s <= MAX_EVENT_DURATION_S
        assert type(item.duration_s) is int
        _storable(item.app, MAX_APP_CHARS)
        if item.title is not None:
            _storable(item.title)
    return report


@FAST
@given(value=json_value, line=st.integers(min_value=1, max_value=10**6))
def test_any_json_value(value: Any, line: int) -> None:
    _check(line, json.dumps(value))


@FAST
@given(body=report_object, line=st.integers(min_value=1, max_value=10**6))
def test_report_shaped_objects_with_wrong_types_and_odd_values(body: Any, line: int) -> None:
    _check(line, json.dumps(body))


@FAST
@given(body=report_object)
def test_report_shaped_objects_unescaped(body: Any) -> None:
    """The same, written the way a non-Python agent would (raw UTF-8, not \\u escapes)."""
    try:
        text = json.dumps(body, ensure_ascii=False)
    except UnicodeEncodeError:
        return
    _check(7, text)


@FAST
@given(text=st.text(any_char, max_size=200))
def test_any_text(text: str) -> None:
    _check(3, text)


_LINE_NAMED = re.compile(r": line (\d+): ")


@settings(FAST, max_examples=200)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=60),
            report_object.map(lambda body: json.dumps(body).encode()),
            st.sampled_from([b"\n", b"\r\n", b"\r", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"{"]),
        ),
        max_size=8,
    )
)
def test_random_bytes_in_a_file(chunks: list[bytes]) -> None:
    """Bytes as a file holds them, read the way `entrasync ingest` reads it."""
    content = b"".join(chunks)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reports.jsonl"
        path.write_bytes(content)
        try:
            reports = read_reports(path)
        except InputError as exc:
            named = _LINE_NAMED.search(str(exc))
            assert named is not None, str(exc)
            assert 1 <= int(named.group(1)) <= content.count(b"\n") + content.count(b"\r") + 1
            assert str(exc).endswith("nothing from this file was stored")
            return
    for report in reports:
        _storable(report.device)
