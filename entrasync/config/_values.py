"""The value types of the configuration: bounds (`Between`), durations, paths, thresholds,
listen addresses, endpoints and group ids, each checked with an error naming what is expected,
and `describe_value` (what the file gave, in TOML words)."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from entrasync.domain import forwarding
from entrasync.domain.durations import format_duration, parse_duration
from entrasync.domain.thresholds import Threshold
from entrasync.store import urls


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
            raise ValueError(f"{value_text(value)} is out of range: expected {self.describe()}")
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


def value_text(value: Any) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}…({len(text)} digits)"


def _duration(value: object) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(
            "expected a duration string such as '30s', '5m', '24h' or '30d', "
            f"got {describe_value(value)}"
        )
    return parse_duration(value)


def _optional_path(value: object) -> Path | None:
    if value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f'expected a path (a string, "" for none), got {describe_value(value)}')
    if "\x00" in value:
        raise ValueError("the path contains a NUL character")
    return Path(value)


def _threshold(value: object) -> Threshold:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            f"expected a count (e.g. 10) or a percentage (e.g. '5%'), got {describe_value(value)}"
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


def check_listen(value: str) -> str:
    parse_listen(value)
    return value


def check_store_url(value: str) -> str:
    urls.parse(value)  # ValueError with the URL's password masked
    return value


def _endpoint(value: str) -> str:
    if not re.fullmatch(r"https://[^/\s?#@]+(/\S*)?", value):
        raise ValueError(f"{value!r} is not an https:// URL (e.g. 'https://graph.microsoft.com')")
    return value


def _forward_target(value: str) -> str:
    if value:
        forwarding.parse_target(value)  # ValueError naming the problem, never the credential
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
OptionalPath = Annotated[Path | None, BeforeValidator(_optional_path)]
ThresholdSetting = Annotated[Threshold, BeforeValidator(_threshold)]
Endpoint = Annotated[str, AfterValidator(_endpoint)]
Listen = Annotated[str, AfterValidator(check_listen)]
StoreUrl = Annotated[str, AfterValidator(check_store_url)]
ForwardUrl = Annotated[str, AfterValidator(_forward_target)]
_GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _group_ids(value: object) -> object:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str) and not _GUID.fullmatch(item):
                raise ValueError(f"{describe_value(item)} is not a group object id (a GUID)")
    return value


GroupIds = Annotated[list[str], BeforeValidator(_group_ids)]


def describe_value(value: object) -> str:
    """What the file gave, in TOML words: `a boolean (true)`, `a string ("250")`."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value_text(value)})"
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
