"""The ``cave`` source through the real, unmodified caveclient against the local stand-in server:
full pull, capped results, 503s, stalls, kill + resume, changed root ids, auth, the token."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectome_priors.etl import Store, run_etl
from connectome_priors.cli import main
from connectome_priors.etl.sources.cave.client import (TOKEN_ENV, CaveAuthError, CaveRequestError,
                                     CaveTransientError)
from connectome_priors.etl.sources.cave.source import CACHE_DIRNAME, read_cave
from connectome_priors.testing.cave_standin import Fault, StandinCave
from connectome_priors.etl.sources.cave.transform import canonical_tables
from connectome_priors.etl.store import content_hash
from tests.etl._cave import fast_config, fixture_versions  # fixture

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cave(isolated_home):
    with StandinCave(fixture_versions()) as server:
        yield server


def _hash(st) -> str:
    from connectome_priors.etl.contracts import validate_tables

    return content_hash("cave", validate_tables(st.tables, origins=st.origins))


def test_full_pull_fills_canonical_tables_via_cli(cave, tmp_path, capsys):
    store = tmp_path / "store"
    rc = main(["etl", "--source", "cave", "--server", cave.url, "--datastack", "minnie65_public",
               "--version", "1", "--store", str(store), "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "stored snapshot cave-" in out.out and "materialization v1" in out.out
    snap = Store(store).snapshots().iloc[-1]
    assert snap["source"] == "cave" and snap["datastack"] == "minnie65_public"
    assert int(snap["materialization_version"]) == 1
    assert snap["materialization_timestamp"].isoformat().startswith("2024-01-08T00:00:00")
    counts = json.loads(snap["row_counts"])
    assert set(counts) == {"neurons", "functional_units", "connections", "synapses", "tuning"}
    # what crossed the wire equals the fixture transformed directly
    expected = canonical_tables(fixture_versions()[1], datastack="minnie65_public",
                                materialization_version=1, materialization_timestamp=None)
    assert snap["content_hash"] == _hash(expected)
    report = json.loads(snap["report"])
    assert report["excluded_root_id_zero"] == 2 and report["excluded_multi_nucleus_nuclei"] == 2
    n = Store(store).sql("SELECT count(*) AS n, count(DISTINCT nucleus_id) AS d, "
                         "min(cell_class) AS lo, max(cell_class) AS hi FROM neurons").iloc[0]
    assert n["n"] == n["d"] == counts["neurons"] > 50 and n["lo"] == n["hi"] == "excitatory"
    assert not (store / CACHE_DIRNAME / "minnie65_public").exists() or not any(
        (store / CACHE_DIRNAME / "minnie65_public").iterdir())  # checkpoints removed once stored


def test_capped_results_are_split_until_complete(cave, tmp_path):
    cave.row_cap = 90  # every table and most synapse chunks exceed it
    st = read_cave(fast_config(cave.url, row_cap=10**9), store_dir=tmp_path / "s")
    q = st.report["queries"]
    assert q["nucleus_detection_v0"]["capped"] >= 2 and q["synapses_pni_2"]["capped"] >= 1
    assert all(v["rows"] <= 300 or v["queries"] > 1 for v in q.values())
    expected = canonical_tables(fixture_versions()[1], datastack="minnie65_public",
                                materialization_version=1, materialization_timestamp=None)
    assert _hash(st) == _hash(expected)
    assert st.tables["synapses"].num_rows == expected.tables["synapses"].num_rows > 1000


def test_injected_503s_are_retried(cave, tmp_path, caplog):
    fault = cave.add_fault(Fault("status", status=503, times=3))
    with caplog.at_level(logging.WARNING, logger="connectome_priors.etl.sources.cave"):
        st = read_cave(fast_config(cave.url), store_dir=tmp_path / "s")
    assert fault.fired == 3
    assert sum("HTTP 503" in r.getMessage() and "retry" in r.getMessage() for r in caplog.records) == 3
    assert st.tables["neurons"].num_rows > 50
    cave.clear_faults()
    cave.add_fault(Fault("status", status=503, times=None))
    with pytest.raises(CaveTransientError, match=r"HTTP 503.*gave up after 4 attempts"):
        read_cave(fast_config(cave.url), store_dir=tmp_path / "s2")


def test_stalled_response_hits_the_timeout(cave, tmp_path):
    fault = cave.add_fault(Fault("stall", seconds=60, times=1))
    t0 = time.monotonic()
    st = read_cave(fast_config(cave.url, timeout_s=0.5), store_dir=tmp_path / "s")
    assert fault.fired == 1 and time.monotonic() - t0 < 20
    assert st.tables["neurons"].num_rows > 50
    cave.clear_faults()
    cave.add_fault(Fault("stall", match="/info/version", seconds=60, times=1))  # while connecting
    assert read_cave(fast_config(cave.url, timeout_s=0.5), store_dir=tmp_path / "s").tables
    cave.clear_faults()
    cave.add_fault(Fault("stall", seconds=60, times=None))
    with pytest.raises(CaveTransientError, match="no answer within the request timeout"):
        read_cave(fast_config(cave.url, timeout_s=0.3, retries=1), store_dir=tmp_path / "s2")


def test_auto_coregistration_adds_units(cave, tmp_path):
    manual = read_cave(fast_config(cave.url), store_dir=tmp_path / "s")
    both = read_cave(fast_config(cave.url, auto_coregistration=True), store_dir=tmp_path / "s")
    auto = fixture_versions()[1]["coregistration_auto_phase3_fwd_apl_vess_combined_v2"]
    n_manual = manual.tables["functional_units"].num_rows
    added = both.tables["functional_units"].num_rows - n_manual
    excitatory = fixture_versions()[1]["aibs_metamodel_celltypes_v661"]
    exc = set(excitatory.loc[excitatory.classification_system == "excitatory_neuron", "target_id"])
    assert 0 < added <= sum(t in exc for t in auto["target_id"])
    assert both.tables["neurons"].num_rows == manual.tables["neurons"].num_rows + added


def test_client_errors_are_terminal(cave, tmp_path):
    fault = cave.add_fault(Fault("status", status=400, times=None))
    with pytest.raises(CaveRequestError, match="HTTP 400; expected 200"):
        read_cave(fast_config(cave.url), store_dir=tmp_path / "s")
    assert fault.fired == 1  # no retry
    cave.clear_faults()
    with pytest.raises(CaveRequestError, match=r"version 9 .* not available.*\[1, 2\]"):
        read_cave(fast_config(cave.url, version=9), store_dir=tmp_path / "s")


_CHILD = """
import sys
from connectome_priors.etl import run_etl
from tests.etl._cave import fast_config
run_etl("cave", store=sys.argv[2], cave=fast_config(sys.argv[1], chunk_size=10, timeout_s=600))
"""


@pytest.mark.processes
def test_kill_mid_pull_then_resume_gives_identical_snapshot(cave, tmp_path, isolated_home):
    store = tmp_path / "killed"
    cave.add_fault(Fault("stall", match="synapses_pni_2", after=5, times=None, seconds=600))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, cave.url, str(store)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    syn_dir = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until 5 synapse chunks are checkpointed
        found = list((store / CACHE_DIRNAME).glob("minnie65_public/*/synapses_pni_2/*.parquet"))
        if len(found) >= 5:
            syn_dir = found[0].parent
            break
        assert child.poll() is None, child.stdout.read().decode()
        time.sleep(0.1)
    assert syn_dir is not None, "the child never checkpointed 5 chunks"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert not Store(store).exists() or Store(store).snapshots().empty  # nothing published
    cave.clear_faults()
    before = cave.query_count
    resumed = run_etl("cave", store=store, cave=fast_config(cave.url, chunk_size=10))
    report = json.loads(resumed["report"])
    assert report["queries"]["synapses_pni_2"]["from_checkpoint"] >= 5
    assert report["queries"]["nucleus_detection_v0"]["queries"] == 0  # all from checkpoints
    fresh = run_etl("cave", store=tmp_path / "fresh", cave=fast_config(cave.url, chunk_size=10))
    assert resumed["snapshot_id"] == fresh["snapshot_id"]
    assert resumed["content_hash"] == fresh["content_hash"]
    assert cave.query_count - before > 0
    assert not syn_dir.exists()  # checkpoints removed after the load


def test_new_version_with_changed_root_ids_maps_through_nucleus_ids(cave, tmp_path):
    store = Store(tmp_path / "s")
    v1 = run_etl("cave", store=store, cave=fast_config(cave.url, version=1))
    v2 = run_etl("cave", store=store, cave=fast_config(cave.url, version="latest"))
    assert v2["materialization_version"] == 2 and v1["snapshot_id"] != v2["snapshot_id"]
    a = store.sql("SELECT nucleus_id, root_id FROM neurons ORDER BY nucleus_id",
                  snapshot=v1["snapshot_id"])
    b = store.sql("SELECT nucleus_id, root_id FROM neurons ORDER BY nucleus_id",
                  snapshot=v2["snapshot_id"])
    assert b["nucleus_id"].is_unique and a["nucleus_id"].tolist() == b["nucleus_id"].tolist()
    changed = (a["root_id"].to_numpy() != b["root_id"].to_numpy()).mean()
    assert 0.1 < changed < 0.6
    conn = "SELECT * EXCLUDE (snapshot_id) FROM connections ORDER BY pre_nucleus_id, post_nucleus_id"
    ca, cb = store.sql(conn, snapshot=v1["snapshot_id"]), store.sql(conn, snapshot=v2["snapshot_id"])
    assert len(ca) > 100 and ca.equals(cb)  # same wiring, keyed on nuclei, despite new root ids
    syn = store.sql("SELECT count(*) AS n FROM synapses s JOIN neurons p ON s.pre_root_id = p.root_id",
                    snapshot=v2["snapshot_id"])
    assert syn["n"].iloc[0] == json.loads(v2["row_counts"])["synapses"]


def test_auth_failure_is_clear(isolated_home, tmp_path, capsys):
    with StandinCave(fixture_versions(), token="right-token") as server:
        with pytest.raises(CaveAuthError, match=rf"HTTP 401.*{TOKEN_ENV}"):
            read_cave(fast_config(server.url), store_dir=tmp_path / "s")
        os.environ[TOKEN_ENV] = "wrong-token"
        try:
            rc = main(["etl", "--source", "cave", "--server", server.url, "--version", "1",
                       "--store", str(tmp_path / "s"), "--no-progress"])
        finally:
            del os.environ[TOKEN_ENV]
        err = capsys.readouterr().err
        assert rc == 2 and "refused the token" in err and "wrong-token" not in err
        assert all(status == 401 for _, _, status in server.log)  # no retries of an auth failure


@pytest.mark.parametrize("via", ["token_file", "env", "setting"])
def test_token_never_written_or_logged(isolated_home, tmp_path, caplog, capsys, monkeypatch, via):
    token = "tok-3f9a1c77e2b54d0b8a6e"
    if via == "token_file":  # caveclient's standard token file
        secrets = isolated_home / ".cloudvolume" / "secrets"
        secrets.mkdir(parents=True)
        (secrets / "cave-secret.json").write_text(json.dumps({"token": token}))
    elif via == "setting":  # a token file named by the cave_token_file setting
        (tmp_path / "lab-token.json").write_text(json.dumps({"token": token}))
        monkeypatch.setenv("CXP_CAVE_TOKEN_FILE", str(tmp_path / "lab-token.json"))
    else:
        monkeypatch.setenv(TOKEN_ENV, token)
    store = tmp_path / "store"
    heavy = via == "token_file"  # the file variant also splits capped chunks, retries, refreshes
    with StandinCave(fixture_versions(), token=token, row_cap=150 if heavy else 10**6) as server:
        if heavy:  # a retried 503 too: retry logs must not carry it either
            server.add_fault(Fault("status", status=503, times=1))
        with caplog.at_level(logging.DEBUG):
            rc = main(["etl", "--source", "cave", "--server", server.url, "--version", "1",
                       "--store", str(store), "--timeout", "5"])
            assert rc == 0
            if heavy:
                assert main(["refresh", "--server", server.url, "--store", str(store),
                             "--no-progress", "--timeout", "5"]) == 0
        assert any(status == 200 for _, _, status in server.log)
    out = capsys.readouterr()
    text = out.out + out.err + "\n".join(r.getMessage() for r in caplog.records)
    assert "materialization" in text and token not in text
    home_files = sorted(str(p.relative_to(isolated_home)) for p in isolated_home.rglob("*") if p.is_file())
    assert home_files == ([".cloudvolume/secrets/cave-secret.json"] if via == "token_file" else [])
    files = [p for p in store.rglob("*") if p.is_file()]
    assert len(files) >= 6  # store.duckdb and the Parquet raw layer, at least
    for path in files:
        assert token.encode() not in path.read_bytes(), path
    params = Store(store).sql("SELECT parameters, report FROM snapshots", snapshot="all")
    assert len(params) == (2 if heavy else 1) and not params.apply(lambda r: token in "".join(r), axis=1).any()
