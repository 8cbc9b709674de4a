"""Helpers for the pending and notification tests: a real SMTP server on loopback (aiosmtpd)
that records what it accepts, and small store/CLI helpers."""

from __future__ import annotations

import socket
import ssl
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from entrasync.config import Config, parse_config
from entrasync.domain.audit import verify_chain
from entrasync.domain.reports import parse_reports
from entrasync.services.ingest import IngestSummary, ingest_reports
from entrasync.sim.certs import TlsFiles, write_tls_files
from entrasync.store.audit import iter_all
from entrasync.store.db import Store
from entrasync.store.schema import AuditRow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Mailbox:
    """What the server accepted: one entry per DATA (i.e. per email sent)."""

    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # recipients answered with 550

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 at a fixed port, so it can go down and come back."""

    def __init__(self, port: int, mailbox: Mailbox, **kwargs: Any) -> None:
        self.port = port
        self.mailbox = mailbox
        self._kwargs = kwargs
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(
            self.mailbox, hostname="127.0.0.1", port=self.port, **self._kwargs
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port(), Mailbox())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return write_tls_files(tmp_path / "tls")


def tls_server(tls: TlsFiles, mailbox: Mailbox, *, user: str, password: str) -> SmtpServer:
    """A server that requires STARTTLS and accepts one login."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    return SmtpServer(
        free_port(),
        mailbox,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )


def notify_toml(port: int, admins: list[str], extra: str = "") -> str:
    quoted = ", ".join(f'"{a}"' for a in admins)
    return (
        f'[notify]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\n'
        f'from = "entrasync@contoso.com"\nadmins = [{quoted}]\n{extra}'
    )


def account_toml(
    purchased: int, *, plan: str = "paid", pending_mode: bool = True, manual_review: bool = False
) -> str:
    return (
        f'[account]\npurchased_licenses = {purchased}\nplan = "{plan}"\n'
        f"pending_mode = {str(pending_mode).lower()}\n"
        f"manual_review = {str(manual_review).lower()}\n"
    )


def write_reports(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_config(store_url: str, toml: str) -> Config:
    return parse_config(tomllib.loads(f'[store]\nurl = "{store_url}"\n{toml}'))


def ingest(store: Store, config: Config, now: datetime, *lines: str) -> IngestSummary:
    return ingest_reports(store, config, parse_reports(lines), now, source="test")


def audit_actions(store: Store) -> list[tuple[str, str, int | None]]:
    with store.reading() as session:
        return [
            (row.action, row.actor, row.user_id)
            for row in session.scalars(select(AuditRow).order_by(AuditRow.seq))
        ]


def chain_ok(store: Store) -> bool:
    with store.reading() as session:
        return verify_chain(iter_all(session)) is None
