"""Per-run safety thresholds: a count (`10`) or a share of the store's users (`5%`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

# A count above any tenant's size is a typo, not a limit (and keeps the value a safe float).
MAX_COUNT = 10_000_000


@dataclass(frozen=True)
class Threshold:
    value: float
    percent: bool

    @classmethod
    def parse(cls, text: str) -> Threshold:
        text = text.strip()
        try:
            if text.endswith("%"):
                value = float(text[:-1])
                if not 0 <= value <= 100:
                    raise ValueError
                return cls(value, percent=True)
            count = int(text)
            if not 0 <= count <= MAX_COUNT:
                raise ValueError
            return cls(float(count), percent=False)
        except ValueError:
            shown = text if len(text) <= 40 else text[:40] + "…"
            raise ValueError(
                f"invalid threshold {shown!r}: expected a count from 0 to {MAX_COUNT:_} "
                "(e.g. 10) or a percentage from 0 to 100 (e.g. '5%')"
            ) from None

    def limit(self, total_users: int) -> int:
        """How many actions of one kind a run may take with this many users in the store."""
        if self.percent:
            return math.floor(total_users * self.value / 100)
        return int(self.value)

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else str(int(self.value))
