"""Colour only on a terminal and without NO_COLOR; progress drawn only on a terminal."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest

from entrasync.cli import output


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("terminal", "no_color", "wanted"),
    [
        (True, None, True),
        (True, "1", False),
        (True, "", True),  # no-color.org: only a non-empty value counts
        (False, None, False),
    ],
)
def test_colour_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, no_color: str | None, wanted: bool
) -> None:
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    stream = FakeTerminal() if terminal else io.StringIO()
    assert output.colour_wanted(stream) is wanted


def test_tables_are_plain_when_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    piped = io.StringIO()
    monkeypatch.setattr("sys.stdout", piped)
    output.print_table(None, ["user", "licenses"], [["jdoe@contoso.com", 1]])
    assert "jdoe@contoso.com" in piped.getvalue() and "\x1b[" not in piped.getvalue()
    shown = FakeTerminal()
    monkeypatch.setattr("sys.stdout", shown)
    output.say("[red]x[/red]")  # markup is not interpreted in messages
    assert "[red]x[/red]" in shown.getvalue()


def test_progress_is_off_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with output.progress() as bar:
        assert bar.disable
        bar.add_task("reading", total=10)
    monkeypatch.setattr("sys.stderr", FakeTerminal())
    with output.progress() as bar:
        assert not bar.disable


def test_cycle_progress_counts_the_actions_the_cycle_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = FakeTerminal()
    monkeypatch.setattr("sys.stderr", screen)
    created: list[Any] = []
    real = output.progress

    def keep(**kw: Any) -> Any:
        created.append(real(**kw))
        return created[-1]

    monkeypatch.setattr(output, "progress", keep)
    sync_log = logging.getLogger("entrasync.sync")
    before = sync_log.level
    with output.cycle_progress("reading Entra ID"):
        for kind in ("merge", "merge", "purge"):
            # What entrasync.sync.cycle logs per applied action.
            sync_log.info("action applied", extra={"action": kind})
        sync_log.info("something else")
    (task,) = created[0].tasks
    assert task.completed == 3 and "purge" in task.description
    assert sync_log.level == before and not sync_log.handlers
