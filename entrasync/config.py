"""The one TOML configuration file, validated into typed settings.

Unknown keys are errors (a typo must not silently fall back to a default), types are strict
(`true` is not the integer 1, `"250"` is not 250, `"no"` is not false), every integer and
duration key has bounds declared next to it (`Between`, which docs/configuration.md states and
a test keeps in step), and every error names the key it is about, e.g.
``safety.purge_delay: invalid duration 'soon'`` or
``account.purchased_licenses: expected an integer, got a boolean (true)``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from entrasync.domain.durations import format_duration, parse_duration
from entrasync.domain.thresholds import Threshold
from entrasync.errors import ConfigError
from entrasync.store import urls

DEFAULT_CONFIG_PATH = Path("/etc/entrasync/entrasync.toml")
CONFIG_ENV = "ENTRASYNC_CONFIG"
# A config file is a few kilobytes; the cap keeps `--config /dev/zero` from reading forever.
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Between:
    """Inclusive bounds of an integer or duration key (durations written as in the file,
    `"1s"`). Declared on the key, checked on load, quoted by docs/configuration.md."""

    low: int | str
    high: int | str

    def describe(self) -> str:
        return f"{_bound_text(self.low)} to {_bound_text(self.high)}"

    def check(self, value: Any) -> Any:
        low, high = _bound_value(self.low), _bound_value(self.high)
        if not low <= value <= high:
            raise ValueError(f"{_value_text(value)} is out of range: expected {self.describe()}")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))


def bounds_of(model: type[BaseModel], name: str) -> Between | None:
    """The bounds declared on a key (None for a key without: strings, booleans, …)."""
    found = [m for m in model.model_fields[name].metadata if isinstance(m, Between)]
    return found[0] if found else None


def _bound_value(bound: int | str) -> Any:
    return parse_duration(bound) if isinstance(bound, str) else bound


def _bound_text(bound: int | str) -> str:
    if isinstance(bound, str):
        return bound
    return f"{bound:_}" if bound >= 1_000_000 else str(bound)  # as TOML may write it


def _value_text(value: Any) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}…({len(text)} digits)"


def _duration(value: object) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(
            "expected a duration string such as '30s', '5m', '24h' or '30d', "
            f"got {_describe_value(value)}"
        )
    return parse_duration(value)


def _optional_path(value: object) -> Path | None:
    if value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f'expected a path (a string, "" for none), got {_describe_value(value)}')
    if "\x00" in value:
        raise ValueError("the path contains a NUL character")
    return Path(value)


def _threshold(value: object) -> Threshold:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            f"expected a count (e.g. 10) or a percentage (e.g. '5%'), got {_describe_value(value)}"
        )
    return Threshold.parse(str(value))


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` for IPv6, `:port` for every interface) -> (host, port);
    ValueError saying what is expected."""
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise ValueError(f"{listen!r} is not host:port (e.g. 127.0.0.1:9464)")
    if host and not _is_host(host):
        raise ValueError(
            f"{listen!r}: {host!r} is not an IP address or host name (e.g. 127.0.0.1:9464)"
        )
    return host or "0.0.0.0", int(port)  # noqa: S104 - ":9464" means every interface


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.fullmatch(host))
    return True


def _listen(value: str) -> str:
    parse_listen(value)
    return value


def _store_url(value: str) -> str:
    urls.parse(value)  # ValueError with the URL's password masked
    return value


def _endpoint(value: str) -> str:
    if not re.fullmatch(r"https://[^/\s?#@]+(/\S*)?", value):
        raise ValueError(f"{value!r} is not an https:// URL (e.g. 'https://graph.microsoft.com')")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
OptionalPath = Annotated[Path | None, BeforeValidator(_optional_path)]
ThresholdSetting = Annotated[Threshold, BeforeValidator(_threshold)]
Endpoint = Annotated[str, AfterValidator(_endpoint)]
_GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class EntraConfig(_Section):
    tenant_id: str = ""
    client_id: str = ""
    client_secret_file: OptionalPath = None
    certificate_file: OptionalPath = None
    certificate_passphrase_file: OptionalPath = None
    authority_host: Endpoint = "https://login.microsoftonline.com"
    graph_url: Endpoint = "https://graph.microsoft.com"
    ca_bundle: OptionalPath = None
    timeout: Annotated[Duration, Between("1s", "10m")] = timedelta(seconds=30)


def _group_ids(value: object) -> object:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str) and not _GUID.fullmatch(item):
                raise ValueError(f"{_describe_value(item)} is not a group object id (a GUID)")
    return value


GroupIds = Annotated[list[str], BeforeValidator(_group_ids)]


class GroupsConfig(_Section):
    dnt: GroupIds = Field(default_factory=list)
    delete: GroupIds = Field(default_factory=list)
    nested: bool = True

    @model_validator(mode="after")
    def _each_group_once(self) -> GroupsConfig:
        # A group in both lists has no single meaning, and one listed twice is a copy-paste
        # slip that hides a missing one; object ids compare case-insensitively.
        seen: dict[str, str] = {}
        for key in ("dnt", "delete"):
            for index, group_id in enumerate(getattr(self, key)):
                place = f"groups.{key}[{index}]"
                first = seen.setdefault(group_id.lower(), place)
                if first != place:
                    raise ValueError(f"group {group_id} is listed twice: {first} and {place}")
        return self


class StoreConfig(_Section):
    url: Annotated[str, AfterValidator(_store_url)] = "sqlite:////var/lib/entrasync/store.db"


class AccountConfig(_Section):
    purchased_licenses: Annotated[int, Between(0, 10_000_000)] = 0
    plan: Literal["paid", "free"] = "paid"
    pending_mode: bool = False
    manual_review: bool = False
    pending_retention: Annotated[Duration, Between("1d", "3650d")] = timedelta(days=30)


class ScheduleConfig(_Section):
    # 1s is for tests and demos; "0s" would make the daemon spin and hammer Graph.
    interval: Annotated[Duration, Between("1s", "1d")] = timedelta(minutes=5)


class DaemonConfig(_Section):
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:9464"
    failure_alert_after: Annotated[int, Between(1, 1000)] = 3
    # Below schedule.interval it is raised to the interval (documented), not refused.
    max_backoff: Annotated[Duration, Between("1s", "7d")] = timedelta(hours=1)
    stop_timeout: Annotated[Duration, Between("0s", "10m")] = timedelta(seconds=8)

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


class NotifyConfig(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    smtp_host: str = ""
    smtp_port: Annotated[int, Between(1, 65535)] = 25
    from_address: str = Field(default="entrasync@example.com", alias="from")
    admins: list[str] = Field(default_factory=list)
    starttls: bool = False
    username: str = ""
    password_file: OptionalPath = None


class SafetyConfig(_Section):
    dry_run: bool = False
    purge_delay: Annotated[Duration, Between("0s", "365d")] = timedelta(hours=24)
    max_purges: ThresholdSetting = Threshold.parse("5%")
    max_untracks: ThresholdSetting = Threshold.parse("10%")
    max_retracks: ThresholdSetting = Threshold.parse("10%")
    max_merges: ThresholdSetting = Threshold.parse("10%")
    retrack_on_removal: bool = True
    export_dir: OptionalPath = None


class MergeConfig(_Section):
    enabled: bool = True
    agent_merge: Literal["all", "none"] = "all"
    domain_map: dict[str, str] = Field(default_factory=dict)
    netbios_map: dict[str, str] = Field(default_factory=dict)


class SyncConfig(_Section):
    on_user_deleted: Literal["ignore", "untrack", "purge"] = "ignore"
    # Delta tokens live 7 days: a full read at least that often never depends on an expired one.
    full_resync_every: Annotated[Duration, Between("1h", "7d")] = timedelta(days=6)


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Section):
    entra: EntraConfig = Field(default_factory=EntraConfig)
    groups: GroupsConfig = Field(default_factory=GroupsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    account: AccountConfig = Field(default_factory=AccountConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    merge: MergeConfig = Field(default_factory=MergeConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _smtp_login_is_safe(self) -> Config:
        # Checked on load (so check-config and run agree), not only when mail is first sent.
        notify = self.notify
        if notify.username and not notify.starttls:
            raise ValueError(
                "notify.username: set but notify.starttls is off: refusing to send the SMTP "
                "password in clear text (set starttls = true)"
            )
        if notify.username and notify.password_file is None:
            raise ValueError("notify.username: set but notify.password_file is not")
        return self


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
        message = f"expected {_EXPECTED[error['type']]}, got {_describe_value(error['input'])}"
    elif error["type"] == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", "")).replace("'", '"')
        message = f"expected one of {expected}, got {_describe_value(error['input'])}"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    return f"{key}: {message}" if key else message


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _describe_value(value: object) -> str:
    """What the file gave, in TOML words: `a boolean (true)`, `a string ("250")`."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({_value_text(value)})"
    if isinstance(value, float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f"a string ({json.dumps(shown, ensure_ascii=False)})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return f"a date/time ({value.isoformat()})"
    return f"a {type(value).__name__}"
