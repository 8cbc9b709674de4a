"""Hypothesis strategies for agent report lines (shared by the unit and integration
property tests): random JSON values, odd strings and numbers, and report-shaped objects whose
fields are mostly plausible and sometimes anything at all."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from entrasync.domain.reports import EARLIEST_START, LATEST_START, MAX_EVENT_DURATION_S

# Every code point, lone surrogates included (json.dumps escapes them as \udXXX, which
# json.loads turns back into lone surrogates: PostgreSQL cannot store those).
any_char = st.characters(exclude_categories=())
odd_text = st.one_of(
    st.text(any_char, max_size=40),
    st.sampled_from(["", " ", "\x00", "\ud800", "ß" * 161, "İ", "D\\u", "\\", "\u2028", "\ufeff"]),
    st.integers(min_value=250, max_value=330).map(lambda n: "x" * n),
)
huge = st.sampled_from([10**20, -(10**20), 2**31, 2**63, 2**64, MAX_EVENT_DURATION_S + 1])
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge,
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)

offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# the calendar's edges with every offset (year 1 east of UTC underflows when converted)
iso_times = st.one_of(
    st.datetimes(timezones=offsets).map(lambda moment: moment.isoformat()),
    st.datetimes().map(lambda moment: moment.isoformat()),  # naive
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "9998-12-31T23:59:59Z",
            "2026-06-01",
            "2026-06-01T09:00:00Z",
            "noon",
        ]
    ),
)
durations = st.one_of(
    st.integers(min_value=-2, max_value=MAX_EVENT_DURATION_S + 2),
    huge,
    json_scalar,
)


def maybe(plausible: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nine times in ten a plausible value (so that whole reports parse often enough to check
    what comes out), else an odd or wrongly typed one."""
    return st.integers(min_value=0, max_value=9).flatmap(
        lambda roll: odd if roll == 0 else plausible
    )


plain_char = st.characters(exclude_categories=["Cs"], exclude_characters="\x00\\")
plain_text = st.text(plain_char, min_size=1, max_size=30).filter(str.strip)
plausible_times = st.datetimes(
    min_value=EARLIEST_START.replace(tzinfo=None) + timedelta(days=1),
    max_value=LATEST_START.replace(tzinfo=None) - timedelta(days=1),
    timezones=offsets,
).map(lambda moment: moment.isoformat())
any_value = st.one_of(json_value, odd_text)

event = st.fixed_dictionaries(
    {
        "start": maybe(plausible_times, st.one_of(iso_times, any_value)),
        "duration_s": maybe(st.integers(0, MAX_EVENT_DURATION_S), st.one_of(durations, huge)),
        "app": maybe(plain_text, any_value),
    },
    optional={"title": maybe(st.text(plain_char, max_size=40), any_value), "extra": json_value},
)
report_object = st.fixed_dictionaries(
    {
        "device": maybe(plain_text, any_value),
        "logon": maybe(
            st.tuples(plain_text, plain_text).map("\\".join),
            st.one_of(st.tuples(odd_text, odd_text).map("\\".join), any_value),
        ),
        "events": maybe(st.lists(maybe(event, any_value), min_size=1, max_size=3), any_value),
    },
    optional={
        "upn": maybe(plain_text, any_value),
        "email": maybe(plain_text, any_value),
        "employee_id": maybe(plain_text, any_value),
    },
)
