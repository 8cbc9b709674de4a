"""Durations as written in the config file."""

from __future__ import annotations

from datetime import timedelta

import pytest

from entrasync.domain.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("24h", timedelta(hours=24)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 10 m ", timedelta(minutes=10)),
        ("0s", timedelta(0)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "m", "soon", "-5m", "5 minutes", "5M", "1h30m"])
def test_invalid_duration_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as caught:
        parse_duration(text)
    assert "e.g. '5m'" in str(caught.value)


@pytest.mark.parametrize("text", ["30s", "5m", "24h", "30d", "90s"])
def test_format_round_trips(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_format_picks_the_largest_whole_unit() -> None:
    assert format_duration(timedelta(days=2)) == "2d"
    assert format_duration(timedelta(hours=36)) == "36h"
    assert format_duration(timedelta(seconds=90)) == "90s"
    assert format_duration(timedelta(0)) == "0s"


@pytest.mark.parametrize("text", ["99999999999w", "36501d", "9" * 400 + "s"])
def test_absurd_durations_are_refused_not_overflowed(text: str) -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration(text)


def test_longest_duration_is_accepted() -> None:
    assert parse_duration("36500d") == timedelta(days=36500)


def test_format_keeps_fractions_of_a_second() -> None:
    assert format_duration(timedelta(milliseconds=500)) == "0.5s"
    assert format_duration(timedelta(seconds=1.5)) == "1.5s"


def test_invalid_duration_does_not_echo_a_huge_input() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("x" * 10_000)
    assert len(str(caught.value)) < 200
