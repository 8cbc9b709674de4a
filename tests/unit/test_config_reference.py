"""The configuration reference (docs/configuration.md) and the example file
(config/entrasync.example.toml) must cover exactly the keys of the config model.

Adding a key to entrasync.config without documenting it, or documenting a key that does not
exist, fails here.
"""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from entrasync.config import Between, Config, bounds_of, load_config

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "config" / "entrasync.example.toml"

# One heading per key: ### `section.key`
_HEADING = re.compile(r"^###\s+`([^`]+)`\s*$", re.MULTILINE)
_DEFAULT = re.compile(r"^- Default:\s*`(.*)`\s*$", re.MULTILINE)
_TYPE = re.compile(r"^- Type:\s*(.*)$", re.MULTILINE)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def model_keys(
    model: type[BaseModel] = Config, prefix: str = ""
) -> dict[str, tuple[type[BaseModel], str]]:
    """Every leaf key of the model as it is written in the file (aliases such as `from`),
    mapped to (the section model, the field's Python name)."""
    keys: dict[str, tuple[type[BaseModel], str]] = {}
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        sub = _submodel(field.annotation)
        if sub is not None:
            keys.update(model_keys(sub, key + "."))
        else:
            keys[key] = (model, name)
    return keys


def documented_sections() -> dict[str, str]:
    """Documented key -> the text of its section (up to the next key heading)."""
    text = REFERENCE.read_text(encoding="utf-8")
    matches = list(_HEADING.finditer(text))
    sections = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        sections[match.group(1)] = text[match.end() : end]
    return sections


def example_keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in table.items():
        key = prefix + name
        # A sub-table is a section only when the model says so; `domain_map = {…}` is a value.
        if isinstance(value, dict) and key in {k.split(".")[0] for k in model_keys()}:
            keys |= example_keys(value, key + ".")
        else:
            keys.add(key)
    return keys


def test_model_has_keys() -> None:
    keys = model_keys()
    assert "notify.from" in keys  # the alias, not the Python name
    assert "notify.from_address" not in keys
    assert len(keys) > 30


def test_every_model_key_is_documented() -> None:
    missing = sorted(set(model_keys()) - set(documented_sections()))
    assert not missing, f"keys missing from {REFERENCE.name}: {missing}"


def test_every_documented_key_exists() -> None:
    unknown = sorted(set(documented_sections()) - set(model_keys()))
    assert not unknown, f"{REFERENCE.name} documents keys the config model lacks: {unknown}"


def test_every_documented_key_has_type_default_and_example() -> None:
    for key, body in documented_sections().items():
        assert "- Type:" in body, f"{key}: no '- Type:' line"
        assert _DEFAULT.search(body), f"{key}: no '- Default: `…`' line"
        assert "- Example:" in body, f"{key}: no '- Example:' line"


@pytest.mark.parametrize("key", sorted(model_keys()))
def test_documented_default_is_the_model_default(key: str) -> None:
    section_model, name = model_keys()[key]
    body = documented_sections().get(key)
    if body is None:
        pytest.fail(f"{key} is not documented")
    match = _DEFAULT.search(body)
    assert match, f"{key}: no default documented"
    literal = match.group(1)
    file_key = key.rsplit(".", 1)[1]
    parsed = tomllib.loads(f"{file_key} = {literal}")
    documented = getattr(section_model.model_validate(parsed), name)
    actual = getattr(section_model(), name)
    assert documented == actual, f"{key}: documented default {literal} but the model has {actual!r}"


def test_example_file_loads() -> None:
    load_config(EXAMPLE)


def test_example_file_has_every_key() -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    present = example_keys(raw)
    missing = sorted(set(model_keys()) - present)
    assert not missing, f"keys missing from {EXAMPLE.name}: {missing}"
    unknown = sorted(present - set(model_keys()))
    assert not unknown, f"{EXAMPLE.name} has keys the config model lacks: {unknown}"


def test_example_file_sections_follow_the_model_order() -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert list(raw) == list(Config.model_fields)


def _bounded_keys() -> dict[str, Between]:
    found = {}
    for key, (section_model, name) in model_keys().items():
        between = bounds_of(section_model, name)
        if between is not None:
            found[key] = between
    return found


def test_every_integer_and_duration_key_has_bounds() -> None:
    """An unbounded number is how `99999999999w` and 20-digit license counts got in."""
    unbounded = [
        key
        for key, (section_model, name) in model_keys().items()
        if section_model.model_fields[name].annotation in (int, timedelta)
        and bounds_of(section_model, name) is None
    ]
    assert not unbounded, f"integer/duration keys without Between(...): {unbounded}"
    assert len(_bounded_keys()) >= 10


@pytest.mark.parametrize("key", sorted(_bounded_keys()))
def test_documented_bounds_are_the_model_bounds(key: str) -> None:
    """The bounds live once, on the key; the reference states them in its Type line."""
    body = documented_sections()[key]
    match = _TYPE.search(body)
    assert match, f"{key}: no '- Type:' line"
    expected = _bounded_keys()[key].describe()
    assert expected in match.group(1), f"{key}: Type line {match.group(1)!r} lacks {expected!r}"


@pytest.mark.parametrize("key", sorted(_bounded_keys()))
def test_defaults_are_within_bounds(key: str) -> None:
    section_model, name = model_keys()[key]
    between = _bounded_keys()[key]
    between.check(getattr(section_model(), name))
