"""`entrasync db check-tally [--repair] [--json]`: the maintained license tally (licenses in
use, live records) against a full count of the store, on both stores.

Without --repair the command is a reader: exit 0 when the figures agree, 1 when they differ
(both shown, the store untouched), and it works through a read-only opening. With --repair a
tally that differs is set to the count in one transaction with one `tally.repaired` record,
and the audit chain still verifies."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from testkit import report, write_config

from entrasync.errors import ExitCode

Run = Callable[..., Any]
# Three people, each with an agent holding history: three licenses, three live records.
AGREED = {"used": 3, "live_users": 3}


@pytest.fixture
def filled(es: Run, ingest: Any) -> Run:
    ingest(report("C\\ann", "PC1"), report("C\\bob", "PC2"), report("C\\cat", "PC3", events=4))
    return es


def _sql(url: str, statement: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def _tamper(url: str) -> None:
    """What a bug in a writer (or a hand edit) would leave: figures the store does not hold."""
    _sql(url, "UPDATE license_tally SET used = used + 5, live_users = live_users - 1")


def _audit(es: Run) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = es("audit", "list", "--json").json()
    return records


def _line(out: str, label: str) -> list[str]:
    [line] = [line for line in out.splitlines() if line.startswith(label)]
    return line.removeprefix(label).split()


def test_an_agreeing_tally_exits_0(filled: Run) -> None:
    result = filled("db", "check-tally", "--json")
    assert result.code == 0, result.err
    assert result.json() == {
        "maintained": AGREED,
        "counted": AGREED,
        "agree": True,
        "repaired": False,
    }
    text_ = filled("db", "check-tally")
    assert text_.code == 0, text_.err
    assert _line(text_.out, "licenses in use") == ["3", "3"]
    assert _line(text_.out, "live records") == ["3", "3"]
    assert "tally agrees with the store" in text_.out


def test_a_tampered_tally_exits_1_shows_both_figures_and_changes_nothing(
    filled: Run, store_url: str, dump: Callable[[], Any]
) -> None:
    _tamper(store_url)
    before = dump()
    as_json = filled("db", "check-tally", "--json")
    assert as_json.code == ExitCode.FAILURE, as_json.err
    assert as_json.json() == {
        "maintained": {"used": 8, "live_users": 2},
        "counted": AGREED,
        "agree": False,
        "repaired": False,
    }
    as_text = filled("db", "check-tally")
    assert as_text.code == ExitCode.FAILURE
    assert _line(as_text.out, "licenses in use") == ["8", "3"]
    assert _line(as_text.out, "live records") == ["2", "3"]
    assert "entrasync db check-tally --repair" in as_text.out
    assert dump() == before


def test_repair_fixes_the_row_with_one_audit_record(
    filled: Run, store_url: str, dump: Callable[[], Any]
) -> None:
    _tamper(store_url)
    seqs_before = [r["seq"] for r in _audit(filled)]
    repaired = filled("db", "check-tally", "--repair", "--json", "--actor", "alice")
    assert repaired.code == 0, repaired.err
    assert repaired.json() == {
        "maintained": {"used": 8, "live_users": 2},
        "counted": AGREED,
        "agree": False,
        "repaired": True,
    }
    assert dump()["license_tally"] == [(1, 3, 3)]
    new = [r for r in _audit(filled) if r["seq"] not in seqs_before]
    assert [(r["action"], r["actor"]) for r in new] == [("tally.repaired", "admin:alice")]
    shown = filled("audit", "show", str(new[0]["seq"]), "--json").json()
    assert shown["details"] == {"before": {"used": 8, "live_users": 2}, "after": AGREED}
    verified = filled("audit", "verify", "--json")
    assert verified.code == 0, verified.out
    assert verified.json()["ok"] is True
    assert filled("db", "check-tally").code == 0
    # A tally that agrees is left alone: nothing written, nothing audited.
    before = dump()
    again = filled("db", "check-tally", "--repair")
    assert again.code == 0, again.err
    assert "nothing to repair" in again.out
    assert dump() == before


def test_repair_creates_a_missing_tally_row(
    filled: Run, store_url: str, dump: Callable[[], Any]
) -> None:
    """A store without the row (bulk-loaded) is not wrong: the check says so and exits 0;
    --repair counts it now, audited with no figures before."""
    _sql(store_url, "DELETE FROM license_tally")
    checked = filled("db", "check-tally", "--json")
    assert checked.code == 0, checked.err
    assert checked.json()["maintained"] is None
    assert "no maintained tally yet" in filled("db", "check-tally").out
    assert filled("db", "check-tally", "--repair").code == 0
    assert dump()["license_tally"] == [(1, 3, 3)]
    [record] = [r for r in _audit(filled) if r["action"] == "tally.repaired"]
    assert record["details"] == {"before": None, "after": AGREED}


# --- a read-only store: a read-only SQLite file, a PostgreSQL role that may only SELECT --------


@contextmanager
def _read_only(url: str) -> Iterator[str]:
    """The URL of a read-only opening of the store at `url`."""
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        gc.collect()  # engines left to the collector must not write when they close
        path.chmod(0o444)
        try:
            yield url
        finally:
            path.chmod(0o644)
        return
    parsed = make_url(url)
    schema = cast(str, parsed.query["options"]).removeprefix("-csearch_path=")
    role, password = f"es_tally_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    _sql(url, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        _sql(url, f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        _sql(url, f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
        yield parsed.set(username=role, password=password).render_as_string(hide_password=False)
    finally:
        _sql(url, f"DROP OWNED BY {role}")
        _sql(url, f"DROP ROLE {role}")


def test_the_check_works_on_a_read_only_store(
    filled: Run, cli: Any, store_url: str, tmp_path: Path, dump: Callable[[], Any]
) -> None:
    _tamper(store_url)
    before = dump()
    with _read_only(store_url) as url:
        config = write_config(tmp_path / "reader.toml", url, "[account]\npurchased_licenses = 10\n")
        result = cli("--config", str(config), "db", "check-tally", "--json")
        assert result.code == ExitCode.FAILURE, result.err
        assert result.json()["maintained"] == {"used": 8, "live_users": 2}
        assert result.json()["counted"] == AGREED
        assert cli("--config", str(config), "db", "check-tally").code == ExitCode.FAILURE
    assert dump() == before
