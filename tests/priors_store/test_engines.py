"""The build engines: ``dask`` (distance row blocks on a real distributed cluster) gives the same
artifact, byte for byte and version for version, as ``local``."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

import connectome_priors.kernel.dask as cluster
from connectome_priors.cli import main
from connectome_priors.priors_store import load
from connectome_priors.priors_store.distance_writer import local_blocks, write_distance
from connectome_priors.priors_store.distributed import distance_blocks
from connectome_priors.priors_store.errors import PriorsError
from connectome_priors.priors_store.pipeline import DeriveParams, build
from connectome_priors.priors_store.population import Population
from connectome_priors.priors_store.writer import ArtifactWriter

distributed = pytest.importorskip("distributed")

#: What ``cxp priors build --no-precision`` uses (default 1024-row blocks: 3 for the small
#: store's 2,404 pooled cells, the last one short).
PARAMS = DeriveParams(precision=False)


@pytest.fixture(scope="module")
def client():
    """A real distributed cluster in this process: 2 single-threaded workers."""
    with distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def local_pooled(small_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("engine-local")
    return root, build("pooled", Population.pooled(), store=small_store, root=root, params=PARAMS)


def _files(root, manifest) -> dict[str, bytes]:
    folder = root / manifest["name"] / manifest["version"]
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "manifest.json"}


def test_dask_pooled_build_is_byte_identical(small_store, local_pooled, client, tmp_path):
    root_local, m_local = local_pooled
    m_dask = build("pooled", Population.pooled(), store=small_store, root=tmp_path, params=PARAMS,
                   engine="dask", scheduler=client)
    n = m_local["population"]["n_neurons"]
    assert n > 2 * PARAMS.distance_block and n % PARAMS.distance_block  # 3+ blocks, last short
    assert m_dask["version"] == m_local["version"]
    assert m_dask["files"] == m_local["files"]
    assert m_dask["kinds"] == m_local["kinds"]  # stats (mean/max distance) included
    local_files, dask_files = _files(root_local, m_local), _files(tmp_path, m_dask)
    assert sorted(dask_files) == sorted(local_files)
    assert "distance_um.npy" in dask_files and "connectome.npz" in dask_files
    for name, data in local_files.items():
        assert dask_files[name] == data, name
    # the engine is an execution choice: not in the manifest
    text = (tmp_path / "pooled" / m_dask["version"] / "manifest.json").read_text()
    assert "dask" not in text and "engine" not in text
    # and the matrix is the real thing: symmetric, zero diagonal, float32 distances
    d = load("pooled", root=tmp_path)["distance_um"]
    assert d.shape == (n, n) and d.dtype == np.float32
    assert np.all(np.diag(d) == 0) and np.array_equal(d, d.T)


@pytest.mark.parametrize("order", ["C", "F"])
def test_distance_blocks_out_of_order_give_same_files(client, tmp_path, order):
    """Blocks arriving in any order (and a window smaller than the task count) write the same
    matrix and the same stats as the in-process loop; every block's float64 sum and max equal the
    local ones exactly, also for column-major positions (what ``ResolvedPopulation`` gives: the
    float64 rounding of the distances depends on the memory layout)."""
    pos = np.asarray(np.random.default_rng(7).uniform(0, 500, size=(251, 3)), order=order)
    got = list(distance_blocks(client, pos, block=16, max_in_flight=3))
    assert sorted(s for s, *_ in got) == list(range(0, 251, 16))
    assert all(rows.dtype == np.float32 for _, rows, *_ in got)
    local = {start: (total, hi) for start, _, total, hi in local_blocks(pos, 16)}
    assert {start: (total, hi) for start, _, total, hi in got} == local
    with ArtifactWriter(tmp_path / "a", "x") as wa, ArtifactWriter(tmp_path / "b", "x") as wb:
        write_distance(pos, wa, block=16)
        write_distance(pos, wb, block=16, blocks=reversed(got))
        for f in ("distance_um.npy", "distance_minmax.npy"):
            assert wa.path(f).read_bytes() == wb.path(f).read_bytes(), f
        assert wa.kinds == wb.kinds
        full = np.load(wa.path("distance_um.npy"))
        assert full[3, 200] == np.float32(np.linalg.norm(pos[3] - pos[200]))


def test_block_sums_are_added_in_block_order(tmp_path):
    """The recorded mean does not depend on the order blocks arrive in (sums chosen so that float
    addition order matters: in block order 1 + 1e16 + 1 - 1e16 == 0, reversed it is 1)."""
    pos = np.zeros((8, 3))
    pos[:, 0] = np.arange(8)
    sums = [1.0, 1e16, 1.0, -1e16]
    blocks = [(2 * i, np.ones((2, 8), np.float32), s, 1.0) for i, s in enumerate(sums)]
    with ArtifactWriter(tmp_path, "x") as w:
        write_distance(pos, w, block=2, blocks=reversed(blocks))
        assert w.kinds["distance_um"]["stats"]["mean_um"] == 0.0


def test_missing_block_is_refused(tmp_path):
    pos = np.zeros((10, 3))
    pos[:, 0] = np.arange(10)
    one = (0, np.zeros((4, 10), np.float32), 0.0, 0.0)
    with ArtifactWriter(tmp_path, "x") as w, \
            pytest.raises(PriorsError, match=r"distance_um.npy: got row blocks starting at \[0\]"):
        write_distance(pos, w, block=4, blocks=[one])


def test_engine_arguments_are_checked(small_store, tmp_path):
    with pytest.raises(PriorsError, match="unknown build engine 'spark'; expected one of local, dask"):
        build("x", Population.pooled(), store=small_store, root=tmp_path, engine="spark")
    with pytest.raises(PriorsError, match="engine is 'local'"):
        build("x", Population.pooled(), store=small_store, root=tmp_path,
              scheduler="tcp://127.0.0.1:1")
    assert not (tmp_path / "x").exists()


def test_cli_engine_dask_on_a_scheduler_address(small_store, local_pooled, tmp_path, capsys):
    """``cxp priors build --pooled --engine dask --dask-scheduler ADDR`` publishes the version the
    local engine published (the name is not part of the version)."""
    with distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                                  dashboard_address=":0", protocol="tcp://",
                                  host="127.0.0.1") as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        args = ["--store", str(small_store), "--artifacts", str(tmp_path), "--no-progress"]
        capsys.readouterr()
        assert main(["priors", "build", "p", "--pooled", *args, "--no-precision",
                     "--engine", "dask", "--dask-scheduler", cluster.scheduler_address]) == 0
        out = capsys.readouterr().out
    version = local_pooled[1]["version"]
    assert f"published p@{version} " in out
    manifest = json.loads((tmp_path / "p" / version / "manifest.json").read_text())
    assert manifest["parameters"]["distance_block"] == DeriveParams().distance_block


def test_cli_refuses_dask_with_per_field(small_store, tmp_path, capsys):
    assert main(["priors", "build", "pf", "--fields", "6_6_2", "--per-field", "--engine", "dask",
                 "--store", str(small_store), "--artifacts", str(tmp_path), "--no-progress"]) == 2
    assert "--engine dask is for one large build" in capsys.readouterr().err
    assert not (tmp_path / "pf_6_6_2").exists()


def test_cli_unreachable_scheduler_is_a_clear_error(small_store, tmp_path, capsys, monkeypatch):
    """A scheduler address where none listens: exit 2 naming the address, no artifact."""
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    with socket.socket() as s:  # a free port, closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    assert main(["priors", "build", "u", "--sql", "SELECT nucleus_id FROM neurons LIMIT 20",
                 "--engine", "dask", "--dask-scheduler", addr, "--store", str(small_store),
                 "--artifacts", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Dask scheduler at {addr}" in err
    assert not (tmp_path / "u").exists() or not any((tmp_path / "u").iterdir())
