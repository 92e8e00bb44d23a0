"""The neuron store under concurrent processes: readers never wait for or block a writer and see one
committed snapshot throughout; writers are serialized (bounded wait); a killed writer leaves nothing
a reader sees and nothing after the next write. Every reader and writer here is a real process,
stopped at the store's named pause points (``CXP_PAUSE_AT``, connectome_priors/kernel/pause.py)
while the test acts: each interleaving is exact, each kill lands inside the writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from connectome_priors.testing.pauses import pause_env, release, wait_reached
from connectome_priors.etl.sources.files import write_export
from connectome_priors.etl.store import Store
from connectome_priors.testing.cave_standin import minnie_fixture
from tests.conftest import REPO

CXP = str(Path(sys.executable).parent / "cxp")
pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[int, Path]:
    """Static CAVE exports of materializations 1, 2 and 3 (small, synthetic stand-in tables)."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for version, raw in minnie_fixture(n_cells=60, n_synapses=300, versions=(1, 2, 3), seed=3).items():
        for table, df in raw.items():
            write_export(df, root / f"v{version}", table, form="parquet")
        out[version] = root / f"v{version}"
    return out


def cxp(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([CXP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, **(env or {})}, **kw)


def etl(export: Path, store: Path, **kw) -> subprocess.Popen:
    return cxp("etl", "--source", "files", str(export), "--store", str(store), "--no-progress", **kw)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def alive(proc: subprocess.Popen):
    return lambda: proc.poll() is None


def wait_for_waiting(proc: subprocess.Popen, timeout: float = 120) -> list[str]:
    """Read ``proc``'s stderr until it says it waits for the write lock; return the lines read."""
    lines: list[str] = []
    watchdog = threading.Timer(timeout, proc.kill)  # a hung writer: readline then sees EOF
    watchdog.start()
    try:
        while line := proc.stderr.readline():
            lines.append(line)
            if "waiting for another cxp process (pid" in line:
                return lines
    finally:
        watchdog.cancel()
    pytest.fail(f"the writer ended (or hung {timeout} s) without waiting for the lock: {''.join(lines)}")


def leftovers(store: Path) -> list[str]:
    """Temporary catalogs and raw folders no committed snapshot names."""
    known = set(Store(store).snapshots().snapshot_id)
    extra = [p.name for p in (store / "raw").iterdir() if p.name not in known]
    return extra + [p.name for p in store.iterdir() if p.name.startswith(".store.duckdb.tmp")]


def test_reader_keeps_its_snapshot_while_a_writer_commits(tmp_path, exports):
    """A Python reader binds the latest snapshot, a `cxp etl` commits a new one meanwhile; the
    reader still answers from its snapshot, a reader started afterwards sees the new one."""
    store = tmp_path / "s"
    assert finish(etl(exports[1], store))[0] == 0
    old = Store(store).latest_snapshot()
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import pathlib, sys, time
        from connectome_priors.etl.store import Store
        q = "SELECT max(snapshot_id) AS s, count(*) AS n FROM neurons"
        with Store({str(store)!r})._reader(q, None) as con:
            print("ready", flush=True)
            while not pathlib.Path({str(go)!r}).exists():
                time.sleep(0.05)
            print(*con.execute(q).fetchone(), flush=True)
    """)
    reader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    assert reader.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    rc, out, err = finish(etl(exports[2], store))
    assert rc == 0, err
    new = Store(store).latest_snapshot()
    assert new != old and "stored snapshot" in out
    assert reader.poll() is None  # the writer neither waited for the reader nor disturbed it
    go.touch()
    answer, _ = reader.communicate(timeout=60)
    assert reader.returncode == 0 and answer.split()[0] == old
    # latency of a reader beside a writer: a query while a commit is under way (the writer holds
    # the lock, its new catalog written but not yet renamed) answers at once, from the old one
    pauses = tmp_path / "pause"
    writer = etl(exports[3], store, env=pause_env("store:catalog-written", pauses))
    wait_reached("store:catalog-written", pauses, alive=alive(writer))
    t0 = time.perf_counter()
    during = Store(store).sql("SELECT count(*) AS n, max(snapshot_id) AS s FROM neurons")
    latency = time.perf_counter() - t0
    release("store:catalog-written", pauses)
    assert finish(writer)[0] == 0 and during.n[0] > 0 and latency < 5.0
    assert during.s[0] == new
    assert Store(store).sql("SELECT max(snapshot_id) AS s FROM neurons").s[0] == Store(store).latest_snapshot()
    print(f"writer took {time.perf_counter() - start:.1f} s; a reader's query during a write: "
          f"{latency * 1000:.0f} ms")


def test_cxp_sql_runs_for_seconds_beside_cxp_etl(tmp_path, exports):
    """A `cxp sql` stopped once it has bound its snapshot (a query in flight, however long) and a
    `cxp etl` meanwhile: both exit 0, neither waits for the other, the query answers from the
    snapshot that was latest when it started."""
    store = tmp_path / "s"
    assert finish(etl(exports[1], store))[0] == 0
    old = Store(store).latest_snapshot()
    query = "SELECT max(n.snapshot_id) AS s, count(*) AS x FROM neurons n"
    pauses = tmp_path / "pause"
    reader = cxp("sql", query, "--store", str(store), "--format", "csv",
                 env=pause_env("store:reader-bound", pauses))
    wait_reached("store:reader-bound", pauses, alive=alive(reader))
    rc, _, err = finish(etl(exports[2], store))
    assert rc == 0, err
    assert reader.poll() is None, "the query should still be running after the commit"
    release("store:reader-bound", pauses)
    rc, out, err = finish(reader)
    assert rc == 0, err
    assert out.splitlines()[1].split(",")[0] == old
    rc, out, _ = finish(cxp("sql", "SELECT max(snapshot_id) AS s FROM neurons", "--store", str(store),
                            "--format", "csv"))
    assert rc == 0 and out.splitlines()[1] == Store(store).latest_snapshot() != old


def test_two_writers_at_once_both_commit(tmp_path, exports):
    """Writer A stopped holding the lock with its Parquet files written, writer B started: B waits
    for the lock (saying so), A is let go, both commit, nothing is left over."""
    store = tmp_path / "s"
    assert finish(etl(exports[1], store))[0] == 0
    pauses = tmp_path / "pause"
    a = etl(exports[2], store, env=pause_env("store:raw-written", pauses))
    wait_reached("store:raw-written", pauses, alive=alive(a))
    b = etl(exports[3], store)
    told = wait_for_waiting(b)
    assert a.poll() is None and b.poll() is None
    release("store:raw-written", pauses)
    (ra, _, ea), (rb, _, eb) = finish(a), finish(b)
    assert ra == 0 and rb == 0, ea + "".join(told) + eb
    snapshots = Store(store).snapshots().snapshot_id.tolist()
    assert len(snapshots) == 3 and leftovers(store) == []


def test_second_writer_waits_for_the_first_then_commits(tmp_path, exports):
    store = Store(tmp_path / "s")
    with store._write_lock():  # another writer, mid-commit
        writer = etl(exports[1], store.directory)
        told = wait_for_waiting(writer)  # it has reached the lock and says it waits
        assert f"(pid {os.getpid()})" in told[-1]
        assert writer.poll() is None, "the second writer must wait for the lock"
        assert not Store(store.directory).exists()
    rc, out, err = finish(writer)
    assert rc == 0, err
    assert "stored snapshot" in out and len(store.snapshots()) == 1


def test_second_writer_fails_clearly_after_the_bound(tmp_path, exports):
    store = Store(tmp_path / "s")
    assert finish(etl(exports[1], store.directory))[0] == 0
    before = store.snapshots().snapshot_id.tolist()
    with store._write_lock():
        t0 = time.monotonic()
        rc, out, err = finish(etl(exports[2], store.directory, env={"CXP_STORE_LOCK_TIMEOUT": "1"}))
        waited = time.monotonic() - t0
    assert rc == 2 and waited < 30
    assert f"cxp etl: error: another cxp process (pid {os.getpid()}) is still writing to" in err
    assert "after 1 s" in err and "nothing was stored" in err
    assert store.snapshots().snapshot_id.tolist() == before and leftovers(store.directory) == []


#: Where a writer is SIGKILLed, in the order of a load, and whether its snapshot is committed then.
KILLS = [("store:locked", False), ("store:wrote:neurons", False), ("store:wrote:connections", False),
         ("store:raw-written", False), ("store:catalog-written", False), ("store:committed", True)]


def test_writer_killed_at_each_point_leaves_the_store_as_it_was(tmp_path, exports):
    """SIGKILL a writer stopped at each point of a load (lock taken, some Parquet files written,
    all written, new catalog written but not renamed, committed): readers see complete committed
    snapshots only, before and after the kill (the old ones; the new one too once committed); the
    next write removes whatever a killed one left and succeeds."""
    store = tmp_path / "s"
    assert finish(etl(exports[1], store))[0] == 0
    first = Store(store).latest_snapshot()
    for point, committed in KILLS:
        before = Store(store).snapshots().snapshot_id.tolist()
        pauses = tmp_path / "pause" / point.replace(":", "-")
        writer = etl(exports[2], store, env=pause_env(point, pauses))
        pid = wait_reached(point, pauses, alive=alive(writer))
        assert pid == writer.pid
        seen = Store(store).snapshots().snapshot_id.tolist()  # while the writer is stopped there
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=60)
        assert writer.returncode == -signal.SIGKILL
        after = Store(store).snapshots().snapshot_id.tolist()
        assert seen == after, point
        if committed:
            assert after[:-1] == before and len(after) == len(before) + 1, point
        else:
            assert after == before, point
        for sid in after:
            got = Store(store).sql("SELECT count(*) AS n FROM neurons", snapshot=sid).n[0]
            assert got == 27, (point, sid)
    rc, _, err = finish(etl(exports[3], store))
    assert rc == 0, err
    assert leftovers(store) == []
    assert Store(store).snapshots().snapshot_id.iloc[0] == first
    assert len(Store(store).snapshots()) == 3
