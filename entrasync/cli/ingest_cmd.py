"""`entrasync ingest FILE`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from entrasync.cli.context import app_context, now
from entrasync.cli.output import print_json, say
from entrasync.services.ingest import ingest_file


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="Agent reports, one JSON object per line.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Load agent reports (JSON Lines). A bad line stores nothing from the file.

        Example: entrasync ingest reports-2026-06-01.jsonl
        """
        actx = app_context(ctx)
        summary = ingest_file(actx.store(), actx.config, file, now())
        if as_json:
            print_json(asdict(summary))
            return
        say(
            f"{summary.reports} reports: {summary.rows_stored} activity rows stored, "
            f"{summary.reports_dropped} dropped (untracked users), "
            f"{summary.users_created} new users, {summary.agents_created} new agents, "
            f"{summary.pending} waiting in the pending queue"
        )
