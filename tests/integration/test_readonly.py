"""Read-only commands never write (DESIGN.md "Read-only commands"): they run on a read-only
SQLite file and with a PostgreSQL role that may only SELECT, they never create a missing
store, and `status` reports a changed `[account]` section instead of applying it.

The store is filled by the writers first (ingest, a sync against the Graph emulator), then
each read command runs against the read-only store and must print what it printed on the
writable one, leaving every byte of the store as it was."""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from testkit import PG_ENV, dump_store, report, write_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sync"))

from syncworld import SECRET, World, make_world

from entrasync.config import parse_config
from entrasync.domain.reports import parse_reports
from entrasync.errors import ExitCode, StoreUnavailable
from entrasync.services.ingest import ingest_reports
from entrasync.store.db import Store
from entrasync.store.schema import AccountRow

# Every read command of DESIGN.md that exists (`audit receipt` does not yet; `plan` reads Graph
# too, so it is checked on its own below).
READ_COMMANDS: list[list[str]] = [
    ["status"],
    ["status", "--json"],
    ["users", "list"],
    ["users", "list", "--json"],
    ["users", "list", "--csv"],
    ["users", "show", "ann@contoso.com", "--json"],
    ["users", "show", "CONTOSO\\carl"],
    ["pending", "list", "--json"],
    ["groups", "list"],
    ["groups", "list", "--json"],
    ["audit", "list", "--json"],
    ["audit", "show", "1"],
    ["audit", "export"],
    ["audit", "export", "--format", "csv"],
    ["audit", "verify", "--json"],
    ["db", "check-tally", "--json"],
]


def _stable(args: list[str], out: str) -> str:
    """The output without what moves with the clock (how long a pending user has waited)."""
    if args[:2] != ["pending", "list"]:
        return out
    entries = json.loads(out)
    for entry in entries:
        entry.pop("waiting_s", None)
        entry.pop("waiting", None)
    return json.dumps(entries)


def _upgrade(url: str) -> None:
    # Disposed at once: a SQLite connection left to the garbage collector would close (and
    # checkpoint into the file) in the middle of the read-only checks.
    store = Store(url, check_schema=False)
    try:
        store.upgrade()
    finally:
        store.engine.dispose()


def _fill(world: World, es: Any) -> None:
    """A store with something for every read command: tracked, untracked and pending users,
    groups read from the emulator, a run record and a chain of audit records."""
    text_ = world.config_path.read_text()
    world.config_path.write_text(
        text_.replace("purchased_licenses = 100", "purchased_licenses = 2\npending_mode = true")
    )
    ann = world.tenant.add_user("ann@contoso.com")
    world.tenant.add_user("bob@contoso.com")
    world.tenant.add_member(world.dnt, ann)
    lines = [
        report("CONTOSO\\ann", "PC1", upn="ann@contoso.com"),
        report("CONTOSO\\bob", "PC2", upn="bob@contoso.com"),
        report("CONTOSO\\carl", "PC3"),
    ]
    reports = world.config_path.parent / "reports.jsonl"
    reports.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert es("ingest", str(reports)).code == 0
    synced = es("sync")
    assert synced.code == 0, synced.out + synced.err
    pending = es("pending", "list", "--json").json()
    assert [p["identifiers"][0]["value"] for p in pending] == ["contoso\\carl"]


def _expected(es: Any) -> dict[str, str]:
    expected = {}
    for args in READ_COMMANDS:
        result = es(*args)
        assert result.code == 0, (args, result.err)
        expected[" ".join(args)] = _stable(args, result.out)
    return expected


def _check_reads(es: Any, expected: dict[str, str]) -> None:
    for args in READ_COMMANDS:
        result = es(*args)
        assert result.code == 0, (args, result.err)
        assert _stable(args, result.out) == expected[" ".join(args)], args


# --- SQLite: a read-only file in a read-only directory ----------------------------------------


@dataclass
class SqliteStore:
    directory: Path
    file: Path
    world: World


@pytest.fixture
def sqlite_world(cli: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SqliteStore, Any]]:
    """A filled SQLite store in a directory that other users can reach (for the unprivileged
    run below: pytest's own tmp_path is private to the user running the tests)."""
    top = Path(tempfile.mkdtemp(prefix="entrasync-ro-"))
    top.chmod(0o755)
    data = top / "data"
    data.mkdir(mode=0o755)
    db = data / "store.db"
    url = f"sqlite:///{db}"
    _upgrade(url)
    monkeypatch.setenv("ENTRASYNC_CLIENT_SECRET", SECRET)
    worlds = make_world(top, url)
    world = next(worlds)
    (top / "entrasync.toml").chmod(0o644)

    def es(*args: str) -> Any:
        return cli("--config", str(world.config_path), *args)

    try:
        _fill(world, es)
        world.store.engine.dispose()
        yield SqliteStore(data, db, world), es
    finally:
        data.chmod(0o755)
        for path in data.iterdir():
            path.chmod(0o644)
        next(worlds, None)
        shutil.rmtree(top)


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def _make_read_only(store: SqliteStore) -> None:
    store.file.chmod(0o444)
    store.directory.chmod(0o555)


def _assert_untouched(store: SqliteStore, before: dict[str, tuple[bytes, int]]) -> None:
    after = _snapshot(store.directory)
    assert after[store.file.name] == before[store.file.name], "the store file changed"
    assert not [n for n in after if n.endswith("-journal")]
    for name, (content, _mtime) in after.items():
        if name not in before:
            # SQLite's own shared-memory index and an empty log may appear next to a WAL
            # database when the reader may create them (root); never any data.
            assert name.endswith(("-wal", "-shm")), name
            assert not name.endswith("-wal") or content == b"", name


def test_read_commands_on_a_read_only_sqlite_store(sqlite_world: Any) -> None:
    store, es = sqlite_world
    expected = _expected(es)
    before = _snapshot(store.directory)
    _make_read_only(store)
    _check_reads(es, expected)
    _assert_untouched(store, before)


def _plans(es: Any) -> tuple[str, Any]:
    """`plan` and `plan --json` (without the run id, new each time)."""
    text_, as_json = es("plan"), es("plan", "--json")
    assert text_.code == 0, text_.err
    assert as_json.code == 0, as_json.err
    planned = as_json.json()
    planned.pop("run_id")
    # A member no cycle has seen yet is "in the group since" the plan's own time (a dry run
    # stores no first-seen time): two plans a minute apart differ there and nowhere else.
    return text_.out, json.loads(
        re.sub(r"since \d{4}-\d\d-\d\d \d\d:\d\d UTC", "since …", json.dumps(planned))
    )


def test_plan_on_a_read_only_sqlite_store(sqlite_world: Any) -> None:
    """`plan` reads Graph and plans without a write transaction (DESIGN.md: it works on a
    read-only store): the same plan as on the writable store, and not a byte written."""
    store, es = sqlite_world
    store.world.tenant.add_member(store.world.delete, store.world.tenant.add_user("dan@x.com"))
    expected = _plans(es)
    assert expected[1]["actions"], "a plan with actions in it (else this proves little)"
    before = _snapshot(store.directory)
    _make_read_only(store)
    assert _plans(es) == expected
    _assert_untouched(store, before)


def _unprivileged() -> list[str] | None:
    """A command prefix that runs as `nobody`, when the tests run as root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


# Runs each command through the CLI's entry point in one interpreter (starting one per
# command would take most of this test's time), printing [[exit code, stdout, stderr], …].
_DRIVER = """
import io, json, sys
from contextlib import redirect_stderr, redirect_stdout
from entrasync.cli import main
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    results.append([code, out.getvalue(), err.getvalue()])
sys.__stdout__.write(json.dumps(results))
"""


def _run_as(
    prefix: list[str], directory: Path, config: Path, commands: list[list[str]]
) -> list[tuple[int, str, str]]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(directory),
        "NO_COLOR": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    batch = json.dumps([["--config", str(config), *args] for args in commands])
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _DRIVER, batch],
        capture_output=True,
        env=env,
        cwd=directory,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return [tuple(r) for r in json.loads(done.stdout)]


def _as_nobody(prefix: list[str], store: SqliteStore, commands: list[list[str]]) -> list[str]:
    results = _run_as(prefix, store.directory, store.world.config_path, commands)
    outputs = []
    for args, (code, out, err) in zip(commands, results, strict=True):
        assert code == 0, (args, err)
        outputs.append(_stable(args, out))
    return outputs


def test_read_commands_as_a_user_who_may_not_write(sqlite_world: Any) -> None:
    """Without write permission on the file or its directory, as an operator's own account
    would be (root ignores file permissions, so the test drops to `nobody`)."""
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot drop privileges")
    store, es = sqlite_world
    expected = _expected(es)
    # A clean shutdown: the last connection removed SQLite's -wal and -shm files, and this
    # user may not create them again next to the file.
    last = sqlite3.connect(store.file)
    last.execute("SELECT count(*) FROM sqlite_master").fetchone()
    last.close()
    before = _snapshot(store.directory)
    assert list(before) == [store.file.name]
    _make_read_only(store)
    outputs = _as_nobody(prefix, store, READ_COMMANDS)
    assert outputs == [expected[" ".join(args)] for args in READ_COMMANDS]
    assert _snapshot(store.directory) == before  # not even a -shm: nothing at all was created
    # A writer is connected (the daemon): the reader shares its -shm index, read-only.
    writer = sqlite3.connect(store.file)
    try:
        writer.execute("SELECT count(*) FROM users").fetchone()
        assert (store.directory / "store.db-shm").exists()
        some = [["status", "--json"], ["users", "list", "--json"], ["audit", "verify", "--json"]]
        assert _as_nobody(prefix, store, some) == [expected[" ".join(a)] for a in some]
    finally:
        writer.close()
    assert store.file.read_bytes() == before[store.file.name][0]


_CRASH = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint=0")
conn.execute("UPDATE account SET purchased_licenses = 99")
os._exit(0)  # no close, no checkpoint: the change is only in the -wal
"""


def test_a_log_the_reader_cannot_replay_is_named(cli: Any) -> None:
    """A store copied (or left by a crash) with a non-empty -wal and no -shm, in a directory
    the reader may not write: exit 69 naming the log and the fix, never stale figures."""
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot drop privileges")
    top = Path(tempfile.mkdtemp(prefix="entrasync-ro-"))
    try:
        top.chmod(0o755)
        db = top / "store.db"
        _upgrade(f"sqlite:///{db}")
        config = write_config(
            top / "c.toml", f"sqlite:///{db}", "[account]\npurchased_licenses = 5\n"
        )
        config.chmod(0o644)
        assert cli("--config", str(config), "db", "upgrade").code == 0  # the account row
        subprocess.run([sys.executable, "-c", _CRASH, str(db)], check=True)
        (top / "store.db-shm").unlink()
        top.chmod(0o555)
        [(code, out, err)] = _run_as(prefix, top, config, [["status", "--json"]])
        assert code == ExitCode.UNAVAILABLE, err
        assert f"{db}-wal holds changes not yet in store.db" in err
        assert "`entrasync db upgrade`" in err
        assert out == ""
        top.chmod(0o755)
        assert cli("--config", str(config), "db", "upgrade").code == 0  # a writer replays it
        top.chmod(0o555)
        [(code, out, err)] = _run_as(prefix, top, config, [["status", "--json"]])
        assert code == 0, err
        assert json.loads(out)["licenses"]["purchased"] == 5  # db upgrade applied the file
    finally:
        top.chmod(0o755)
        shutil.rmtree(top)


def test_a_missing_sqlite_store_is_not_created(cli: Any, tmp_path: Path) -> None:
    for parent in (tmp_path, tmp_path / "no" / "such" / "dir"):
        db = parent / "store.db"
        config = write_config(tmp_path / "c.toml", f"sqlite:///{db}")
        for args in [*READ_COMMANDS, ["pending", "list"]]:
            result = cli("--config", str(config), *args)
            assert result.code == ExitCode.CONFIG, (args, result.err)
            assert f"{db} does not exist" in result.err, args
            assert "run `entrasync db upgrade`" in result.err, args
            assert "store.url" in result.err, args
            assert result.out == ""
            assert not db.exists(), args
        # Neither the file nor a directory on its way was created.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_a_read_only_store_refuses_writes(store_url: str) -> None:
    """An accidental write on the read-only opening fails loudly, on both stores."""
    reader = Store(store_url, read_only=True)
    try:
        with pytest.raises((DBAPIError, StoreUnavailable)) as refused, reader.reading() as s:
            s.execute(text("INSERT INTO account (id, purchased_licenses) VALUES (1, 5)"))
        assert "read-only" in str(refused.value) or "readonly" in str(refused.value)
        with pytest.raises(RuntimeError, match="read-only"), reader.transaction():
            pass
    finally:
        reader.engine.dispose()
    assert dump_store(store_url)["account"] == []


# --- PostgreSQL: a role that may only SELECT --------------------------------------------------


@contextmanager
def _reader_role(owner_url: str) -> Iterator[str]:
    """A LOGIN role with USAGE on the test schema and SELECT on its tables; dropped after."""
    url = make_url(owner_url)
    schema = cast(str, url.query["options"]).removeprefix("-csearch_path=")
    role = f"es_reader_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    engine = create_engine(owner_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
            conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
            conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"))
        yield url.set(username=role, password=password).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        engine.dispose()


@pytest.fixture
def pg_world(
    make_store_url: Any, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[World, Any, str]]:
    if not os.environ.get(PG_ENV):
        pytest.skip(f"{PG_ENV} is not set")
    url: str = make_store_url("postgresql")
    _upgrade(url)
    monkeypatch.setenv("ENTRASYNC_CLIENT_SECRET", SECRET)
    worlds = make_world(tmp_path, url)
    world = next(worlds)
    try:
        yield world, lambda *args: cli("--config", str(world.config_path), *args), url
    finally:
        next(worlds, None)


@pytest.mark.postgres
def test_read_commands_with_a_select_only_role(pg_world: Any, cli: Any, tmp_path: Path) -> None:
    world, es, owner_url = pg_world
    _fill(world, es)
    expected = _expected(es)
    world.tenant.add_member(world.delete, world.tenant.add_user("dan@x.com"))
    planned = _plans(es)
    assert planned[1]["actions"]
    before = dump_store(owner_url)
    with _reader_role(owner_url) as reader_url:
        config = tmp_path / "reader.toml"
        config.write_text(
            world.config_path.read_text().replace(owner_url, reader_url), encoding="utf-8"
        )
        _check_reads(lambda *args: cli("--config", str(config), *args), expected)
        # `plan` writes nothing, so this role may run it: the plan the owner would see.
        assert _plans(lambda *args: cli("--config", str(config), *args)) == planned
        # A writer with this role is a configuration to fix, named as such.
        refused = cli("--config", str(config), "sync")
        assert refused.code == 78, refused.err
        assert "refused a write" in refused.err and "Traceback" not in refused.err
        # The role really is read-only (else this test would prove nothing).
        engine = create_engine(reader_url)
        try:
            with pytest.raises(DBAPIError, match="permission denied"), engine.begin() as conn:
                conn.execute(text("UPDATE account SET purchased_licenses = 0"))
        finally:
            engine.dispose()
    assert dump_store(owner_url) == before


# --- status: the stored settings and compliance, never written --------------------------------


@dataclass
class Reader:
    """The same store through a read-only opening: a read-only file (SQLite; root ignores
    the mode, so the store's bytes are compared too) or a SELECT-only role (PostgreSQL)."""

    url: str
    file: Path | None

    def seal(self) -> Any:
        """Once the writers are done: make the file read-only; its bytes and mtime."""
        if self.file is None:
            return None
        gc.collect()  # the store_url fixture leaves its migration engine to the collector
        self.file.chmod(0o444)
        return self.snapshot()

    def snapshot(self) -> Any:
        if self.file is None:
            return None
        return (self.file.read_bytes(), self.file.stat().st_mtime_ns)


@pytest.fixture
def reader(store_url: str) -> Iterator[Reader]:
    if store_url.startswith("sqlite"):
        path = Path(make_url(store_url).database or "")
        try:
            yield Reader(store_url, path)
        finally:
            path.chmod(0o644)
        return
    with _reader_role(store_url) as url:
        yield Reader(url, None)


def _status(cli: Any, path: Path, url: str, account_toml: str) -> tuple[Any, Any]:
    config = write_config(path, url, account_toml)
    return cli("--config", str(config), "status", "--json"), cli("--config", str(config), "status")


def test_status_says_the_settings_differ_and_writes_nothing(
    cli: Any, tmp_path: Path, store_url: str, store: Store, ingest: Any, reader: Reader
) -> None:
    ingest(report("C\\a", "PC"), report("C\\b", "PC"))  # applies purchased_licenses = 10
    store.engine.dispose()
    before, file_before = dump_store(store_url), reader.seal()
    changed = '[account]\npurchased_licenses = 1\nplan = "paid"\npending_mode = true\n'
    as_json, as_text = _status(cli, tmp_path / "new.toml", reader.url, changed)
    assert as_json.code == 0, as_json.err
    status = as_json.json()
    # What the store holds, not what the file says: 2 of 10, still compliant.
    assert status["licenses"] == {"used": 2, "purchased": 10, "pending": 0}
    assert status["compliance"] == "ok"
    assert status["grace_ends"] is None
    assert status["settings_differ"] == {
        "purchased_licenses": {"stored": 10, "config": 1},
        "pending_mode": {"stored": False, "config": True},
    }
    assert as_text.code == 0, as_text.err
    assert "2/10 used" in as_text.out
    assert "settings   [account] differs from the stored settings" in as_text.out
    assert "purchased_licenses 10 -> 1" in as_text.out
    assert "pending_mode false -> true" in as_text.out
    assert dump_store(store_url) == before
    assert reader.snapshot() == file_before
    # The same file, unchanged: nothing to report.
    same, same_text = _status(
        cli, tmp_path / "same.toml", reader.url, "[account]\npurchased_licenses = 10\n"
    )
    assert same.json()["settings_differ"] == {}
    assert "settings" not in same_text.out


def test_status_on_a_store_no_writer_has_configured(
    cli: Any, tmp_path: Path, store_url: str, reader: Reader
) -> None:
    """A store migrated but never written to (as the fixtures migrate it, or one from before
    `db upgrade` applied `[account]`) has no account row: status shows the defaults a writer
    would replace, says so, and does not create the row."""
    file_before = reader.seal()
    as_json, _ = _status(
        cli, tmp_path / "c.toml", reader.url, "[account]\npurchased_licenses = 5\n"
    )
    assert as_json.code == 0, as_json.err
    status = as_json.json()
    assert status["licenses"] == {"used": 0, "purchased": 0, "pending": 0}
    assert status["compliance"] == "ok"
    assert status["settings_differ"] == {"purchased_licenses": {"stored": 0, "config": 5}}
    assert dump_store(store_url)["account"] == []
    assert reader.snapshot() == file_before


def test_status_shows_the_stored_compliance_and_leaves_recording_to_writers(
    cli: Any, tmp_path: Path, store_url: str, store: Store, reader: Reader
) -> None:
    """Grace started 31 days ago and no writer has run since: status says locked (the clock
    ran out) but records nothing; the next writer records the lock, once."""
    config = parse_config({"store": {"url": store_url}, "account": {"purchased_licenses": 1}})
    long_ago = datetime.now(UTC) - timedelta(days=31)
    lines = [report("C\\a", "PC"), report("C\\b", "PC")]
    ingest_reports(store, config, parse_reports(lines), long_ago, source="test")
    with store.reading() as session:
        row = session.get(AccountRow, 1)
        assert row is not None and row.grace_started_at == long_ago
    store.engine.dispose()
    before, file_before = dump_store(store_url), reader.seal()
    status, text_ = _status(
        cli, tmp_path / "c.toml", reader.url, "[account]\npurchased_licenses = 1\n"
    )
    assert status.code == 0, status.err
    assert status.json()["compliance"] == "locked"
    assert status.json()["licenses"] == {"used": 2, "purchased": 1, "pending": 0}
    assert datetime.fromisoformat(status.json()["grace_ends"]) == long_ago + timedelta(days=30)
    assert "compliance locked" in text_.out
    assert dump_store(store_url) == before
    assert reader.snapshot() == file_before
    writer = Store(store_url)
    try:
        with writer.unit_of_work(datetime.now(UTC)) as uow:
            uow.refresh_compliance(None)
        with writer.unit_of_work(datetime.now(UTC)) as uow:
            uow.refresh_compliance(None)
    finally:
        writer.engine.dispose()
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            locked = conn.scalar(
                text("SELECT count(*) FROM audit_log WHERE action = 'account.locked'")
            )
    finally:
        engine.dispose()
    assert locked == 1


def test_writers_apply_what_status_reported(
    cli: Any, tmp_path: Path, store_url: str, ingest: Any
) -> None:
    """The settings a reader reported are applied by the next writer (here an admin
    action; its dry run writes nothing), audited once."""
    ingest(report("C\\a", "PC", upn="a@contoso.com"))  # applies purchased_licenses = 10
    config = write_config(tmp_path / "new.toml", store_url, "[account]\npurchased_licenses = 12\n")

    def es(*args: str) -> Any:
        return cli("--config", str(config), *args)

    assert es("status", "--json").json()["settings_differ"] == {
        "purchased_licenses": {"stored": 10, "config": 12}
    }
    assert es("users", "untrack", "a@contoso.com", "--dry-run").code == 0  # writes nothing
    assert es("status", "--json").json()["settings_differ"] != {}
    assert es("users", "untrack", "a@contoso.com").code == 0
    status = es("status", "--json").json()
    assert status["settings_differ"] == {}
    assert status["licenses"]["purchased"] == 12
    changes = es("audit", "list", "--action", "account.settings_changed", "--json").json()
    assert [c["details"]["purchased_licenses"]["after"] for c in changes] == [10, 12]


def test_db_upgrade_applies_the_account_settings(
    cli: Any, tmp_path: Path, make_store_url: Any
) -> None:
    """`db upgrade` is a writer too (DESIGN.md): after a fresh install, `status` agrees with
    the file at once, and running it again audits nothing new."""
    for backend in ("sqlite", "postgresql") if os.environ.get(PG_ENV) else ("sqlite",):
        url = make_store_url(backend)
        config = write_config(
            tmp_path / f"{backend}.toml", url, "[account]\npurchased_licenses = 7\n"
        )
        upgraded = cli("--config", str(config), "db", "upgrade")
        assert upgraded.code == 0, upgraded.err
        status = cli("--config", str(config), "status", "--json").json()
        assert status["licenses"]["purchased"] == 7
        assert status["settings_differ"] == {}
        again = cli("--config", str(config), "db", "upgrade")
        assert again.code == 0, again.err
        changes = cli(
            "--config",
            str(config),
            "audit",
            "list",
            "--action",
            "account.settings_changed",
            "--json",
        ).json()
        assert len(changes) == 1
