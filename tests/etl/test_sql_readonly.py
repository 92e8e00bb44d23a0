"""``cxp sql`` is read-only by construction (issue 20, item 1).

DuckDB's parser must classify the statement as one query, and the query then runs on a connection
without file access (no allowed path, no temporary directory, configuration locked). The property
test throws statements built from DuckDB's own keywords around write-ish constructs at it and checks
that each is refused with a one-line error or returns rows, and that no file of the store and
nothing under the folder they aim at changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from functools import cache
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectome_priors.cli import main
from connectome_priors.kernel.errors import CxpError
from connectome_priors.etl.errors import ReadOnlyError, StoreError
from connectome_priors.etl.store import Store
from tests.conftest import REPO, tiny_source, tiny_tables

SECRET = "7431955"  # what $PWD/.tmp holds: must never come back from a query


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and each folder's name, so new folders show)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def second_source():
    t = tiny_tables()["connections"]
    return tiny_source(connections=t.set_column(2, "n_synapses", pa.array([5, 1])))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with two snapshots, a target folder the statements aim at, and a working directory
    whose .tmp holds a secret (DuckDB's default temporary directory for in-memory databases)."""
    base = tmp_path_factory.mktemp("sql-readonly")
    store = Store(base / "store")
    store.load(tiny_source())
    store.load(second_source())
    target = base / "target"
    target.mkdir()
    cwd = base / "cwd"
    (cwd / ".tmp").mkdir(parents=True)
    (cwd / ".tmp" / "secret.csv").write_text(f"secret\n{SECRET}\n")
    return store, target, cwd


@cache
def keywords() -> tuple[str, ...]:
    """DuckDB's grammar keywords (from the installed DuckDB)."""
    return tuple(sorted(r[0].upper() for r in duckdb.sql("SELECT keyword_name FROM duckdb_keywords()").fetchall()))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def write_constructs(store: Store, target: Path, cwd: Path) -> list[str]:
    """Statements that would write (or read outside the store) if they ran."""
    sid = store.latest_snapshot()
    raw_file = store.raw_path(sid, "neurons")
    db = store.config.database
    copy_raw = f"COPY (SELECT * FROM neurons) TO {_quote(str(raw_file))} (FORMAT parquet)"
    copy_target = f"COPY (SELECT 42 AS answer) TO {_quote(str(target / 'out.csv'))}"
    return [
        copy_raw,
        copy_target,
        f"COPY neurons TO {_quote(str(db))} (FORMAT csv)",
        f"COPY (SELECT 1) TO {_quote(str(target / 'part'))} (FORMAT parquet, PARTITION_BY (1))",
        f"EXPLAIN ANALYZE {copy_raw}",
        f"EXPLAIN ANALYZE {copy_target}",
        f"EXPLAIN {copy_target}",
        "EXPLAIN ANALYZE SELECT * FROM neurons",
        "CREATE TABLE t AS SELECT * FROM neurons",
        f"CREATE TABLE t AS SELECT * FROM read_parquet({_quote(str(raw_file))})",
        "CREATE OR REPLACE VIEW neurons AS SELECT 1 AS nucleus_id",
        "CREATE MACRO m(x) AS x + 1",
        "INSERT INTO neurons SELECT * FROM neurons",
        "INSERT INTO snapshots SELECT * FROM snapshots",
        "UPDATE neurons SET root_id = 1",
        "DELETE FROM snapshots",
        "DROP VIEW neurons",
        "ALTER TABLE snapshots ADD COLUMN x INTEGER",
        f"ATTACH {_quote(str(target / 'x.duckdb'))} AS x",
        f"ATTACH {_quote(str(db))} AS cat",
        f"ATTACH {_quote(str(db))} AS cat (READ_ONLY)",
        "DETACH memory",
        f"EXPORT DATABASE {_quote(str(target / 'export'))}",
        f"IMPORT DATABASE {_quote(str(target))}",
        "PRAGMA enable_profiling",
        f"PRAGMA profiling_output = {_quote(str(target / 'profile.json'))}",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        f"SET temp_directory = {_quote(str(target))}",
        f"SET allowed_directories = [{_quote(str(target))}]",
        f"SET profiling_output = {_quote(str(target / 'p.json'))}",
        "RESET enable_external_access",
        "CALL pragma_version()",
        "CALL checkpoint()",
        "CHECKPOINT",
        "VACUUM",
        "INSTALL httpfs",
        "LOAD httpfs",
        "BEGIN TRANSACTION",
        "PREPARE p AS SELECT 1",
        "USE memory",
        "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')",
        f"SELECT * FROM read_csv({_quote(str(cwd / '.tmp' / 'secret.csv'))})",
        "SELECT * FROM read_csv('.tmp/secret.csv')",
        "SELECT * FROM glob('.tmp/*')",
        f"SELECT * FROM read_parquet({_quote(str(raw_file))})",
        f"SELECT * FROM read_text({_quote(str(db))})",
        f"SELECT * FROM query({_quote(copy_target)})",
        f"SELECT * FROM query_table({_quote(str(raw_file))})",
        "SELECT * FROM catalog",  # a Python local in the reader: no replacement scans
        "SELECT current_setting('temp_directory') AS t, current_setting('allowed_directories') AS d",
        "SELECT count(*) AS n FROM neurons",
        "FROM snapshot_files",
        "SUMMARIZE neurons",
        "DESCRIBE connections",
    ]


def wrappers() -> list[str]:
    """Ways to dress a construct up as, or next to, a query ({} is the construct)."""
    return [
        "{}",
        "{};",
        "WITH a AS (SELECT 1 AS x) {}",
        "WITH a AS ({}) SELECT * FROM a",
        "SELECT 1; {}",
        "{}; SELECT 1",
        "SELECT * FROM neurons; {}; SELECT 2",
        "/* a comment */ {}",
        "-- a comment\n{}",
        "(\n{}\n)",
        "SELECT * FROM ({})",
        "EXPLAIN ANALYZE {}",
        "EXPLAIN {}",
        "FROM (SELECT 1) AS q; {}",
        "SELECT ({}) AS v",
    ]


@st.composite
def statements(draw, constructs: list[str]) -> str:
    core = draw(st.sampled_from(constructs))
    text = draw(st.sampled_from(wrappers())).format(core)
    noise = draw(st.lists(st.sampled_from(keywords()), max_size=3))
    where = draw(st.sampled_from(["none", "prefix", "suffix", "middle"]))
    if noise and where == "prefix":
        text = " ".join(noise) + " " + text
    elif noise and where == "suffix":
        text = text + " " + " ".join(noise)
    elif noise and where == "middle":
        words = text.split(" ")
        at = draw(st.integers(0, len(words)))
        text = " ".join(words[:at] + noise + words[at:])
    if draw(st.booleans()):
        text = text.lower() if draw(st.booleans()) else text.replace(" ", "\n  ")
    return text


def check_statement(world, statement: str) -> str:
    """Run ``statement`` as `cxp sql` does; return 'refused' or 'rows' after checking that the store
    and the target folder are unchanged and nothing secret came back."""
    store, target, cwd = world
    before = tree_hashes(store.directory)
    try:
        result = store.sql(statement, snapshot="all")
        outcome = "rows"
    except CxpError as err:
        assert isinstance(err, StoreError), (statement, err)
        assert "\n" not in str(err), (statement, str(err))
        outcome = "refused"
    else:
        assert isinstance(result, pd.DataFrame)
        assert SECRET not in result.to_csv(), statement
    assert tree_hashes(store.directory) == before, statement
    assert list(target.iterdir()) == [], statement
    assert sorted(p.name for p in (cwd / ".tmp").iterdir()) == ["secret.csv"], statement
    return outcome


_SETTINGS = {"deadline": None, "database": None,
             "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}


@settings(max_examples=150, **_SETTINGS)
@given(data=st.data())
def test_no_statement_changes_the_store_or_writes_a_file(world, data, monkeypatch):
    store, target, cwd = world
    monkeypatch.chdir(cwd)
    check_statement(world, data.draw(statements(write_constructs(store, target, cwd)), label="sql"))


@pytest.mark.slow
@settings(max_examples=2000, **_SETTINGS)
@given(data=st.data())
def test_no_statement_changes_the_store_or_writes_a_file_many(world, data, monkeypatch):
    store, target, cwd = world
    monkeypatch.chdir(cwd)
    check_statement(world, data.draw(statements(write_constructs(store, target, cwd)), label="sql"))


def test_every_construct_bare_and_wrapped(world, monkeypatch):
    """Each construct, and each wrapper around the COPY into a snapshot file, once (no sampling);
    the plain queries among them return rows."""
    store, target, cwd = world
    monkeypatch.chdir(cwd)
    constructs = write_constructs(store, target, cwd)
    outcomes = {c: check_statement(world, c) for c in constructs}
    assert {c for c, o in outcomes.items() if o == "rows"} == {
        *constructs[-5:]}
    for wrapper in wrappers():
        assert check_statement(world, wrapper.format(constructs[0])) == "refused", wrapper


def test_the_issue_reproduction_is_refused_and_changes_nothing(world, capsys):
    """`cxp sql "EXPLAIN ANALYZE COPY (...) TO '<store>/raw/<snapshot>/neurons.parquet'"` overwrote
    a committed file with exit 0; now it is refused (exit 2, one line) and the file is unchanged."""
    store, _, _ = world
    sid = store.latest_snapshot()
    path = store.raw_path(sid, "neurons")
    before = tree_hashes(store.directory)
    query = (f"EXPLAIN ANALYZE COPY (SELECT * FROM neurons WHERE false) TO '{path}' "
             "(FORMAT parquet)")
    assert main(["sql", query, "--store", str(store.directory)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "refused: the store is read-only over SQL, and this is a EXPLAIN statement" in err
    assert tree_hashes(store.directory) == before
    assert store.verify().files == 10


@pytest.mark.parametrize("statement, kind", [
    ("EXPLAIN SELECT 1", "EXPLAIN"),
    ("PRAGMA version", "PRAGMA"),
    ("CALL pragma_version()", "CALL"),
    ("EXPORT DATABASE '/tmp/x'", "EXPORT"),
    ("LOAD httpfs", "LOAD"),
    ("INSTALL httpfs", "LOAD"),
    ("PIVOT neurons ON layer", "MULTI"),
])
def test_only_plain_queries_pass_the_parser(world, statement, kind):
    store, _, _ = world
    with pytest.raises(ReadOnlyError, match=rf"this is a {kind} statement"):
        store.sql(statement)


def test_two_queries_are_refused(world):
    store, _, _ = world
    with pytest.raises(ReadOnlyError, match=r"refused: 2 statements; `cxp sql` runs one query at a time"):
        store.sql("SELECT 1; SELECT 2")


def test_queries_still_run(world):
    """What analysts write keeps working: CTEs, FROM-first, DESCRIBE, SUMMARIZE, joins, 'all'."""
    store, _, _ = world
    assert store.sql("WITH c AS (SELECT * FROM connections) SELECT max(n_synapses) AS m FROM c").m[0] == 5
    assert store.sql("FROM neurons SELECT count(*) AS n").n[0] == 3
    assert "nucleus_id" in store.sql("DESCRIBE neurons").column_name.tolist()
    assert len(store.sql("SUMMARIZE connections")) == 5
    assert store.sql("SELECT count(*) AS n FROM connections", snapshot="all").n[0] == 4
    assert store.sql("SELECT count(*) AS n FROM snapshot_files").n[0] == 10


def test_the_reader_connection_has_no_file_access(world):
    store, _, _ = world
    got = store.sql("SELECT current_setting('enable_external_access') AS ext, "
                    "current_setting('temp_directory') AS tmp, "
                    "len(current_setting('allowed_directories')) AS dirs, "
                    "len(current_setting('allowed_paths')) AS paths, "
                    "current_setting('lock_configuration') AS locked").iloc[0].to_dict()
    assert got == {"ext": False, "tmp": "", "dirs": 0, "paths": 0, "locked": True}


def test_pwd_tmp_is_not_readable(world, monkeypatch, capsys):
    """DuckDB allows its temporary directory even with external access off; the default is
    $PWD/.tmp for an in-memory database. The reader has none."""
    store, _, cwd = world
    monkeypatch.chdir(cwd)
    assert main(["sql", "SELECT * FROM read_csv('.tmp/secret.csv')", "--store", str(store.directory)]) == 2
    err = capsys.readouterr().err
    assert "file system operations are disabled" in err and SECRET not in err
    assert err.count("\n") == 1


def test_multi_line_duckdb_errors_become_one_line(world, capsys):
    store, _, _ = world
    assert main(["sql", "SELECT nope\nFROM neurons", "--store", str(store.directory)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Referenced column \"nope\" not found" in err
    assert main(["sql", "SELEC 1", "--store", str(store.directory)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot parse SQL: Parser Error" in err


@pytest.mark.parametrize("fmt", ["csv", "parquet", "table"])
def test_out_cannot_write_into_the_store(world, tmp_path, fmt, capsys):
    store, _, _ = world
    sid = store.latest_snapshot()
    link = tmp_path / "innocent.csv"
    link.symlink_to(store.config.database)
    linked_dir = tmp_path / "dir-link"
    linked_dir.symlink_to(store.directory / "raw")
    before = tree_hashes(store.directory)
    for out in (store.config.database, store.raw_path(sid, "neurons"), store.directory / "new.csv",
                store.directory / "raw" / ".." / "x.csv", link, linked_dir / "y.csv",
                store.config.lock):
        assert main(["sql", "SELECT 1 AS x", "--store", str(store.directory), "--format", fmt,
                     "--out", str(out)]) == 2, out
        err = capsys.readouterr().err
        assert f"--out {out} lies inside the store {store.directory}" in err, err
        assert err.count("\n") == 1
    assert tree_hashes(store.directory) == before
    with pytest.raises(StoreError, match=r"lies inside the store"):
        store.sql_to_file("SELECT 1", store.config.database)
    # outside the store is fine
    assert main(["sql", "SELECT 1 AS x", "--store", str(store.directory), "--format", fmt,
                 "--out", str(tmp_path / "ok.out")]) == 0
    assert (tmp_path / "ok.out").is_file()


def test_committed_files_folders_and_catalog_are_read_only(world):
    store, _, _ = world
    for folder in (store.directory / "raw").iterdir():
        assert not stat.S_IMODE(folder.stat().st_mode) & 0o222, folder
        for path in folder.iterdir():
            assert not stat.S_IMODE(path.stat().st_mode) & 0o222, path
    assert not stat.S_IMODE(store.config.database.stat().st_mode) & 0o222


_AS_USER = r"""
import os, stat, sys
from pathlib import Path
import pyarrow as pa
from connectome_priors.etl.store import Store
from tests.conftest import tiny_source, tiny_tables

root = Path(sys.argv[1])
store = Store(root / "store")
first = store.load(tiny_source())["snapshot_id"]
path = store.raw_path(first, "neurons")
try:
    open(path, "r+b").close()
    print("WRITABLE")
except PermissionError:
    print("read-only for its owner")
# a kill after the rename, before the commit: an orphan, read-only folder
orphan = store.config.raw / "synthetic-orphan"
orphan.mkdir()
(orphan / "neurons.parquet").write_bytes(path.read_bytes())
os.chmod(orphan / "neurons.parquet", 0o444)
os.chmod(orphan, 0o555)
t = tiny_tables()["connections"]
second = store.load(tiny_source(connections=t.set_column(2, "n_synapses", pa.array([5, 1]))))
assert not orphan.exists(), "orphan left"
# a damaged snapshot (its owner may make it writable): the same load rewrites it
os.chmod(path.parent, 0o755); os.chmod(path, 0o644)
with open(path, "r+b") as fh:
    fh.seek(100); b = fh.read(1); fh.seek(100); fh.write(bytes([b[0] ^ 1]))
os.chmod(path, 0o444); os.chmod(path.parent, 0o555)
again = store.load(tiny_source())
assert again["repaired"] == [f"raw/{first}/neurons.parquet"], again["repaired"]
print("verified", store.verify().files)
"""


@pytest.mark.processes
def test_reload_and_cleanup_work_with_read_only_files_as_a_normal_user(tmp_path):
    """Read-only snapshot folders must not stop the writer removing leftovers or replacing a
    damaged snapshot. As root (to whom modes mean nothing) the check runs without the capability
    to override file modes (``setpriv``)."""
    command = [sys.executable, "-c", _AS_USER, str(tmp_path)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file modes cannot be enforced")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["read-only for its owner", "verified 10"], proc.stdout
