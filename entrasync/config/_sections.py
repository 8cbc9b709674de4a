"""The sections of the configuration file, one pydantic model each, and `Config`."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from entrasync.config._values import (
    Between,
    Duration,
    Endpoint,
    ForwardUrl,
    GroupIds,
    Listen,
    OptionalPath,
    StoreUrl,
    ThresholdSetting,
    parse_listen,
)
from entrasync.domain.forwarding import ForwardTarget, parse_target
from entrasync.domain.thresholds import Threshold


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class EntraAuth(StrEnum):
    """How entrasync signs in (`entra.auth`); empty: the secret or certificate configured."""

    CONFIGURED = ""
    SECRET = "secret"  # noqa: S105 - the name of a sign-in kind, not a secret
    CERTIFICATE = "certificate"
    MANAGED_IDENTITY = "managed_identity"
    WORKLOAD_IDENTITY = "workload_identity"


class EntraConfig(_Section):
    auth: Annotated[EntraAuth, Field(strict=False)] = EntraAuth.CONFIGURED
    tenant_id: str = ""
    client_id: str = ""
    managed_identity_client_id: str = ""  # a user-assigned identity; empty: system-assigned
    client_secret_file: OptionalPath = None
    certificate_file: OptionalPath = None
    certificate_passphrase_file: OptionalPath = None
    authority_host: Endpoint = "https://login.microsoftonline.com"
    graph_url: Endpoint = "https://graph.microsoft.com"
    ca_bundle: OptionalPath = None
    timeout: Annotated[Duration, Between("1s", "10m")] = timedelta(seconds=30)


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
    url: StoreUrl = "sqlite:////var/lib/entrasync/store.db"


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
    listen: Listen = "127.0.0.1:9464"
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
    on_user_disabled: Literal["ignore", "untrack"] = "ignore"
    # Delta tokens live 7 days: a full read at least that often never depends on an expired one.
    full_resync_every: Annotated[Duration, Between("1h", "7d")] = timedelta(days=6)


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class AuditConfig(_Section):
    signing_key_file: OptionalPath = None
    checkpoint_dir: OptionalPath = None
    forward: ForwardUrl = ""
    forward_token_file: OptionalPath = None
    # "Bearer" for most HTTP collectors; a Splunk HTTP Event Collector wants "Splunk".
    forward_auth_scheme: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9-]*$")] = (
        "Bearer"
    )
    forward_ca_bundle: OptionalPath = None

    @property
    def forward_target(self) -> ForwardTarget | None:
        return parse_target(self.forward) if self.forward else None

    @model_validator(mode="after")
    def _token_needs_https(self) -> AuditConfig:
        target = self.forward_target
        if self.forward_token_file is not None and (target is None or not target.is_https):
            raise ValueError(
                "audit.forward_token_file: set, but audit.forward is not an https:// collector"
            )
        return self


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
    audit: AuditConfig = Field(default_factory=AuditConfig)

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
