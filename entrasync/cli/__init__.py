"""Entry point: runs the typer app and turns failures into the documented exit codes."""

from __future__ import annotations

import sys

from entrasync.cli import (
    audit_cmd,
    check_config,
    daemon_cmd,
    db_cmd,
    demo_cmd,
    groups_cmd,
    ingest_cmd,
    pending_cmd,
    status_cmd,
    sync_cmd,
    users_cmd,
)
from entrasync.cli.app import app
from entrasync.cli.output import error
from entrasync.errors import EntrasyncError

__all__ = ["app", "main"]

for _module in (
    audit_cmd,
    check_config,
    daemon_cmd,
    db_cmd,
    demo_cmd,
    groups_cmd,
    ingest_cmd,
    pending_cmd,
    status_cmd,
    sync_cmd,
    users_cmd,
):
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run one command; usage errors exit 2 (click), our failures their documented code."""
    try:
        app(args=argv, prog_name="entrasync")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except EntrasyncError as exc:
        error(str(exc))
        return int(exc.exit_code)
    return 0


def run() -> None:
    sys.exit(main())
