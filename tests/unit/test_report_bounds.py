"""Hostile report lines: values the store cannot hold, or that overflow on the way there, are
refused by the parser with their line named (never a traceback from the store or datetime)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import String, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex

from entrasync.domain.reports import (
    EARLIEST_START,
    LATEST_START,
    MAX_APP_CHARS,
    MAX_DEVICE_CHARS,
    MAX_EVENT_DURATION_S,
    MAX_IDENTIFIER_CHARS,
    ReportError,
    parse_report,
    parse_reports,
)
from entrasync.store.schema import ActivityRow, AgentLogonRow, IdentifierRow, event_identity_sql

GOOD = json.dumps({"device": "PC", "logon": "D\\u", "events": []})


def _line(**overrides: Any) -> str:
    body: dict[str, Any] = {"device": "PC", "logon": "D\\u", "events": []}
    body.update(overrides)
    return json.dumps(body)


def _event_line(**overrides: Any) -> str:
    event: dict[str, Any] = {"start": "2026-06-01T09:00:00Z", "duration_s": 1, "app": "a"}
    event.update(overrides)
    return _line(events=[event])


def _refused(bad: str) -> str:
    """The message for `bad` as line 3 of a file; asserts the line is named."""
    with pytest.raises(ReportError) as caught:
        parse_reports([GOOD, "", bad, GOOD])
    assert caught.value.line == 3
    message = str(caught.value)
    assert message.startswith("line 3: ")
    message.encode("utf-8")  # printable: no lone surrogate echoed back
    assert len(message) < 400  # a hostile value is not echoed in full
    return message


HOSTILE: list[tuple[str, str]] = [
    (_event_line(duration_s=10**20), "duration_s must be at most 604800"),
    (_event_line(duration_s=MAX_EVENT_DURATION_S + 1), "duration_s must be at most 604800"),
    (_event_line(duration_s=2**63), "duration_s must be at most"),
    (_event_line(start="0001-01-01T00:00:00+01:00"), "outside 1970-01-01"),
    (_event_line(start="0001-01-01T00:00:00Z"), "outside 1970-01-01"),
    (_event_line(start="9999-12-31T23:59:59-01:00"), "outside 1970-01-01"),
    (_event_line(start="9999-12-31T23:59:59+00:00"), "outside 1970-01-01"),
    (_event_line(start="1969-12-31T23:59:59Z"), "outside 1970-01-01"),
    (_event_line(start="2026-06-01"), "has no time zone"),
    (
        '{"device": "PC", "logon": "D\\\\u", "events": [], "x": ' + "9" * 5000 + "}",
        "not valid JSON",
    ),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a":' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
    (_line(device="P\u0000C"), "'device' must not contain NUL"),
    (_event_line(title="a\u0000b"), "events[0].title must not contain NUL"),
    (_event_line(app="\ud800"), "events[0].app is not valid Unicode"),
    (_line(upn="x\udfff@contoso.com"), "'upn' is not valid Unicode"),
    (_line(logon="D\\\ud800"), "'logon' is not valid Unicode"),
    (_line(device="P" * (MAX_DEVICE_CHARS + 1)), "'device' is longer than 256 characters"),
    (_event_line(app="a" * 257), "events[0].app is longer than 256 characters"),
    (_line(upn="u" * 321), "'upn' is longer than 320 characters"),
    # casefold() makes "ß" two characters: the limit applies to the stored value
    (_line(email="ß" * 161), "'email' is longer than 320 characters"),
    (_line(logon="D\\" + "u" * 320), "'logon' is longer than 320 characters"),
    (_line(**{"\ud800": 1}), "unknown field(s) '\\ud800'"),
    (_line(**{"k" * 1000: 1}), "unknown field(s) 'kkkk"),
    ("\udcff" + GOOD, "not UTF-8 text (byte 0xff at character 1)"),
    (GOOD[:10] + "\udcc3\udc28" + GOOD[10:], "not UTF-8 text (byte 0xc3 at character 11)"),
]


@pytest.mark.parametrize(("bad", "expected"), HOSTILE)
def test_hostile_line_is_refused_with_its_line_number(bad: str, expected: str) -> None:
    assert expected in _refused(bad)


def test_extreme_offsets_are_converted_to_utc() -> None:
    east = parse_reports([_event_line(start="2026-06-01T09:00:00+23:59")])[0].events[0]
    west = parse_reports([_event_line(start="1970-01-01T00:00:00-23:59")])[0].events[0]
    assert east.start == datetime(2026, 5, 31, 9, 1, tzinfo=UTC)
    assert west.start == datetime(1970, 1, 1, 23, 59, tzinfo=UTC)


def test_the_bounds_themselves_are_accepted() -> None:
    line = _line(
        device="D" * MAX_DEVICE_CHARS,
        upn="u" * MAX_IDENTIFIER_CHARS,
        events=[
            {"start": "1970-01-01T00:00:00Z", "duration_s": MAX_EVENT_DURATION_S, "app": "a"},
            {
                "start": "9998-12-31T23:59:59Z",
                "duration_s": 0,
                "app": "a" * MAX_APP_CHARS,
                "title": "",
            },
        ],
    )
    first, last = parse_report(1, line).events
    assert first.start == EARLIEST_START
    assert last.start < LATEST_START
    assert first.duration_s == MAX_EVENT_DURATION_S


def test_a_byte_order_mark_on_the_first_line_is_not_an_error() -> None:
    assert parse_reports(["\ufeff" + GOOD])[0].device == "PC"


def test_limits_fit_the_store_columns() -> None:
    """One definition of each limit (domain/reports.py); the columns must hold it."""

    def length(column: Any) -> int:
        assert isinstance(column.type, String)
        assert column.type.length is not None
        return int(column.type.length)

    assert length(ActivityRow.__table__.c.device) == MAX_DEVICE_CHARS
    assert length(ActivityRow.__table__.c.app) == MAX_APP_CHARS
    assert length(IdentifierRow.__table__.c.value) >= MAX_IDENTIFIER_CHARS
    assert length(AgentLogonRow.__table__.c.logon) >= MAX_IDENTIFIER_CHARS


@pytest.mark.parametrize(
    "dialect",
    # SQLAlchemy's dialect classes have no annotations on __init__.
    [sqlite.dialect(), postgresql.dialect()],  # type: ignore[no-untyped-call]
)
def test_the_conflict_target_repeats_the_event_index(dialect: Any) -> None:
    """Ingest names uq_activity_event in ON CONFLICT (…): the text must be the index's own."""
    (index,) = [
        i
        for i in cast(Table, ActivityRow.__table__).indexes
        if i.name == "uq_activity_event"
        and i._ddl_if is not None
        and i._ddl_if.dialect == dialect.name
    ]
    ddl = str(CreateIndex(index).compile(dialect=dialect)).lower()
    assert ddl.endswith(f"on activity ({event_identity_sql(dialect.name)})")
