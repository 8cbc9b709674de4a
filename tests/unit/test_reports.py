"""Agent report parsing: well-formed lines become reports, every malformed one names its line."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from entrasync.domain.identity import IdentifierKind
from entrasync.domain.reports import ReportError, parse_report, parse_reports

GOOD = json.dumps(
    {
        "device": " LAPTOP-42 ",
        "logon": "CONTOSO\\JDoe",
        "upn": "JDoe@Contoso.com",
        "email": "John.Doe@Contoso.com",
        "employee_id": "E-100",
        "events": [
            {
                "start": "2026-06-01T11:00:00+02:00",
                "duration_s": 300,
                "app": "excel.exe",
                "title": "Budget.xlsx",
            },
            {"start": "2026-06-01T09:05:00Z", "duration_s": 0, "app": "outlook.exe"},
        ],
    }
)


def test_good_report_is_normalised() -> None:
    report = parse_report(7, GOOD)
    assert report.line == 7
    assert report.device == "LAPTOP-42"
    assert report.logon == "contoso\\jdoe"
    assert report.identifiers == (
        (IdentifierKind.UPN, "jdoe@contoso.com"),
        (IdentifierKind.EMAIL, "john.doe@contoso.com"),
        (IdentifierKind.EMPLOYEE_ID, "e-100"),
    )
    first, second = report.events
    assert first.start == datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert first.start.tzinfo == UTC
    assert (first.duration_s, first.app, first.title) == (300, "excel.exe", "Budget.xlsx")
    assert second.title is None
    assert second.duration_s == 0


def test_optional_identifiers_may_be_missing_or_empty() -> None:
    line = json.dumps({"device": "PC", "logon": "D\\u", "upn": "", "events": []})
    report = parse_report(1, line)
    assert report.identifiers == ()
    assert report.events == ()


def test_blank_lines_are_skipped_and_line_numbers_kept() -> None:
    line = json.dumps({"device": "PC", "logon": "D\\u", "events": []})
    reports = parse_reports([line, "", "   \n", line])
    assert [r.line for r in reports] == [1, 4]


def _event(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {"start": "2026-06-01T09:00:00Z", "duration_s": 1, "app": "a"}
    event.update(overrides)
    return {"device": "PC", "logon": "D\\u", "events": [event]}


MALFORMED: list[tuple[str, str]] = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"logon": "D\\u", "events": []}), "'device' is required"),
    (json.dumps({"device": "  ", "logon": "D\\u", "events": []}), "'device' is required"),
    (json.dumps({"device": "PC", "events": []}), "'logon' is required"),
    (json.dumps({"device": "PC", "logon": "jdoe", "events": []}), "DOMAIN\\username"),
    (json.dumps({"device": "PC", "logon": "D\\", "events": []}), "DOMAIN\\username"),
    (json.dumps({"device": "PC", "logon": "\\u", "events": []}), "DOMAIN\\username"),
    (json.dumps({"device": "PC", "logon": "a\\b\\c", "events": []}), "DOMAIN\\username"),
    (json.dumps({"device": "PC", "logon": "D\\u"}), "'events' must be a list"),
    (json.dumps({"device": "PC", "logon": "D\\u", "events": {}}), "'events' must be a list"),
    (json.dumps({"device": "PC", "logon": "D\\u", "upn": 5, "events": []}), "'upn' must be"),
    (json.dumps({"device": "PC", "logon": "D\\u", "events": [], "pc": 1}), "unknown field(s) pc"),
    (json.dumps({"device": "PC", "logon": "D\\u", "events": [3]}), "events[0] must be an object"),
    (json.dumps(_event(start=None)), "events[0].start is required"),
    (json.dumps(_event(start="yesterday")), "is not an ISO 8601 time"),
    (json.dumps(_event(start="2026-06-01T09:00:00")), "has no time zone"),
    (json.dumps(_event(duration_s=-1)), "duration_s must be a non-negative integer"),
    (json.dumps(_event(duration_s="60")), "duration_s must be a non-negative integer"),
    (json.dumps(_event(duration_s=True)), "duration_s must be a non-negative integer"),
    (json.dumps(_event(duration_s=1.5)), "duration_s must be a non-negative integer"),
    (json.dumps(_event(app="")), "events[0].app is required"),
    (json.dumps(_event(title=7)), "events[0].title must be a string"),
]


@pytest.mark.parametrize(("bad", "message"), MALFORMED)
def test_malformed_line_names_its_line_number(bad: str, message: str) -> None:
    good = json.dumps({"device": "PC", "logon": "D\\u", "events": []})
    with pytest.raises(ReportError) as caught:
        parse_reports([good, "", bad, good])
    assert caught.value.line == 3
    assert str(caught.value).startswith("line 3: ")
    assert message in str(caught.value)


def test_first_bad_line_is_the_one_reported() -> None:
    with pytest.raises(ReportError) as caught:
        parse_reports(["{", "[]"])
    assert caught.value.line == 1
