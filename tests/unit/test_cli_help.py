"""Every command and command group explains itself with an example (`--help` exits 0)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer

from entrasync.cli import app


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """This command's path and those of everything under it (a group has `.commands`)."""
    found = [prefix]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _paths(sub, (*prefix, name))
    return found


COMMANDS = _paths(typer.main.get_command(app))


def test_the_walk_finds_the_whole_tree() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "status", "users", "users purge", "audit export", "demo", "db upgrade"} <= names
    assert len(names) > 25


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "entrasync")
def test_help_has_an_example(cli: Any, path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert result.code == 0, result.err
    examples = re.findall(r"^\s*Example: (entrasync\b.*)$", result.out, re.MULTILINE)
    assert examples, f"no 'Example:' line in:\n{result.out}"
    # The example runs the command it documents.
    assert all(" ".join(path) in example for example in examples), examples
