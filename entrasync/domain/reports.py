"""Agent reports (JSON Lines) parsed into plain data; every error names its line.

A line that parses is storable as it is: every string fits its column and holds no NUL or lone
surrogate (PostgreSQL refuses both), every time is UTC inside the bounds below, every duration
fits the column. Whatever an agent (or an attacker) writes ends in a report or a ReportError
with the line number, never in another exception.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from entrasync.domain.identity import IdentifierKind, normalize, normalize_logon

# The limits, defined once (tests/unit/test_report_bounds.py checks the columns hold them).
# One event is one stretch of activity in one window: a week is far beyond any real one, and
# keeps start + duration inside the calendar and the 32-bit column.
MAX_EVENT_DURATION_S = 7 * 24 * 3600
# Agents write times from their clock; before the Unix epoch is a clock that was never set.
# The upper bound keeps every start (plus a duration) a representable UTC datetime.
EARLIEST_START = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_START = datetime(9999, 1, 1, tzinfo=UTC)
MAX_DEVICE_CHARS = 256  # activity.device
MAX_APP_CHARS = 256  # activity.app
MAX_IDENTIFIER_CHARS = 320  # identifiers.value and agent_logons.logon, after normalising
_ECHO_CHARS = 60  # how much of a bad value a message repeats
_BOM = "\ufeff"
_RANGE = "1970-01-01T00:00:00Z … 9999-01-01T00:00:00Z (UTC)"


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
    """All reports of a file, or ReportError for the first bad line (nothing partial).

    Lines read with ``errors="surrogateescape"`` carry undecodable bytes as lone surrogates:
    they are reported as "not UTF-8" on their line."""
    reports = []
    for number, text in enumerate(lines, start=1):
        if number == 1 and text.startswith(_BOM):
            text = text[1:]
        if text.strip():
            reports.append(parse_report(number, text))
    return reports


def parse_report(line: int, text: str) -> AgentReport:
    data = _load_json(line, text)
    if not isinstance(data, dict):
        raise ReportError(line, "expected a JSON object")
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise ReportError(line, f"unknown field(s) {', '.join(_key(k) for k in unknown)}")
    device = _string(line, "field 'device'", data.get("device"), None).strip()
    if not device:
        raise ReportError(line, "field 'device' is required and must be a non-empty string")
    device = _bounded(line, "field 'device'", device, MAX_DEVICE_CHARS)
    logon = _logon(line, data.get("logon"))
    identifiers = []
    for key, kind in _OPTIONAL_IDS:
        value = data.get(key)
        if value is None or value == "":
            continue
        where = f"field {key!r}"
        if not isinstance(value, str):
            raise ReportError(line, f"{where} must be a string")
        normal = normalize(_string(line, where, value, None))
        identifiers.append((kind, _bounded(line, where, normal, MAX_IDENTIFIER_CHARS)))
    raw_events = data.get("events")
    if not isinstance(raw_events, list):
        raise ReportError(line, "field 'events' must be a list")
    events = tuple(_parse_event(line, index, item) for index, item in enumerate(raw_events))
    return AgentReport(line, device, logon, tuple(identifiers), events)


def _load_json(line: int, text: str) -> object:
    if not text.isascii():  # O(1): the common case pays nothing
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ReportError(line, _not_utf8(text, exc.start)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(line, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ReportError(line, "not valid JSON (nested too deeply)") from None
    except ValueError:  # an integer of more than 4300 digits (sys.int_info)
        raise ReportError(line, "not valid JSON (a number with too many digits)") from None


def _not_utf8(text: str, index: int) -> str:
    char = text[index]
    if "\udc80" <= char <= "\udcff":  # an undecodable byte, as surrogateescape carries it
        return f"not UTF-8 text (byte 0x{ord(char) - 0xDC00:02x} at character {index + 1})"
    return f"not valid Unicode (lone surrogate at character {index + 1})"


def _cut(text: str) -> str:
    return text if len(text) <= _ECHO_CHARS else text[: _ECHO_CHARS - 1] + "…"


def _echo(value: str) -> str:
    """A value for a message: quoted, escaped (no control character or lone surrogate
    reaches the terminal) and cut short."""
    shown = repr(value)
    return shown if len(shown) <= _ECHO_CHARS else _cut(shown[:-1]) + shown[-1]


def _key(name: str) -> str:
    plain = name.isascii() and name.isidentifier() and len(name) <= _ECHO_CHARS
    return name if plain else _echo(name)


def _string(line: int, where: str, value: object, limit: int | None) -> str:
    """A string the store can hold: no NUL, no lone surrogate, at most `limit` characters."""
    if not isinstance(value, str):
        raise ReportError(line, f"{where} is required and must be a non-empty string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ReportError(line, f"{where} is not valid Unicode (lone surrogate)") from None
    if "\x00" in value:
        raise ReportError(line, f"{where} must not contain NUL characters")
    return value if limit is None else _bounded(line, where, value, limit)


def _bounded(line: int, where: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise ReportError(line, f"{where} is longer than {limit} characters")
    return value


def _logon(line: int, value: object) -> str:
    where = "field 'logon'"
    text = _string(line, where, value, None)
    if not text.strip():
        raise ReportError(line, f"{where} is required and must be a non-empty string")
    try:
        logon = normalize_logon(text)
    except ValueError:
        raise ReportError(
            line, f"logon {_echo(text)} is not of the form DOMAIN\\username"
        ) from None
    return _bounded(line, where, logon, MAX_IDENTIFIER_CHARS)


def _parse_event(line: int, index: int, item: object) -> Event:
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise ReportError(line, f"{where} must be an object")
    start = _start(line, where, item.get("start"))
    duration = item.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
        raise ReportError(line, f"{where}.duration_s must be a non-negative integer")
    if duration > MAX_EVENT_DURATION_S:
        raise ReportError(
            line,
            f"{where}.duration_s must be at most {MAX_EVENT_DURATION_S} (7 days), "
            f"not {_cut(str(duration))}",
        )
    app = item.get("app")
    if not isinstance(app, str) or not app:
        raise ReportError(line, f"{where}.app is required")
    app = _string(line, f"{where}.app", app, MAX_APP_CHARS)
    title = item.get("title")
    if title is not None:
        if not isinstance(title, str):
            raise ReportError(line, f"{where}.title must be a string")
        title = _string(line, f"{where}.title", title, None)
    return Event(start, duration, app, title)


def _start(line: int, where: str, value: object) -> datetime:
    if not isinstance(value, str):
        raise ReportError(line, f"{where}.start is required (ISO 8601 time)")
    shown = _echo(value)
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        raise ReportError(line, f"{where}.start {shown} is not an ISO 8601 time") from None
    if start.tzinfo is None:
        raise ReportError(line, f"{where}.start {shown} has no time zone (add Z)")
    outside = f"{where}.start {shown} is outside {_RANGE}"
    try:
        start = start.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        raise ReportError(line, outside) from None
    if not EARLIEST_START <= start < LATEST_START:
        raise ReportError(line, outside)
    return start
