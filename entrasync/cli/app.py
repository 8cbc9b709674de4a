"""The `entrasync` command line: wiring only; the work happens in entrasync.services."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entrasync.cli.context import AppContext

app = typer.Typer(
    name="entrasync",
    help=(
        "Keeps a workforce-analytics license store in line with Microsoft Entra ID.\n\n"
        "Example: entrasync --config /etc/entrasync/entrasync.toml status"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: $ENTRASYNC_CONFIG, else /etc/entrasync/entrasync.toml).",
            show_default=False,
        ),
    ] = None,
) -> None:
    ctx.obj = AppContext(config)
