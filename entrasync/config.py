"""The one TOML configuration file, validated into typed settings.

Unknown keys are errors (a typo must not silently fall back to a default), and every error
names the key it is about, e.g. ``safety.purge_delay: invalid duration 'soon'``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from entrasync.domain.durations import parse_duration
from entrasync.domain.thresholds import Threshold
from entrasync.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/entrasync/entrasync.toml")
CONFIG_ENV = "ENTRASYNC_CONFIG"


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a duration string such as '30s', '5m', '24h' or '30d'")
    return parse_duration(value)


def _optional_path(value: object) -> object:
    return None if value == "" else value


def _threshold(value: object) -> Threshold:
    if isinstance(value, Threshold):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a count (e.g. 10) or a percentage (e.g. '5%')")
    return Threshold.parse(str(value))


Duration = Annotated[timedelta, BeforeValidator(_duration)]
OptionalPath = Annotated[Path | None, BeforeValidator(_optional_path)]
ThresholdSetting = Annotated[Threshold, BeforeValidator(_threshold)]
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntraConfig(_Section):
    tenant_id: str = ""
    client_id: str = ""
    client_secret_file: OptionalPath = None
    certificate_file: OptionalPath = None
    certificate_passphrase_file: OptionalPath = None
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    ca_bundle: OptionalPath = None
    timeout: Duration = timedelta(seconds=30)


def _group_ids(value: object) -> object:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str) and not _GUID.match(item):
                raise ValueError(f"{item!r} is not a group object id (a GUID)")
    return value


GroupIds = Annotated[list[str], BeforeValidator(_group_ids)]


class GroupsConfig(_Section):
    dnt: GroupIds = Field(default_factory=list)
    delete: GroupIds = Field(default_factory=list)
    nested: bool = True


class StoreConfig(_Section):
    url: str = "sqlite:////var/lib/entrasync/store.db"


class AccountConfig(_Section):
    purchased_licenses: int = Field(default=0, ge=0)
    plan: Literal["paid", "free"] = "paid"
    pending_mode: bool = False
    manual_review: bool = False
    pending_retention: Duration = timedelta(days=30)


class ScheduleConfig(_Section):
    interval: Duration = timedelta(minutes=5)


class DaemonConfig(_Section):
    listen: str = "127.0.0.1:9464"
    failure_alert_after: int = Field(default=3, ge=1)
    max_backoff: Duration = timedelta(hours=1)
    stop_timeout: Duration = timedelta(seconds=8)


class NotifyConfig(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    from_address: str = Field(default="entrasync@example.com", alias="from")
    admins: list[str] = Field(default_factory=list)
    starttls: bool = False
    username: str = ""
    password_file: OptionalPath = None


class SafetyConfig(_Section):
    dry_run: bool = False
    purge_delay: Duration = timedelta(hours=24)
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
    full_resync_every: Duration = timedelta(days=6)


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


def resolve_config_path(explicit: Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    if explicit is not None:
        return explicit
    from_env = environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_config(path: Path) -> Config:
    """Read and validate the file; every failure is a ConfigError naming the file and key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path}: not found (give --config FILE or set {CONFIG_ENV})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    return parse_config(raw, source=str(path))


def parse_config(raw: Mapping[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None


def _describe(error: Mapping[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{key}: {message}"
