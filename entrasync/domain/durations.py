"""Durations as written in the config file: `30s`, `5m`, `24h`, `30d` (an integer or decimal)."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
# No setting or option means more than a century; the cap also keeps `now - duration` and
# `timedelta` itself from overflowing on input such as "99999999999w".
LONGEST = timedelta(days=36500)


def parse_duration(text: str) -> timedelta:
    """Parse `5m`-style text; raises ValueError with the accepted form in the message."""
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(
            f"invalid duration {_shown(text)}: expected a number and a unit s, m, h, d or w "
            "(e.g. '5m')"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > LONGEST.total_seconds():
        raise ValueError(
            f"invalid duration {_shown(text)}: too long (at most {format_duration(LONGEST)})"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The largest whole unit (`2d`, `36h`, `90s`), as a config file writes it: one day is
    `24h`; fractions of a second as `0.5s`."""
    total = value.total_seconds()
    if total != int(total):
        return f"{total:g}s"
    seconds = int(total)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if unit == "d" and seconds < 2 * size:
            continue  # `24h` is how configs and docs write a day (purge_delay's default)
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _shown(text: str) -> str:
    # Error messages quote the input; a pasted blob must not flood the terminal.
    return repr(text if len(text) <= 40 else text[:40] + "…")
