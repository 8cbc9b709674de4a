"""Terminal output: rich tables on a terminal, plain JSON for scripts, no colour when piped
or when NO_COLOR is set (to any non-empty value, per no-color.org), progress bars only on a
terminal."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text


def colour_wanted(stream: Any) -> bool:
    return not os.environ.get("NO_COLOR") and _is_terminal(stream)


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    plain = not colour_wanted(stream)
    return Console(file=stream, no_color=plain, highlight=False, soft_wrap=True, emoji=False)


def console(stderr: bool = False) -> Console:
    return _console(stderr)


def progress(*, stderr: bool = True, transient: bool = True) -> Progress:
    """A progress display for long operations: drawn only when the stream is a terminal
    (stderr by default, so piped stdout stays clean), a no-op otherwise.

    Use as ``with progress() as bar: task = bar.add_task("ingesting", total=n)``."""
    out = _console(stderr)
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=transient,
        disable=not _is_terminal(out.file),
    )


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    console().print(table)


def say(message: str) -> None:
    console().print(message, markup=False)


def error(message: str) -> None:
    _console(stderr=True).print(f"entrasync: error: {message}", markup=False)
