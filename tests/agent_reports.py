"""Agent report lines as the agents send them, for tests."""

from __future__ import annotations

import json
from typing import Any


def report(
    logon: str,
    device: str,
    *,
    upn: str | None = None,
    email: str | None = None,
    employee_id: str | None = None,
    events: int = 1,
    start: str = "2026-06-01T09:00:00Z",
) -> str:
    """One agent report line (JSON) as the agents send it."""
    body: dict[str, Any] = {"device": device, "logon": logon}
    if upn:
        body["upn"] = upn
    if email:
        body["email"] = email
    if employee_id:
        body["employee_id"] = employee_id
    body["events"] = [
        {"start": start, "duration_s": 60 * (i + 1), "app": "excel.exe", "title": f"Book{i}.xlsx"}
        for i in range(events)
    ]
    return json.dumps(body)
