"""One sync cycle in a process of its own, so that its peak memory is its own.

`python -m bench.initial_sync CONFIG NOW` prints one JSON object: seconds, peak RSS (MB,
the whole process, interpreter and imports included), the run status and the actions
applied.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.world import graph_factory, load
from entrasync.bootstrap import open_store
from entrasync.sync.cycle import run_cycle


def peak_rss_mb() -> float:
    """This process's peak resident set size. Linux: `VmHWM` of /proc/self/status, which
    starts afresh at exec; `ru_maxrss` does not (it keeps the high-water mark of the parent
    image the process was forked from, the whole benchmark here)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> int:
    config = load(Path(argv[0]))
    now = datetime.fromisoformat(argv[1])
    store = open_store(config)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    result = run_cycle(store, config, graph_factory(config), now)
    elapsed = time.perf_counter() - started
    peak = peak_rss_mb()
    store.engine.dispose()
    json.dump(
        {
            "seconds": elapsed,
            "peak_rss_mb": peak,
            "rss_before_cycle_mb": baseline,
            "status": result.status,
            "applied": dict(result.applied),
            "graph_requests_counted": result.graph_requests,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
