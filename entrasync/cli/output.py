"""Terminal output: rich tables on a terminal, plain JSON for scripts, no colour when piped
or when NO_COLOR is set (to any non-empty value, per no-color.org), progress bars only on a
terminal."""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from rich import filesize
from rich.cells import cell_len
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

T = TypeVar("T")


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


class _Count(ProgressColumn):
    """`3/10`; `12.5/30.1 MB` for a task added with ``unit="bytes"``; `42` without a total."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        if task.total is None:
            return Text(str(done) if done else "")
        if task.fields.get("unit") == "bytes":
            return Text(f"{filesize.decimal(done)}/{filesize.decimal(int(task.total))}")
        return Text(f"{done}/{int(task.total)}")


def progress(*, stderr: bool = True, transient: bool = True) -> Progress:
    """A progress display for long operations: drawn only when the stream is a terminal
    (stderr by default, so piped stdout stays clean), a no-op otherwise.

    Use as ``with progress() as bar: task = bar.add_task("ingesting", total=n)``."""
    out = _console(stderr)
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        _Count(),
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


def print_entries(columns: Sequence[str], entries: Sequence[tuple[Sequence[str], str]]) -> None:
    """A table whose cells are never cut, each row followed by its note (an audit reason),
    wrapped to the terminal's width under it. A note column would leave the others too narrow
    on 80 columns: `account.settings_changed` alone takes 24."""
    out = console()
    widths = [
        max([cell_len(head), *(cell_len(cells[i]) for cells, _ in entries)])
        for i, head in enumerate(columns)
    ]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell + " " * (width - cell_len(cell)) for cell, width in zip(cells, widths, strict=True)
        )
        return "  ".join(padded).rstrip()

    indent = " " * (widths[0] + 2) if widths else ""
    out.print(line(columns), markup=False)
    for cells, note in entries:
        out.print(line(cells), markup=False)
        for text in textwrap.wrap(note, max(out.width - len(indent), 20)):
            out.print(indent + text, markup=False)


def print_list(
    items: Sequence[T],
    as_json: bool,
    columns: Sequence[str],
    row: Callable[[T], Sequence[Any]],
    view: Callable[[T], Any] = lambda item: item,
    empty: str | None = None,
) -> None:
    """A list command's output: the items as JSON (each as `view` gives it), or a table of
    `columns`, one `row` an item; `empty` is said instead of an empty table."""
    if as_json:
        print_json([view(item) for item in items])
    elif not items and empty is not None:
        say(empty)
    else:
        print_table(None, columns, [row(item) for item in items])


def say(message: str) -> None:
    console().print(message, markup=False)


def error(message: str) -> None:
    _console(stderr=True).print(f"entrasync: error: {message}", markup=False)


def error_detail(text: str) -> None:
    """Multi-line diagnostics (a traceback asked for with ENTRASYNC_DEBUG=1), as they are."""
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


class _ActionCounter(logging.Handler):
    """Advances a progress task on each "action applied" record of the sync logger."""

    def __init__(self, bar: Progress, task: Any) -> None:
        super().__init__(logging.INFO)
        self.bar = bar
        self.task = task

    def emit(self, record: logging.LogRecord) -> None:
        action = getattr(record, "action", None)
        if isinstance(action, str):
            self.bar.update(self.task, description=f"applying actions (last: {action})")
            self.bar.advance(self.task)


@contextmanager
def cycle_progress(title: str) -> Iterator[None]:
    """A spinner and a count of applied actions while a sync cycle runs (a first sync of a
    large tenant, or many purges, takes a while); only on a terminal."""
    with progress() as bar:
        if bar.disable:
            yield
            return
        task = bar.add_task(title, total=None)
        logger = logging.getLogger("entrasync.sync")
        handler = _ActionCounter(bar, task)
        level = logger.level
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
