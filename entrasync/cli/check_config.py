"""`entrasync check-config`: validate the file, open the store, get a token, read the
watched groups.

Prints a checklist an admin can act on (✓ / ✗ / ! lines, each failure says what to fix) and
returns the exit code of the first failure: 78 configuration (also a configured group
that does not exist, a store schema behind or ahead of the code), 77 permission (credential
refused, permission or consent missing), 69 unreachable (Graph or the store), 0 when
everything passed. It validates everything `entrasync run` validates before it starts (the
file's keys and cross-key rules, the credential, the store and its schema revision), and
changes nothing: the store is opened read-only, and a store that does not exist yet is a
warning (`entrasync db upgrade` creates it), not a failure. Checks go on after a failure
where that still tells the admin something (every group is checked). The credential is
described by where it came from, never by its value; the store's password is masked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from entrasync.bootstrap import graph_factory, open_store
from entrasync.cli.context import app_context
from entrasync.config import Config, load_config, resolve_config_path
from entrasync.errors import (
    CollectorRefused,
    CollectorUnavailable,
    EntrasyncError,
    ExitCode,
    GraphPermissionDenied,
    SchemaOutOfDate,
)
from entrasync.forward import probe
from entrasync.graph import ClientSecret, GraphClient, GraphSettings, RetryPolicy
from entrasync.graph.settings import ClientCertificate, ManagedIdentity
from entrasync.notify.smtp import read_password
from entrasync.services import audit_checkpoint, audit_forward
from entrasync.store.engines import check_sqlite_location
from entrasync.store.urls import safe_url


class _Checklist:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.exit_code = ExitCode.OK

    def ok(self, text: str) -> None:
        self.console.print(Text.assemble(("✓ ", "green"), text))

    def warn(self, text: str) -> None:
        self.console.print(Text.assemble(("! ", "yellow"), text))

    def fail(self, text: str, code: ExitCode) -> None:
        self.console.print(Text.assemble(("✗ ", "red"), text))
        if self.exit_code == ExitCode.OK:
            self.exit_code = code


def _describe_credential(settings: GraphSettings) -> str:
    """The sign-in mode (`entra.auth`) and where its material came from, never the value."""
    credential = settings.credential
    if isinstance(credential, ClientSecret):
        return f"client secret from {credential.source}"
    if isinstance(credential, ClientCertificate):
        return f"certificate from {credential.source}"
    if isinstance(credential, ManagedIdentity):
        return f"managed identity: the {credential.source} (no stored secret)"
    return (
        f"workload identity: the federated token in ${credential.source} "
        f"({credential.token_file}, read at each token request; no stored secret)"
    )


def check_config(
    config_path: Path | None,
    *,
    console: Console | None = None,
    environ: Mapping[str, str] = os.environ,
    retry: RetryPolicy | None = None,
) -> int:
    from entrasync.cli.output import console as default_console

    checks = _Checklist(console or default_console())
    path = resolve_config_path(config_path, environ)
    try:
        config = load_config(path)
    except EntrasyncError as exc:
        checks.fail(str(exc), exc.exit_code)
        return int(checks.exit_code)
    checks.ok(f"config file {path} is valid")
    _check_store(checks, config)
    _check_smtp_login(checks, config)
    _check_audit(checks, config)
    _check_graph(checks, config, environ, retry)
    return int(checks.exit_code)


def _check_graph(
    checks: _Checklist, config: Config, environ: Mapping[str, str], retry: RetryPolicy | None
) -> None:
    """The credential, a token, reading users, then each watched group."""
    try:
        make_client = graph_factory(config, environ, retry=retry)
    except EntrasyncError as exc:
        checks.fail(f"credential: {exc}", exc.exit_code)
        return
    with make_client() as client:
        settings = client.settings
        checks.ok(f"credential found: {_describe_credential(settings)}")
        try:
            client.check_token()
        except EntrasyncError as exc:
            checks.fail(f"token: {exc}", exc.exit_code)
            return
        checks.ok(f"token obtained from {settings.authority} for app {settings.client_id}")

        try:
            client.check_user_read()
            checks.ok("users can be read (User.Read.All)")
        except EntrasyncError as exc:
            checks.fail(str(exc), exc.exit_code)
        _check_groups(checks, client, config)


def _check_groups(checks: _Checklist, client: GraphClient, config: Config) -> None:
    watched = [("DNT", g) for g in config.groups.dnt]
    watched += [("Delete", g) for g in config.groups.delete]
    if not watched:
        checks.warn("no groups configured: groups.dnt and groups.delete are empty")
    for label, group_id in watched:
        key = "groups.dnt" if label == "DNT" else "groups.delete"
        try:
            info = client.get_group(group_id)
        except GraphPermissionDenied as exc:
            # Same cause for every group: say it once, with where to fix it.
            checks.fail(
                f"groups cannot be read: {exc} (Entra admin center → App registrations → "
                "API permissions → Add a permission → Microsoft Graph → Application "
                "permissions, then Grant admin consent)",
                exc.exit_code,
            )
            break
        except EntrasyncError as exc:
            checks.fail(f"{label} group: {exc}", exc.exit_code)
            continue
        if info is None:
            checks.fail(
                f"{label} group {group_id}: not found in tenant {client.settings.tenant_id} "
                f"(check {key}: use the group's object id)",
                ExitCode.CONFIG,
            )
            continue
        count = "unknown" if info.member_count is None else str(info.member_count)
        checks.ok(f"{label} group {group_id}: {info.display_name!s}, {count} direct members")


def _check_store(checks: _Checklist, config: Config) -> None:
    """Reach the store read-only and compare its schema revision with the code's (what
    `run` refuses to start without)."""
    url = config.store.url
    shown = safe_url(url)
    try:
        check_sqlite_location(url)  # "does not exist yet" must not hide "can never exist"
        store = open_store(config, read_only=True, check_schema=False)
    except SchemaOutOfDate as exc:  # a SQLite file that does not exist yet
        checks.warn(str(exc))
        return
    except EntrasyncError as exc:
        checks.fail(str(exc), exc.exit_code)
        return
    try:
        current, head = store.schema_versions()
        if current is not None:
            store.require_current_schema()  # behind, or ahead (a newer entrasync upgraded it)
    except EntrasyncError as exc:
        checks.fail(str(exc), exc.exit_code)
        return
    finally:
        store.engine.dispose()
    if current is None:
        checks.warn(f"store {shown} is empty: run `entrasync db upgrade` to create the schema")
    else:
        checks.ok(f"store {shown} is reachable, schema at revision {head} (current)")


def _check_smtp_login(checks: _Checklist, config: Config) -> None:
    """The SMTP password file is otherwise read only when the first email is sent."""
    notify = config.notify
    if not (notify.smtp_host and notify.username):
        return
    try:
        read_password(notify)
    except EntrasyncError as exc:
        checks.fail(str(exc), exc.exit_code)
        return
    except ValueError:  # not UTF-8
        checks.fail(
            f"notify.password_file: {notify.password_file} is not UTF-8 text", ExitCode.CONFIG
        )
        return
    checks.ok(f"SMTP login {notify.username}: password file {notify.password_file} is readable")


def _check_audit(checks: _Checklist, config: Config) -> None:
    """The signing key and the collector's token and CA are otherwise read only by the daemon's
    jobs; a collector that does not answer is a warning (`run` starts anyway and keeps the
    records until it does)."""
    audit = config.audit
    try:
        if audit.signing_key_file is not None:
            audit_checkpoint.read_private_key(audit.signing_key_file)
            checks.ok(f"audit signing key {audit.signing_key_file} is an Ed25519 private key")
        wired = audit_forward.sender_for(audit)
    except EntrasyncError as exc:
        checks.fail(str(exc), exc.exit_code)
        return
    if wired is None:
        return
    target = wired[0]
    try:
        probe(target, audit.forward_ca_bundle)
    except CollectorRefused as exc:
        checks.fail(f"audit collector: {exc}", exc.exit_code)
        return
    except CollectorUnavailable as exc:
        checks.warn(f"audit collector does not answer ({exc}): records wait in the store")
        return
    checks.ok(f"audit collector {target.display} answers")


def check_config_cmd(ctx: typer.Context) -> None:
    """Validate the config file, open the store (read-only) and check its schema, get a
    token, read each configured group, and print a checklist of what works and what to
    fix (exit 78/77/69 on the first failure class). Changes nothing.

    Example: entrasync --config /etc/entrasync/entrasync.toml check-config
    """
    code = check_config(app_context(ctx).config_path)
    if code:
        raise typer.Exit(code)
