"""Property-based, through the store: every report the parser accepts is stored without an
error on both engines (no value too long, no NUL, no time out of range), and storing it again
adds nothing (the event identity holds for any value, odd offsets and titles included)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_strategies import report_object

from entrasync.config import Config
from entrasync.domain.reports import ReportError, parse_report
from entrasync.services.ingest import ingest_reports
from entrasync.store.db import Store

NOW = datetime(2026, 6, 2, tzinfo=UTC)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bodies=st.lists(report_object, min_size=1, max_size=3))
def test_what_parses_is_stored_once(store: Store, config: Config, bodies: list[Any]) -> None:
    reports = []
    for line, body in enumerate(bodies, start=1):
        try:
            reports.append(parse_report(line, json.dumps(body)))
        except ReportError:
            continue
    if not reports:
        return
    first = ingest_reports(store, config, reports, NOW, source="property")
    again = ingest_reports(store, config, reports, NOW, source="property")
    events = first.rows_stored + first.rows_already_stored
    assert again.rows_stored == 0
    assert again.rows_already_stored == events
