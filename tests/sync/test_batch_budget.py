"""A plan made in parts (sync/batches.py) is judged on its counted figures, but each part is
planned afresh before it is applied: agents that report or an admin who acts meanwhile can
make a part hold more of a kind than was counted. `_Budget` keeps every guarded kind within
its threshold whatever the parts hold."""

from __future__ import annotations

from entrasync.domain.actions import ActionKind
from entrasync.domain.plan_model import PlannedAction
from entrasync.sync.batches import _Budget


def _untracks(n: int) -> list[PlannedAction]:
    return [PlannedAction(ActionKind.UNTRACK, "member of DNT", i) for i in range(n)]


def test_a_kind_that_outgrows_its_threshold_while_applied_is_held_from_then_on() -> None:
    budget = _Budget({ActionKind.UNTRACK: 5, ActionKind.PURGE: 0}, set(), total=100)
    preregister = PlannedAction(ActionKind.PREREGISTER, "not in the store", None, "o1")
    run, held = budget.split([*_untracks(3), preregister])
    assert (len(run), held) == (4, [])
    run, held = budget.split(_untracks(3))  # 6 > 5: none of these three runs
    assert (run, len(held)) == ([], 3) and budget.late == {ActionKind.UNTRACK}
    run, held = budget.split([*_untracks(1), preregister])  # held from then on
    assert (run, len(held)) == ([preregister], 1)
    assert budget.spent[ActionKind.UNTRACK] == 3


def test_a_kind_held_when_counted_is_held_in_every_part_and_not_late() -> None:
    budget = _Budget({ActionKind.UNTRACK: 5}, {ActionKind.UNTRACK}, total=100)
    run, held = budget.split(_untracks(2))
    assert (run, len(held), budget.late) == ([], 2, set())
