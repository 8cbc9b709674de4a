"""What a collector receives, for any record: one RFC 5424 message per record, octet-counted,
an ASCII JSON MSG (UTF-8 only inside PARAM-VALUEs), its structured data and JSON intact
whatever the reason or a name holds."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest
from collectors import parse_syslog, read_frames
from hypothesis import given, settings
from hypothesis import strategies as st

from entrasync.domain.forwarding import (
    ForwardKind,
    https_body,
    parse_target,
    syslog_frame,
)

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80)
_records = st.fixed_dictionaries(
    {
        "seq": st.integers(1, 10**12),
        "at": st.just("2026-06-01T12:00:00.000001Z"),
        "run_id": st.none() | _text,
        "actor": _text,
        "action": _text,
        "user_id": st.none() | st.integers(1, 10**9),
        "entra_object_id": st.none() | _text,
        "identifiers": st.lists(st.fixed_dictionaries({"kind": _text, "value": _text})),
        "reason": _text,
        "details": st.dictionaries(_text, _text | st.integers(), max_size=3),
        "prev_hash": st.just("0" * 64),
        "hash": st.just("f" * 64),
    }
)


def _frames_through_a_socket(data: bytes) -> list[bytes]:
    """The frames as a collector reads them off a real stream."""
    left, right = socket.socketpair()

    def send() -> None:
        left.sendall(data)
        left.close()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        return list(read_frames(right))
    finally:
        sender.join()
        right.close()


@settings(max_examples=150, deadline=None)
@given(st.lists(_records, min_size=1, max_size=4), _text)
def test_every_record_is_one_ascii_rfc5424_message(
    records: list[dict[str, Any]], hostname: str
) -> None:
    data = b"".join(syslog_frame(r, hostname, 4242) for r in records)
    frames = _frames_through_a_socket(data)
    assert len(frames) == len(records)
    for frame, record in zip(frames, records, strict=True):
        message = parse_syslog(frame)
        assert message.record == record
        assert message.params["seq"] == str(record["seq"])
        assert message.params.get("run_id") == record["run_id"]
        assert message.msgid != "" and " " not in message.msgid and len(message.msgid) <= 32
        assert message.host != "" and " " not in message.host


@settings(max_examples=50, deadline=None)
@given(st.lists(_records, min_size=1, max_size=4))
def test_https_body_is_one_json_line_per_record(records: list[dict[str, Any]]) -> None:
    body = https_body(records, splunk_events=False).decode("ascii")
    assert [json.loads(line) for line in body.splitlines()] == records


@pytest.mark.parametrize(
    ("url", "kind", "port", "display"),
    [
        ("syslog+tcp://siem.example.com", ForwardKind.SYSLOG_TCP, 514, None),
        ("syslog+tls://siem.example.com", ForwardKind.SYSLOG_TLS, 6514, None),
        ("syslog+tls://[::1]:7000", ForwardKind.SYSLOG_TLS, 7000, "syslog+tls://[::1]:7000"),
        (
            "https://hec.example.com:8088/services/collector/raw?channel=x",
            ForwardKind.HTTPS,
            8088,
            "https://hec.example.com:8088/services/collector/raw",
        ),
    ],
)
def test_targets_get_default_ports_and_lose_their_query_when_shown(
    url: str, kind: ForwardKind, port: int, display: str | None
) -> None:
    target = parse_target(url)
    assert (target.kind, target.port) == (kind, port)
    assert target.display == (display or f"{url}:{port}")
