"""Per-run safety thresholds: a count (`10`) or a share of the store's users (`5%`)."""

from __future__ import annotations

import math
from dataclasses import dataclass


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
            if count < 0:
                raise ValueError
            return cls(float(count), percent=False)
        except ValueError:
            raise ValueError(
                f"invalid threshold {text!r}: expected a count (e.g. 10) or a percentage (e.g. '5%')"
            ) from None

    def limit(self, total_users: int) -> int:
        """How many actions of one kind a run may take with this many users in the store."""
        if self.percent:
            return math.floor(total_users * self.value / 100)
        return int(self.value)

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else str(int(self.value))
