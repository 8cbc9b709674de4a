"""Terminal output: rich tables on a terminal, plain JSON for scripts, no colour when piped
or when NO_COLOR is set."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    plain = "NO_COLOR" in os.environ or not stream.isatty()
    return Console(file=stream, no_color=plain, highlight=False, soft_wrap=True, emoji=False)


def console() -> Console:
    return _console()


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
