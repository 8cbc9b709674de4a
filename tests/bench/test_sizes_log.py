"""`python -m bench --users N,M` logs each size's figures as the size ends: a run stopped
during its largest size (hours at a million users) keeps the figures of the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.scenario import Scenario, sized
from bench.sizes import run_sizes

# The figures of one store at one size, as a full run printed them (the twelfth round's).
SAVED = Path(__file__).parents[2] / "bench" / "RESULTS-scale-both-100k-12th.json"


def test_each_size_is_logged_as_one_json_line_when_it_ends() -> None:
    lines: list[str] = []
    measured: list[int] = []

    def measure(scenario: Scenario, log: Any) -> dict[str, Any]:
        # By the time the second size is measured, the first is on the log already.
        assert len([line for line in lines if " measured: " in line]) == len(measured)
        measured.append(scenario.users)
        figures = json.loads(SAVED.read_text(encoding="utf-8"))["sizes"][0]["sqlite"]
        del figures["users"]  # the size's own, added by run_sizes
        return {"sqlite": {**figures, "steady_cycle_ms": float(scenario.users) / 1000}}

    run_sizes(
        [sized(20_000), sized(10_000)],
        sqlite=True,
        postgres_url=None,
        measure=measure,
        log=lines.append,
    )

    logged = [
        json.loads(line.split(" measured: ", 1)[1]) for line in lines if " measured: " in line
    ]
    assert [size["users"] for size in logged] == [10_000, 20_000]
    assert (logged[1]["sqlite"]["users"], logged[1]["sqlite"]["steady_cycle_ms"]) == (20_000, 20.0)
