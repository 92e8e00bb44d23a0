"""``cxp refresh``: newest version or a quick no-op, atomically, one refresh at a time."""

from __future__ import annotations

import threading
import time

import pytest

from connectome_priors.testing.pauses import pause_env, release, wait_reached
from connectome_priors.etl import Store, run_etl
from connectome_priors.cli import main
from connectome_priors.etl.refresh import RefreshLockedError, refresh, refresh_lock, stored_versions
from connectome_priors.testing.cave_standin import StandinCave
from tests.etl._cave import fast_config, fixture_versions  # fixture


@pytest.fixture
def cave(isolated_home):
    with StandinCave(fixture_versions()) as server:
        yield server


def test_refresh_pulls_newest_then_is_a_quick_noop(cave, tmp_path, capsys):
    store = Store(tmp_path / "s")
    run_etl("cave", store=store, cave=fast_config(cave.url, version=1))
    out = refresh(fast_config(cave.url), store=store)
    assert out["pulled"] and out["version"] == 2 and out["created"]
    assert stored_versions(store, "minnie65_public") == {1, 2}
    before = cave.query_count
    t0 = time.monotonic()
    rc = main(["refresh", "--server", cave.url, "--store", str(store.directory), "--no-progress"])
    elapsed = time.monotonic() - t0
    assert rc == 0 and "up to date: minnie65_public materialization v2 is already stored" in \
        capsys.readouterr().out
    assert cave.query_count == before  # asked for versions only; no table query
    assert elapsed < 10
    assert len(store.snapshots()) == 2


def test_concurrent_refresh_is_refused_by_the_lock(cave, tmp_path, capsys):
    store = tmp_path / "s"
    with refresh_lock(store):
        with pytest.raises(RefreshLockedError, match="another refresh of .* is running"):
            refresh(fast_config(cave.url), store=store)
        rc = main(["refresh", "--server", cave.url, "--store", str(store), "--no-progress"])
        assert rc == 2 and "another refresh" in capsys.readouterr().err
    assert cave.query_count == 0 and not Store(store).exists()
    assert refresh(fast_config(cave.url), store=store)["version"] == 2  # lock released


def test_readers_keep_the_previous_snapshot_until_the_new_one_is_complete(cave, tmp_path, monkeypatch):
    """A refresh stopped in its store load, the new snapshot's files written but not committed:
    it holds the refresh lock (a second refresh is refused), readers still see version 1 only;
    let go, it commits version 2."""
    store = Store(tmp_path / "s")
    v1 = run_etl("cave", store=store, cave=fast_config(cave.url, version=1))
    pauses = tmp_path / "pause"
    for name, value in pause_env("store:raw-written", pauses).items():
        monkeypatch.setenv(name, value)  # read by the refresh thread's store load
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(refresh(fast_config(cave.url), store=store)))
    worker.start()
    try:
        wait_reached("store:raw-written", pauses, alive=worker.is_alive)
        # mid-refresh: the refresh holds the lock, and readers still see version 1 only
        assert store.latest_snapshot() == v1["snapshot_id"]
        assert len(store.snapshots()) == 1
        with pytest.raises(RefreshLockedError):
            refresh(fast_config(cave.url), store=store)
    finally:
        release("store:raw-written", pauses)
        worker.join(60)
    assert done["pulled"] and store.latest_snapshot() == done["snapshot_id"] != v1["snapshot_id"]
