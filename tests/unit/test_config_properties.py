"""Property tests over the config loader: whatever the file holds, loading it either succeeds
or raises ConfigError naming the file and a key (or the line), never another exception and
never the store password. Also the parsers it is built on, and the URL masking."""

from __future__ import annotations

import json
import os
import re
import string
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrasync.config import Config, bounds_of, load_config
from entrasync.domain.durations import LONGEST, parse_duration
from entrasync.domain.thresholds import MAX_COUNT, Threshold
from entrasync.errors import ConfigError
from entrasync.store.urls import hide, safe_url

SECRET = "Pw-S3cret-9"
# ENTRASYNC_PROPERTY_EXAMPLES=5000 for a longer hunt; 200 keeps the suite fast.
FAST = settings(
    max_examples=int(os.environ.get("ENTRASYNC_PROPERTY_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _sections() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, field in Config.model_fields.items():
        model: Any = field.annotation
        out[name] = [sub.alias or key for key, sub in model.model_fields.items()]
    return out


SECTIONS = _sections()

# -- TOML values, from plausible to hostile --------------------------------------------------

_ints = st.one_of(
    st.integers(min_value=-10, max_value=100_000),
    st.sampled_from([2**31, 2**63, -(2**63), 10**20, 99999999999999999999]),
    st.integers(),
)
_durations = st.from_regex(r"\A-?[0-9]{1,14}(\.[0-9]{1,3})?\s?[smhdwMx]?\Z")
_guids = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
_scalars = st.one_of(
    st.booleans(),
    _ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    _durations,
    st.sampled_from(["5%", "101%", "nan%", "-1%", "10", "", "no", "true", "250", "0s"]),
    st.sampled_from(["99999999999w", "1e3s", "0.0000001s", "36500d", "1h", "7d"]),
    _guids,
    st.sampled_from(["127.0.0.1:9464", "not-an-address", ":80", "[::1]:1", "h:99999"]),
    st.dates(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.times(),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(string.ascii_lowercase, min_size=1, max_size=5), inner, max_size=3
        )
    ),
    max_leaves=8,
)
_store_urls = st.builds(
    lambda scheme, sep, query: f"{scheme}{sep}admin:{SECRET}@127.0.0.1:1/db{query}",
    st.sampled_from(["postgresql+psycopg", "postgresql", "sqlite", "mysql", "x", ""]),
    st.sampled_from(["://", "//", ":/", ":", ":///", "", "://["]),
    st.sampled_from(["", "?connect_timeout=abc", "?bogus=1", f"?password={SECRET}"]),
)
_keys = st.text(string.ascii_letters + "_-", min_size=1, max_size=12)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A config document: known sections and keys with random values, plus unknown ones."""
    doc: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        keys = draw(st.lists(st.sampled_from(SECTIONS[section]), max_size=4, unique=True))
        table = {key: draw(_values) for key in keys}
        if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
            table[draw(_keys)] = draw(_values)
        doc[section] = table
    if draw(st.booleans()):
        doc.setdefault("store", {})["url"] = draw(_store_urls)
    if draw(st.integers(0, 9)) == 0:
        doc[draw(_keys)] = draw(_values)
    return doc


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON escapes are TOML escapes
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_text(doc: dict[str, Any]) -> str:
    top = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [
        f"[{json.dumps(k)}]\n"
        + "".join(f"{json.dumps(n)} = {toml_value(v)}\n" for n, v in t.items())
        for k, t in doc.items()
        if isinstance(t, dict)
    ]
    return "\n".join(top) + "\n" + "\n".join(tables)


def key_paths(doc: dict[str, Any]) -> set[str]:
    paths = set(doc)
    for section, table in doc.items():
        if isinstance(table, dict):
            paths.update(f"{section}.{key}" for key in table)
    return paths


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-properties")


@FAST
@given(doc=documents())
def test_any_document_loads_or_names_a_key(workdir: Path, doc: dict[str, Any]) -> None:
    path = workdir / "entrasync.toml"
    path.write_text(toml_text(doc), encoding="utf-8")
    try:
        config = load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") or message.startswith(f"config file {path}: ")
        assert any(key in message for key in key_paths(doc)) or re.search(r"line \d+", message)
        assert SECRET not in message
        assert exc.exit_code == 78
        return
    assert_sane(config)


def assert_sane(config: Config) -> None:
    """What loads is what the keys allow: every bounded value within its bounds, integers
    and booleans of their own type."""
    for section_name, section_field in Config.model_fields.items():
        model: Any = section_field.annotation
        section = getattr(config, section_name)
        for name, field in model.model_fields.items():
            value = getattr(section, name)
            between = bounds_of(model, name)
            if between is not None:
                between.check(value)
            if field.annotation is int:
                assert type(value) is int, (section_name, name, value)
            if field.annotation is bool:
                assert type(value) is bool, (section_name, name, value)


@FAST
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_load_or_name_the_file(workdir: Path, data: bytes) -> None:
    path = workdir / "bytes.toml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


@FAST
@given(text=st.text(max_size=40) | _durations)
def test_parse_duration_is_bounded_or_refuses(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        assert "invalid duration" in str(exc)
        return
    assert timedelta(0) <= value <= LONGEST


@FAST
@given(text=st.text(max_size=30) | _ints.map(str) | st.floats().map(lambda f: f"{f}%"))
def test_threshold_is_bounded_or_refuses(text: str) -> None:
    try:
        threshold = Threshold.parse(text)
    except ValueError as exc:
        assert "invalid threshold" in str(exc)
        return
    assert 0 <= threshold.value <= (100 if threshold.percent else MAX_COUNT)
    assert 0 <= threshold.limit(1_000_000) <= MAX_COUNT


_password = st.text(string.ascii_letters + string.digits + ":/?#%!@&=+", min_size=2, max_size=16)


@FAST
@given(
    scheme=st.sampled_from(["postgresql+psycopg", "postgresql", "x", ""]),
    sep=st.sampled_from(["://", "//", ":/", ":", ":///", ""]),
    user=st.text(string.ascii_lowercase, min_size=1, max_size=8),
    password=_password,
    host=st.text(string.ascii_lowercase, min_size=1, max_size=8),
)
def test_safe_url_never_shows_the_password(
    scheme: str, sep: str, user: str, password: str, host: str
) -> None:
    secret = f"PW{password}"
    url = f"{scheme}{sep}{user}:{secret}@{host}/db"
    shown = safe_url(url)
    assert secret not in shown
    assert "***" in shown
    message = hide(f"connection to {url} failed: password {secret} rejected", url)
    assert secret not in message
