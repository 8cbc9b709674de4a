"""Audit forwarding (`audit.forward`) to real collectors on loopback, on both stores: every
record, in order, at least once; an outage or a collector restart delays and never loses or
reorders; the backlog shows in `status`; the token never shows anywhere."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from collectors import HttpsCollector, SyslogCollector
from testkit import sql, write_config

from entrasync.domain.audit import AuditEvent
from entrasync.domain.forwarding import SD_ID, SYSLOG_PRI
from entrasync.errors import ExitCode
from entrasync.services import audit_forward
from entrasync.sim.certs import TlsFiles, write_tls_files
from entrasync.store import forwarding
from entrasync.store.db import Store

DAY = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TOKEN = "hec-7f3a9c1e-secret-token"
Cli = Callable[..., Any]


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return write_tls_files(tmp_path / "tls")


@pytest.fixture
def syslog() -> Iterator[SyslogCollector]:
    collector = SyslogCollector().start()
    yield collector
    collector.stop()


def add_records(store: Store, count: int, first: int = 0) -> None:
    for index in range(first, first + count):
        with store.unit_of_work(DAY + timedelta(minutes=index), run_id=f"run-{index // 3}") as uow:
            uow.audit(
                AuditEvent(
                    "user.purged",
                    f"member of Delete group 'Leavers \"2026\"' ] #{index} — Zoë",
                    user_id=index + 1,
                    details={"rows_purged": index},
                )
            )


def forwarder(cli: Any, tmp_path: Path, store_url: str, audit: str) -> Cli:
    path = write_config(tmp_path / "forward.toml", store_url, f"[audit]\n{audit}")
    return lambda *args: cli("--config", str(path), *args)


def exported(es: Cli) -> list[dict[str, Any]]:
    result = es("audit", "export", "--format", "jsonl")
    assert result.code == 0, result.err
    return [json.loads(line) for line in result.out.splitlines()]


def test_syslog_tcp_delivers_each_record_once_in_order_as_rfc5424(
    cli: Any, tmp_path: Path, store_url: str, store: Store, syslog: SyslogCollector
) -> None:
    add_records(store, 7)
    es = forwarder(cli, tmp_path, store_url, f'forward = "{syslog.url}"\n')
    result = es("audit", "forward")
    assert result.code == 0, result.err
    assert "sent 7 record(s), delivered up to record 7, 0 waiting" in result.out
    assert syslog.connections == [[1, 2, 3, 4, 5, 6, 7]]
    records = exported(es)
    for message, record in zip(syslog.messages, records, strict=True):
        assert message.pri == SYSLOG_PRI == 110  # facility log audit, informational
        assert (message.app, message.msgid, message.sd_id) == ("entrasync", "user.purged", SD_ID)
        assert message.at == record["at"]
        assert message.params == {
            "seq": str(record["seq"]),
            "hash": record["hash"],
            "run_id": record["run_id"],
        }
        assert message.record == record  # the exported record, reason's quotes and ] intact
    # Nothing new: nothing sent. Two more records: only those.
    assert es("audit", "forward").code == 0
    add_records(store, 2, first=7)
    assert es("audit", "forward").code == 0
    assert syslog.connections == [[1, 2, 3, 4, 5, 6, 7], [8, 9]]
    status = es("status", "--json").json()["audit_forward"]
    assert status["target"] == syslog.url
    assert (status["delivered_seq"], status["backlog"], status["last_error"]) == (9, 0, None)


def test_collector_down_delays_and_loses_nothing(
    cli: Any, tmp_path: Path, store_url: str, store: Store, syslog: SyslogCollector
) -> None:
    add_records(store, 5)
    syslog.stop()
    es = forwarder(cli, tmp_path, store_url, f'forward = "{syslog.url}"\n')
    result = es("audit", "forward")
    assert result.code == ExitCode.UNAVAILABLE
    assert f"{syslog.url}: " in result.err
    assert "Connection refused" in result.err
    status = es("status", "--json").json()["audit_forward"]
    assert (status["delivered_seq"], status["backlog"]) == (0, 5)
    assert status["failing_since"] is not None
    assert "Connection refused" in status["last_error"]
    text = es("status").out
    assert f"audit      5 record(s) waiting for {syslog.url}" in text
    syslog.start()  # the same port
    assert es("audit", "forward").code == 0
    assert syslog.seqs() == [1, 2, 3, 4, 5]
    status = es("status", "--json").json()["audit_forward"]
    assert (status["backlog"], status["failing_since"], status["last_error"]) == (0, None, None)


def test_collector_restart_mid_stream_resends_the_batch_in_order(
    cli: Any,
    tmp_path: Path,
    store_url: str,
    store: Store,
    syslog: SyslogCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit_forward, "BATCH", 4)
    add_records(store, 10)
    es = forwarder(cli, tmp_path, store_url, f'forward = "{syslog.url}"\n')
    # The first batch goes through; the collector dies two records into the second.
    original = syslog._serve

    def serve_then_arm(conn: Any) -> None:
        syslog.crash_after = 2 if len(syslog.connections) == 1 else None
        original(conn)

    monkeypatch.setattr(syslog, "_serve", serve_then_arm)
    result = es("audit", "forward")
    assert result.code == ExitCode.UNAVAILABLE
    assert syslog.connections == [[1, 2, 3, 4], [5, 6]]
    assert es("status", "--json").json()["audit_forward"]["delivered_seq"] == 4
    assert es("audit", "forward").code == ExitCode.UNAVAILABLE  # still down: refused
    monkeypatch.setattr(syslog, "_serve", original)
    syslog.start()
    assert es("audit", "forward").code == 0
    assert syslog.connections == [[1, 2, 3, 4], [5, 6], [5, 6, 7, 8], [9, 10]]
    # At least once and in order: without the copies, exactly the log.
    first_copies = list(dict.fromkeys(syslog.seqs()))
    assert first_copies == list(range(1, 11))
    assert es("status", "--json").json()["audit_forward"]["backlog"] == 0


def test_syslog_tls_with_the_collectors_ca(
    cli: Any, tmp_path: Path, store_url: str, store: Store, tls: TlsFiles
) -> None:
    add_records(store, 3)
    collector = SyslogCollector(tls=tls).start()
    try:
        untrusted = forwarder(cli, tmp_path, store_url, f'forward = "{collector.url}"\n')
        result = untrusted("audit", "forward")
        assert result.code == ExitCode.CONFIG
        assert "certificate not trusted" in result.err
        assert "audit.forward_ca_bundle" in result.err
        es = forwarder(
            cli,
            tmp_path,
            store_url,
            f'forward = "{collector.url}"\nforward_ca_bundle = "{tls.ca_file}"\n',
        )
        assert es("audit", "forward").code == 0
        assert collector.seqs() == [1, 2, 3]
        assert collector.url.startswith("syslog+tls://")
        assert collector.ragged_ends == 0  # the stream ended with a close_notify
    finally:
        collector.stop()


@pytest.fixture
def https(tls: TlsFiles) -> Iterator[HttpsCollector]:
    collector = HttpsCollector(tls, token=TOKEN).start()
    yield collector
    collector.stop()


def https_forwarder(
    cli: Any, tmp_path: Path, store_url: str, tls: TlsFiles, url: str, token: str, more: str = ""
) -> Cli:
    token_file = tmp_path / "forward-token"
    token_file.write_text(token + "\n", encoding="utf-8")
    audit = (
        f'forward = "{url}"\nforward_token_file = "{token_file}"\n'
        f'forward_ca_bundle = "{tls.ca_file}"\n{more}'
    )
    return forwarder(cli, tmp_path, store_url, audit)


def test_https_json_lines_with_a_bearer_token(
    cli: Any, tmp_path: Path, store_url: str, store: Store, tls: TlsFiles, https: HttpsCollector
) -> None:
    add_records(store, 4)
    # A query string may carry a shared access signature: it is never shown.
    url = https.url("/ingest?sig=query-secret")
    es = https_forwarder(cli, tmp_path, store_url, tls, url, TOKEN)
    result = es("audit", "forward")
    assert result.code == 0, result.err
    (request,) = https.requests
    assert request["authorization"] == f"Bearer {TOKEN}"
    assert request["content_type"] == "application/x-ndjson"
    assert request["path"] == "/ingest?sig=query-secret"
    assert https.records() == exported(es)
    status = es("status", "--json")
    assert status.json()["audit_forward"]["target"] == f"https://127.0.0.1:{https.port}/ingest"
    for output in (result.out, result.err, status.out, es("status").out):
        assert TOKEN not in output
        assert "query-secret" not in output


def test_https_outage_and_a_wrong_token_are_named(
    cli: Any, tmp_path: Path, store_url: str, store: Store, tls: TlsFiles, https: HttpsCollector
) -> None:
    add_records(store, 3)
    https.answers = [503, (429, "application/json", '{"text":"Server is busy"}')]
    es = https_forwarder(cli, tmp_path, store_url, tls, https.url(), TOKEN)
    down = es("audit", "forward")
    assert down.code == ExitCode.UNAVAILABLE
    assert "HTTP 503 (text/html, " in down.err  # an HTML page is not printed
    busy = es("audit", "forward")
    assert busy.code == ExitCode.UNAVAILABLE
    assert 'HTTP 429: {"text":"Server is busy"}' in busy.err
    wrong = https_forwarder(cli, tmp_path, store_url, tls, https.url(), "not-the-token")
    refused = wrong("audit", "forward")
    assert refused.code == ExitCode.CONFIG
    assert "HTTP 401" in refused.err
    assert "audit.forward_token_file" in refused.err
    assert "not-the-token" not in refused.err + refused.out
    assert es("status", "--json").json()["audit_forward"]["backlog"] == 3
    assert https.records() == []
    es = https_forwarder(cli, tmp_path, store_url, tls, https.url(), TOKEN)
    assert es("audit", "forward").code == 0
    assert [r["seq"] for r in https.records()] == [1, 2, 3]


def test_splunk_hec_event_endpoint_gets_event_objects(
    cli: Any, tmp_path: Path, store_url: str, store: Store, tls: TlsFiles
) -> None:
    add_records(store, 2)
    collector = HttpsCollector(tls, token=TOKEN, scheme="Splunk").start()
    try:
        url = collector.url("/services/collector/event")
        more = 'forward_auth_scheme = "Splunk"\n'
        es = https_forwarder(cli, tmp_path, store_url, tls, url, TOKEN, more)
        assert es("audit", "forward").code == 0
        events = collector.records()
        assert [e["event"] for e in events] == exported(es)
        assert events[0]["source"] == "entrasync"
        assert events[0]["time"] == DAY.timestamp()
        assert collector.requests[0]["authorization"] == f"Splunk {TOKEN}"
    finally:
        collector.stop()


def test_another_forwarders_lease_is_respected(
    cli: Any, tmp_path: Path, store_url: str, store: Store, syslog: SyslogCollector
) -> None:
    add_records(store, 2)
    with store.unit_of_work(datetime.now(UTC)) as uow:
        assert forwarding.claim(uow, syslog.url, "daemon-a", timedelta(minutes=2)) == 0
    es = forwarder(cli, tmp_path, store_url, f'forward = "{syslog.url}"\n')
    result = es("audit", "forward")
    assert result.code == 0
    assert "another process is forwarding now; nothing sent" in result.out
    assert syslog.messages == []
    with store.unit_of_work(datetime.now(UTC)) as uow:
        forwarding.release(uow, syslog.url, "daemon-a")
    assert es("audit", "forward").code == 0
    assert syslog.seqs() == [1, 2]


@pytest.mark.parametrize(
    ("audit", "message"),
    [
        ('forward = "http://siem.example.com/x"', "scheme 'http': use one of syslog+tcp://"),
        ('forward = "https://u:pw-secret@siem.example.com/"', "credentials in the URL"),
        ('forward = "syslog+tcp://siem.example.com/path"', "a syslog target is host:port only"),
        (
            'forward = "syslog+tls://siem:6514"\nforward_token_file = "/x"',
            "audit.forward_token_file: set, but audit.forward is not an https:// collector",
        ),
    ],
)
def test_bad_forward_settings_are_named(
    cli: Any, tmp_path: Path, store_url: str, audit: str, message: str
) -> None:
    es = forwarder(cli, tmp_path, store_url, audit + "\n")
    result = es("check-config")
    assert result.code == ExitCode.CONFIG
    assert message in result.out  # check-config reports on stdout
    assert "pw-secret" not in result.err + result.out


def test_an_unreadable_token_file_is_named_without_its_content(
    cli: Any, tmp_path: Path, store_url: str, store: Store, tls: TlsFiles
) -> None:
    add_records(store, 1)
    es = https_forwarder(cli, tmp_path, store_url, tls, "https://127.0.0.1:9/x", "two words")
    result = es("audit", "forward")
    assert result.code == ExitCode.CONFIG
    assert "audit.forward_token_file" in result.err
    assert "not one token on one line" in result.err
    assert "two words" not in result.err


def test_check_config_reaches_the_collector_without_writing_to_it(
    cli: Any, tmp_path: Path, store_url: str, syslog: SyslogCollector, tls: TlsFiles
) -> None:
    es = forwarder(cli, tmp_path, store_url, f'forward = "{syslog.url}"\n')
    assert f"✓ audit collector {syslog.url} answers" in es("check-config").out
    assert syslog.messages == []
    syslog.stop()
    down = es("check-config").out
    assert f"! audit collector does not answer ({syslog.url}: Connection refused)" in down
    tls_collector = SyslogCollector(tls=tls).start()
    try:
        untrusted = forwarder(cli, tmp_path, store_url, f'forward = "{tls_collector.url}"\n')
        result = untrusted("check-config")
        assert result.code == ExitCode.CONFIG
        assert "✗ audit collector" in result.out
        assert "certificate not trusted" in result.out
    finally:
        tls_collector.stop()


def test_a_log_cut_after_delivery_stops_forwarding_until_an_admin_resends(
    cli: Any, tmp_path: Path, store_url: str, store: Store, syslog: SyslogCollector
) -> None:
    """Cutting the tail reuses seqs: "what follows the cursor" would skip the records that
    take the cut ones' numbers. Forwarding stops, says why, and resumes from where the admin
    says, audited."""
    add_records(store, 6)
    es = forwarder(cli, tmp_path, store_url, f'forward = "{syslog.url}"\n')
    assert es("audit", "forward").code == 0
    sql(store_url, "DELETE FROM audit_log WHERE seq > 4")
    add_records(store, 3, first=20)  # get seqs 5, 6, 7
    stopped = es("audit", "forward")
    assert stopped.code == ExitCode.FAILURE
    assert "record 6 was delivered with hash" in stopped.err
    assert "cut or rewritten after it was delivered" in stopped.err
    assert "entrasync audit forward --from SEQ" in stopped.err
    assert syslog.seqs() == [1, 2, 3, 4, 5, 6]
    status = es("status", "--json").json()["audit_forward"]
    assert "cut or rewritten" in status["last_error"]
    resent = es("audit", "forward", "--from", "5", "--actor", "sam")
    assert resent.code == 0, resent.err
    new = [m for m in syslog.messages if int(m.params["seq"]) >= 5][2:]
    assert [int(m.params["seq"]) for m in new] == [5, 6, 7, 8]  # 8: the audited rewind
    assert [m.record["reason"].split("#")[1].split(" ")[0] for m in new[:3]] == ["20", "21", "22"]
    assert new[3].record["action"] == "audit.forward_rewound"
    assert new[3].record["actor"] == "admin:sam"
    assert new[3].record["details"]["delivered_seq_before"] == 6


def test_https_answers_that_took_nothing_are_not_delivery(
    cli: Any, tmp_path: Path, store_url: str, store: Store, tls: TlsFiles
) -> None:
    add_records(store, 2)
    collector = HttpsCollector(tls, token=TOKEN, scheme="Splunk").start()
    try:
        collector.answers = [
            (200, "text/html", "<html>Sign in to continue</html>"),
            (200, "application/json", '{"text":"Server is busy","code":9}'),
        ]
        url = collector.url("/services/collector/event")
        more = 'forward_auth_scheme = "Splunk"\n'
        es = https_forwarder(cli, tmp_path, store_url, tls, url, TOKEN, more)
        portal = es("audit", "forward")
        assert portal.code == ExitCode.UNAVAILABLE
        assert "HTML page" in portal.err and "Sign in" not in portal.err
        unconfirmed = es("audit", "forward")
        assert unconfirmed.code == ExitCode.UNAVAILABLE
        assert "Splunk did not confirm the events" in unconfirmed.err
        assert es("status", "--json").json()["audit_forward"]["backlog"] == 2
        assert es("audit", "forward").code == 0
        last = collector.requests[-1]["body"].splitlines()
        assert [json.loads(line)["event"]["seq"] for line in last] == [1, 2]
        assert es("status", "--json").json()["audit_forward"]["backlog"] == 0
    finally:
        collector.stop()


def test_413_halves_the_batch_and_names_a_record_too_large(
    cli: Any, tmp_path: Path, store_url: str, store: Store, tls: TlsFiles, https: HttpsCollector
) -> None:
    add_records(store, 8)
    https.max_body = 2_000  # about four records
    es = https_forwarder(cli, tmp_path, store_url, tls, https.url(), TOKEN)
    assert es("audit", "forward").code == 0
    assert [r["seq"] for r in https.records()] == list(range(1, 9))
    accepted = [r for r in https.requests if r["status"] == 200]
    assert len(accepted) > 1
    assert all(len(r["body"].encode()) <= 2_000 for r in accepted)
    assert https.requests[0]["status"] == 413  # 500 records asked, then halved until taken
    https.max_body = 100  # smaller than any one record
    add_records(store, 1, first=8)
    refused = es("audit", "forward")
    assert refused.code == ExitCode.CONFIG
    assert "record 9 alone (" in refused.err
    assert "raise its request size limit" in refused.err


def test_echoed_secrets_are_scrubbed_before_the_reply_is_cut(
    cli: Any, tmp_path: Path, store_url: str, store: Store, tls: TlsFiles, https: HttpsCollector
) -> None:
    add_records(store, 1)
    https.echo = True
    https.token = "another-token"  # ours is refused, and the refusal repeats it
    url = https.url("/ingest?sig=query-secret-value")
    es = https_forwarder(cli, tmp_path, store_url, tls, url, TOKEN)
    refused = es("audit", "forward")
    assert refused.code == ExitCode.CONFIG
    last_error = es("status", "--json").json()["audit_forward"]["last_error"]
    for text in (refused.err, refused.out, last_error):
        assert TOKEN[:8] not in text
        assert "query-secret" not in text


@pytest.mark.parametrize(
    ("audit", "message"),
    [
        (f'forward = "syslog+tcp://{"a" * 70}.example.com"', "is not a valid host name"),
        (f'forward = "https://siem.example.com/{"p" * 500}"', "longer than 400 characters"),
    ],
)
def test_unusable_targets_are_named_not_crashes(
    cli: Any, tmp_path: Path, store_url: str, audit: str, message: str
) -> None:
    result = forwarder(cli, tmp_path, store_url, audit + "\n")("audit", "forward")
    assert result.code == ExitCode.CONFIG
    assert message in result.err


def test_a_token_that_is_not_printable_ascii_is_named(
    cli: Any, tmp_path: Path, store_url: str, store: Store, tls: TlsFiles
) -> None:
    add_records(store, 1)
    es = https_forwarder(cli, tmp_path, store_url, tls, "https://127.0.0.1:9/x", "tökén")
    result = es("audit", "forward")
    assert result.code == ExitCode.CONFIG
    assert "printable ASCII" in result.err
    assert "tökén" not in result.err and "ö" not in result.err
