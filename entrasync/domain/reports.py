"""Agent reports (JSON Lines) parsed into plain data; every error names its line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from entrasync.domain.identity import IdentifierKind, normalize, normalize_logon


class ReportError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class Event:
    start: datetime
    duration_s: int
    app: str
    title: str | None


@dataclass(frozen=True)
class AgentReport:
    line: int
    device: str
    logon: str  # normalised
    identifiers: tuple[tuple[IdentifierKind, str], ...]  # normalised, in match order
    events: tuple[Event, ...]


_OPTIONAL_IDS = (
    ("upn", IdentifierKind.UPN),
    ("email", IdentifierKind.EMAIL),
    ("employee_id", IdentifierKind.EMPLOYEE_ID),
)
_KNOWN_KEYS = {"device", "logon", "upn", "email", "employee_id", "events"}


def parse_reports(lines: Iterable[str]) -> list[AgentReport]:
    """All reports of a file, or ReportError for the first bad line (nothing partial)."""
    reports = []
    for number, text in enumerate(lines, start=1):
        if text.strip():
            reports.append(parse_report(number, text))
    return reports


def parse_report(line: int, text: str) -> AgentReport:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(line, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ReportError(line, "expected a JSON object")
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise ReportError(line, f"unknown field(s) {', '.join(unknown)}")
    device = _required_str(data, "device", line)
    try:
        logon = normalize_logon(_required_str(data, "logon", line))
    except ValueError as exc:
        raise ReportError(line, str(exc)) from None
    identifiers = []
    for key, kind in _OPTIONAL_IDS:
        value = data.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ReportError(line, f"field {key!r} must be a string")
        identifiers.append((kind, normalize(value)))
    raw_events = data.get("events")
    if not isinstance(raw_events, list):
        raise ReportError(line, "field 'events' must be a list")
    events = tuple(_parse_event(line, index, item) for index, item in enumerate(raw_events))
    return AgentReport(line, device.strip(), logon, tuple(identifiers), events)


def _required_str(data: dict[str, object], key: str, line: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ReportError(line, f"field {key!r} is required and must be a non-empty string")
    return value


def _parse_event(line: int, index: int, item: object) -> Event:
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise ReportError(line, f"{where} must be an object")
    start_text = item.get("start")
    if not isinstance(start_text, str):
        raise ReportError(line, f"{where}.start is required (ISO 8601 time)")
    try:
        start = datetime.fromisoformat(start_text)
    except ValueError:
        raise ReportError(line, f"{where}.start {start_text!r} is not an ISO 8601 time") from None
    if start.tzinfo is None:
        raise ReportError(line, f"{where}.start {start_text!r} has no time zone (add Z)")
    duration = item.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
        raise ReportError(line, f"{where}.duration_s must be a non-negative integer")
    app = item.get("app")
    if not isinstance(app, str) or not app:
        raise ReportError(line, f"{where}.app is required")
    title = item.get("title")
    if title is not None and not isinstance(title, str):
        raise ReportError(line, f"{where}.title must be a string")
    return Event(start.astimezone(UTC), duration, app, title)
