"""The checkpoint record's canonical bytes, Ed25519 signatures and the verdict (pure)."""

from __future__ import annotations

import json

from entrasync.domain.checkpoint import (
    Checkpoint,
    CheckpointProblem,
    generate_key_pair,
    judge,
    load_private_key,
    load_public_key,
    parse_line,
    sign,
)

HEAD = Checkpoint(3, "c" * 64, "2026-06-01T12:00:00.000000Z")


def test_canonical_bytes_are_sorted_compact_json() -> None:
    assert HEAD.canonical_bytes() == (
        b'{"at":"2026-06-01T12:00:00.000000Z","hash":"' + b"c" * 64 + b'","seq":3}'
    )


def test_verdicts() -> None:
    private, public = generate_key_pair()
    key, pub = load_private_key(private), load_public_key(public)
    signed = sign(HEAD, key)
    assert judge([signed], pub, {3: HEAD.hash}, 5) == []
    assert [f.problem for f in judge([signed], pub, {}, 2)] == [CheckpointProblem.TRUNCATION]
    rewritten = judge([signed], pub, {3: "d" * 64}, 3)
    assert [f.problem for f in rewritten] == [CheckpointProblem.REWRITE]
    line = {**signed.as_json(), "seq": 2}
    forged = parse_line(json.dumps(line), "f:1")
    assert forged is not None
    assert [f.problem for f in judge([forged], pub, {2: HEAD.hash}, 3)] == [
        CheckpointProblem.FORGED
    ]
    garbage = signed.as_json() | {"signature": "not base64!"}
    parsed = parse_line(json.dumps(garbage), "f:2")
    assert parsed is not None
    assert [f.problem for f in judge([parsed], pub, {3: HEAD.hash}, 3)] == [
        CheckpointProblem.FORGED
    ]
    assert parse_line("[1, 2]", "f:3") is None
    assert parse_line("{", "f:4") is None
