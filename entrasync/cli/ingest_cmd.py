"""`entrasync ingest FILE`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.progress import Progress

from entrasync.cli.context import app_context, now
from entrasync.cli.options import JsonOpt
from entrasync.cli.output import print_json, progress, say
from entrasync.domain.reports import AgentReport
from entrasync.services.ingest import (
    DECODE_ERRORS,
    ENCODING,
    IngestSummary,
    ingest_reports,
    read_reports,
)


def _read(file: Path, bar: Progress) -> list[AgentReport]:
    """Parse the file under a byte-count progress bar. The bar opens the file, the service
    turns every failure (missing, a directory, unreadable, a bad line) into its message."""

    def opener(path: Path) -> TextIO:
        task = bar.add_task(f"reading {path.name}", total=path.stat().st_size, unit="bytes")
        return bar.open(path, "r", encoding=ENCODING, errors=DECODE_ERRORS, task_id=task)

    return read_reports(file, opener)


def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Agent reports, one JSON object per line.")],
    as_json: JsonOpt = False,
) -> None:
    """Load agent reports (JSON Lines). A bad line stores nothing from the file; an
    event already stored is skipped, so a file can be loaded again safely.

    Example: entrasync ingest reports-2026-06-01.jsonl
    """
    actx = app_context(ctx)
    with progress() as bar:
        reports = _read(file, bar)
        bar.add_task(f"storing {len(reports)} reports (all or nothing)", total=None)
        summary = ingest_reports(actx.store(), actx.config, reports, now(), source=str(file))
    if as_json:
        print_json(asdict(summary))
    else:
        say(_summary_line(summary))


def _summary_line(summary: IngestSummary) -> str:
    return (
        f"{summary.reports} reports: {summary.rows_stored} activity rows stored, "
        f"{summary.rows_already_stored} already stored (skipped), "
        f"{summary.reports_dropped} dropped (untracked users), "
        f"{summary.users_created} new users, {summary.agents_created} new agents, "
        f"{summary.pending} waiting in the pending queue"
    )
