"""The machine a run was made on (for RESULTS.md)."""

from __future__ import annotations

import os
import platform
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text


def describe(postgres_url: str | None) -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gb = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": None,
    }
    if postgres_url:
        engine = create_engine(postgres_url)
        try:
            with engine.connect() as conn:
                info["postgresql"] = str(conn.execute(text("SHOW server_version")).scalar_one())
        finally:
            engine.dispose()
    return info
