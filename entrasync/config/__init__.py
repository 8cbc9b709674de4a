"""The one TOML configuration file, validated into typed settings.

Unknown keys are errors (a typo must not silently fall back to a default), types are strict
(`true` is not the integer 1, `"250"` is not 250, `"no"` is not false), every integer and
duration key has bounds declared next to it (`Between`, which docs/configuration.md states and
a test keeps in step), and every error names the key it is about, e.g.
``safety.purge_delay: invalid duration 'soon'`` or
``account.purchased_licenses: expected an integer, got a boolean (true)``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from entrasync.config._sections import (
    AccountConfig,
    AuditConfig,
    Config,
    DaemonConfig,
    EntraAuth,
    EntraConfig,
    GroupsConfig,
    LoggingConfig,
    MergeConfig,
    NotifyConfig,
    SafetyConfig,
    ScheduleConfig,
    StoreConfig,
    SyncConfig,
)
from entrasync.config._values import (
    Between,
    Duration,
    Endpoint,
    GroupIds,
    OptionalPath,
    ThresholdSetting,
    bounds_of,
    describe_value,
    parse_listen,
)
from entrasync.errors import ConfigError
from entrasync.store import urls

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "MAX_CONFIG_BYTES",
    "AccountConfig",
    "AuditConfig",
    "Between",
    "Config",
    "DaemonConfig",
    "Duration",
    "Endpoint",
    "EntraAuth",
    "EntraConfig",
    "GroupIds",
    "GroupsConfig",
    "LoggingConfig",
    "MergeConfig",
    "NotifyConfig",
    "OptionalPath",
    "SafetyConfig",
    "ScheduleConfig",
    "StoreConfig",
    "SyncConfig",
    "ThresholdSetting",
    "bounds_of",
    "load_config",
    "parse_config",
    "parse_listen",
    "resolve_config_path",
]

DEFAULT_CONFIG_PATH = Path("/etc/entrasync/entrasync.toml")
CONFIG_ENV = "ENTRASYNC_CONFIG"
# A config file is a few kilobytes; the cap keeps `--config /dev/zero` from reading forever.
MAX_CONFIG_BYTES = 1024 * 1024


def resolve_config_path(explicit: Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    if explicit is not None:
        return explicit
    from_env = environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_config(path: Path) -> Config:
    """Read and validate the file; every failure is a ConfigError naming the file and, for
    a bad value, the key (for bad bytes or syntax, the line)."""
    text = _decode(_read(path), path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"config file {path}: not valid TOML (nested too deeply)") from None
    return parse_config(raw, source=str(path))


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path}: not found (give --config FILE or set {CONFIG_ENV})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path}: larger than {MAX_CONFIG_BYTES // 1024} KiB")
    return data


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")  # a BOM (some Windows editors) is harmless
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"config file {path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, "
            f"column {column} (byte offset {exc.start}); save the file as UTF-8"
        ) from None


def parse_config(raw: Mapping[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        # Defence in depth: a URL quoted in a message never shows its password.
        raise ConfigError(urls.scrub(f"{source}: {problems}")) from None


_EXPECTED = {
    "int_type": "an integer",
    "bool_type": "a boolean (true or false)",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def _describe(error: Mapping[str, Any]) -> str:
    key = _key(error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] in _EXPECTED:
        message = f"expected {_EXPECTED[error['type']]}, got {describe_value(error['input'])}"
    elif error["type"] == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", "")).replace("'", '"')
        message = f"expected one of {expected}, got {describe_value(error['input'])}"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    return f"{key}: {message}" if key else message


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key
