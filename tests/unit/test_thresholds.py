"""Safety thresholds: a count or a percentage of the store's users."""

from __future__ import annotations

import pytest

from entrasync.domain.thresholds import Threshold


def test_count() -> None:
    threshold = Threshold.parse("10")
    assert not threshold.percent
    assert threshold.limit(0) == 10
    assert threshold.limit(1_000_000) == 10
    assert str(threshold) == "10"


def test_percentage_rounds_down() -> None:
    threshold = Threshold.parse("5%")
    assert threshold.percent
    assert threshold.limit(1000) == 50
    assert threshold.limit(39) == 1
    assert threshold.limit(19) == 0
    assert str(threshold) == "5%"


def test_fractional_percentage() -> None:
    assert Threshold.parse(" 2.5% ").limit(1000) == 25


@pytest.mark.parametrize("text", ["-1", "101%", "-1%", "five", "", "%", "1.5"])
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid threshold"):
        Threshold.parse(text)
