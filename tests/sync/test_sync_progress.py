"""The CLI's progress display counts the actions a real cycle applies."""

from __future__ import annotations

import io
from typing import Any

import pytest
from syncworld import World, later, report

from entrasync.cli import output


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cycle_progress_counts_applied_actions(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = world.tenant
    ids = [t.add_user(f"p{i}@contoso.com") for i in range(3)]
    world.ingest(*(report(f"CONTOSO\\p{i}", "PC", upn=f"p{i}@contoso.com") for i in range(3)))
    t.add_members(world.dnt, ids)
    monkeypatch.setattr("sys.stderr", FakeTerminal())
    created: list[Any] = []
    real = output.progress

    def progress(**kw: Any) -> Any:
        created.append(real(**kw))
        return created[-1]

    monkeypatch.setattr(output, "progress", progress)
    with output.cycle_progress("reading Entra ID"):
        result = world.sync(later(0))
    assert result.applied["untrack"] == 3
    (task,) = created[0].tasks
    assert task.completed == 3 and "untrack" in task.description
