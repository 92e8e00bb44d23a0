"""Build, publish, verify, load, select, export and diff prior artifacts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from connectome_priors.etl.store import Store
from connectome_priors.priors_store import (ArtifactIntegrityError, ArtifactNotFoundError, DeriveParams, Population,
                          PopulationError, build, diff, export, list_artifacts, load, verify)
from connectome_priors.priors_store.catalog import resolve_version
from connectome_priors.priors_store.manifest import DERIVATION_VERSION, nucleus_ids_digest

from tests.priors_store.conftest import FAST


def test_manifest_records_provenance(built, small_store):
    root, m = built
    snap = Store(small_store).snapshots().iloc[-1]
    assert m["source_snapshot"]["snapshot_id"] == snap.snapshot_id
    assert m["source_snapshot"]["content_hash"] == snap.content_hash
    assert m["source_snapshot"]["synthetic"] is True
    ids = Store(small_store).sql("SELECT nucleus_id FROM functional_units WHERE session = 6 AND "
                                 "scan_idx = 6 AND field = 2 AND nucleus_id IS NOT NULL").nucleus_id
    assert m["population"] == {"kind": "fields", "fields": ["6_6_2"], "sql": None,
                               "n_neurons": ids.nunique(),
                               "nucleus_ids_sha256": nucleus_ids_digest(ids.unique())}
    assert m["derivation_version"] == DERIVATION_VERSION and m["manifest_version"] == 2
    assert m["parameters"]["bin_s"] == 0.2 and m["parameters"]["precision"] is False
    assert set(m["kinds"]) >= {"distance_um", "distance_minmax", "connectome", "connectome_size",
                               "communicability", "modules_wiring", "correlation", "sttc",
                               "w_bio_modulation", "modules_functional"}
    files = {f["path"]: f for f in m["files"]}
    n = m["population"]["n_neurons"]
    assert files["distance_um.npy"]["shape"] == [n, n] and files["distance_um.npy"]["dtype"] == "float32"
    assert all(len(f["sha256"]) == 64 for f in files.values())
    on_disk = json.loads((root / "f662" / m["version"] / "manifest.json").read_text())
    assert on_disk == m


def test_neuron_order_and_matrices_agree_with_the_store(built, small_store):
    root, m = built
    prior = load("f662", root=root)
    store = Store(small_store)
    units = store.sql("SELECT unit_id, nucleus_id FROM functional_units WHERE session = 6 AND "
                      "scan_idx = 6 AND field = 2 ORDER BY unit_id")
    assert prior.neurons.unit_id.tolist() == units.unit_id.tolist()
    assert prior.neurons.nucleus_id.tolist() == units.nucleus_id.tolist()
    conn = prior["connectome"]
    assert sp.issparse(conn)
    edges = store.sql("SELECT pre_nucleus_id, post_nucleus_id, n_synapses FROM connections")
    index = {nid: i for i, nid in enumerate(prior.neurons.nucleus_id)}
    inside = edges[edges.pre_nucleus_id.isin(index) & edges.post_nucleus_id.isin(index)]
    assert conn.nnz == len(inside)
    for pre, post, k in inside.head(20).itertuples(index=False):
        assert conn[index[pre], index[post]] == k  # [pre, post]: rows presynaptic
    d = prior["distance_um"]
    pos = prior.neurons[["x_nm", "y_nm", "z_nm"]].to_numpy() / 1000
    assert d[0, 1] == pytest.approx(np.linalg.norm(pos[0] - pos[1]), rel=1e-6)
    assert np.all(np.diag(d) == 0)


def test_same_inputs_same_version(copy, small_store):
    _, m, root = copy
    again = build("f662", Population.of_fields("6_6_2"), store=small_store, root=root, params=FAST)
    assert again["version"] == m["version"]
    assert len([p for p in (root / "f662").iterdir() if p.is_dir()]) == 1
    other = build("f662", Population.of_fields("6_6_2"), store=small_store, root=root,
                  params=DeriveParams(precision=False, module_resolution=1.5))
    assert other["version"] != m["version"]
    assert (root / "f662" / "latest").read_text().strip() == other["version"]
    d = diff(load("f662", m["version"], root=root), load("f662", other["version"], root=root))
    assert d["parameters"] == {"module_resolution": (1.0, 1.5)}
    assert d["kinds"]["distance_um"] == "identical"
    assert d["same_neurons"] is True
    table = list_artifacts(root)
    assert sorted(table.version) == sorted([m["version"], other["version"]])
    assert table[table.latest].version.tolist() == [other["version"]]


def test_select_reindexes_every_kind(built):
    root, _ = built
    prior = load("f662", root=root)
    pick = prior.neurons.nucleus_id.to_numpy()[[5, 2, 9]]
    sub = prior.select(pick)
    assert sub.neurons.nucleus_id.tolist() == pick.tolist()
    full_d, sub_d = prior["distance_um"], sub["distance_um"]
    assert np.array_equal(sub_d, full_d[np.ix_([5, 2, 9], [5, 2, 9])])
    assert np.array_equal(sub["connectome"].toarray(),
                          prior["connectome"].toarray()[np.ix_([5, 2, 9], [5, 2, 9])])
    assert sub["modules_wiring"].tolist() == prior["modules_wiring"][[5, 2, 9]].tolist()
    assert sub.select(pick[[2]]).neurons.nucleus_id.tolist() == [pick[2]]
    with pytest.raises(KeyError, match=r"1 nucleus id\(s\) are not in f662"):
        prior.select([1])


def test_torch_view_shares_memory_without_copy(built):
    torch = pytest.importorskip("torch")
    root, _ = built
    prior = load("f662", root=root)
    t = prior.get("distance_um", as_="torch")
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert t.shape == (len(prior), len(prior))
    assert prior.get("connectome", as_="torch").sum().item() == prior["connectome"].sum()


def test_tampered_file_is_refused_and_named(built, small_store, tmp_path):
    root, m = built
    import shutil

    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    target = copy / "f662" / m["version"] / "sttc.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=r"sttc\.npy: sha256 .* differs from the manifest"):
        verify(copy / "f662" / m["version"])
    prior = load("f662", m["version"], root=copy)  # cheap checks pass: same size
    prior["distance_um"]  # untouched kinds still load
    with pytest.raises(ArtifactIntegrityError, match=r"sttc\.npy"):
        prior["sttc"]


def test_incomplete_artifact_is_refused(built, tmp_path):
    root, m = built
    import shutil

    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    (copy / "f662" / m["version"] / "connectome.npz").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"connectome\.npz: listed in the manifest but missing"):
        load("f662", m["version"], root=copy)
    (copy / "f662" / m["version"] / "stray.bin").write_bytes(b"x")
    with pytest.raises(ArtifactIntegrityError, match=r"stray\.bin: not listed in the manifest"):
        verify(copy / "f662" / m["version"])


def test_unknown_names_and_versions(built):
    root, _ = built
    with pytest.raises(ArtifactNotFoundError, match=r"no artifact named 'nope'.*known: \['f662'\]"):
        load("nope", root=root)
    with pytest.raises(ArtifactNotFoundError, match=r"no version\(s\) matching 'ffff'"):
        resolve_version("f662", "ffff", root=root)


def test_failed_build_publishes_nothing(small_store, tmp_path, monkeypatch):
    with pytest.raises(PopulationError, match=r"has no field\(s\) \['9_9_9'\]"):
        build("bad", Population.of_fields("9_9_9"), store=small_store, root=tmp_path, params=FAST)
    assert not (tmp_path / "bad").exists()
    import connectome_priors.priors_store.pipeline as build_module

    def explode(*args, **kwargs):
        raise RuntimeError("sttc exploded")

    monkeypatch.setattr(build_module.derive, "sttc", explode)  # fail midway: files already written
    with pytest.raises(RuntimeError, match="sttc exploded"):
        build("mid", Population.of_fields("6_6_2"), store=small_store, root=tmp_path, params=FAST)
    assert list((tmp_path / "mid").iterdir()) == []  # no version, no temp folder, no latest


@pytest.mark.parametrize("fmt", ["npz", "safetensors", "parquet"])
def test_export_round_trip(built, tmp_path, fmt):
    root, _ = built
    prior = load("f662", root=root)
    out = export(prior, tmp_path / f"out.{fmt}", fmt=fmt)
    if fmt == "npz":
        with np.load(out, allow_pickle=False) as z:
            assert set(z.files) == set(prior.kinds) | {"nucleus_id", "root_id", "unit_id"}
            assert np.array_equal(z["connectome"], prior["connectome"].toarray())
            assert z["unit_id"].tolist() == prior.neurons.unit_id.tolist()
    elif fmt == "safetensors":
        from safetensors.numpy import load_file

        z = load_file(str(out))
        assert np.array_equal(z["sttc"], prior["sttc"])
        assert z["nucleus_id"].tolist() == prior.neurons.nucleus_id.tolist()
    else:
        assert (out / "neurons.parquet").is_file()
        conn = pd.read_parquet(out / "connectome.parquet")
        assert len(conn) == prior["connectome"].nnz
        dense = pd.read_parquet(out / "distance_um.parquet")
        assert len(dense) == len(prior) ** 2


def test_sql_population_and_pooled(small_store, tmp_path):
    m = build("l23", Population.of_sql("SELECT nucleus_id FROM neurons WHERE layer = 'L2/3'"),
              store=small_store, root=tmp_path, params=FAST)
    n_l23 = Store(small_store).sql("SELECT count(*) AS n FROM neurons WHERE layer = 'L2/3'").n[0]
    assert m["population"]["n_neurons"] == n_l23
    assert "correlation" not in m["kinds"]  # neurons from several scans: no functional kinds
    assert "functional" in m["parameters"]["skipped"]
    prior = load("l23", root=tmp_path)
    assert prior.neurons.nucleus_id.is_monotonic_increasing
    with pytest.raises(PopulationError, match=r"must return a nucleus_id column"):
        build("x", Population.of_sql("SELECT root_id FROM neurons"), store=small_store, root=tmp_path)
    pooled = build("all", Population.pooled(), store=small_store, root=tmp_path, params=FAST)
    n_units = Store(small_store).sql("SELECT count(DISTINCT nucleus_id) AS n FROM functional_units").n[0]
    assert pooled["population"]["n_neurons"] == n_units


@pytest.mark.needs_shared_data
def test_released_matrices_give_functional_kinds_for_6_6_2(blueprint_root, tmp_path):
    """6_6_2 has no released spike trains; its functional kinds come from the released matrices."""
    from connectome_priors.etl.pipeline import run_etl

    run_etl("blueprint", blueprint_root, store=tmp_path / "s", fields=["6_6_2", "5_3_4"])
    m = build("s662", Population.of_fields("6_6_2"), store=tmp_path / "s", root=tmp_path / "a")
    assert {"correlation", "sttc", "precision", "w_bio_modulation", "modules_functional"} <= set(m["kinds"])
    assert m["parameters"]["functional_source"].startswith("released by the source")
    prior = load("s662", root=tmp_path / "a")
    d = blueprint_root / "DATA" / "info" / "6_6_2"
    units = np.load(d / "unit_ids_6_6_2.npy")
    order = np.argsort(units)
    assert prior.neurons.unit_id.tolist() == units[order].tolist()
    corr = np.load(d / "corr_matrix.npy")[np.ix_(order, order)]
    np.testing.assert_array_equal(prior["correlation"], corr)
    sttc = np.load(d / "sttc_matrix.npy")
    lower = np.tril(sttc) + np.tril(sttc, -1).T  # the release fills the lower triangle only
    np.testing.assert_array_equal(prior["sttc"], lower[np.ix_(order, order)])
    w = prior["w_bio_modulation"]
    assert w.shape == (312, 312) and np.allclose(w, w.T) and w.min() >= 0 and w.max() <= 1
    # a field with spikes still derives them itself
    m534 = build("s534", Population.of_fields("5_3_4"), store=tmp_path / "s", root=tmp_path / "a",
                 params=FAST)
    assert m534["parameters"]["functional_source"] == "derived from spike trains"


# --- issue 20: a full disk and bad names end in one error, with nothing partial published ---------

import errno  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from connectome_priors.priors_store import PriorsError  # noqa: E402
from connectome_priors.priors_store import writer as artifact_module  # noqa: E402
from connectome_priors.priors_store.names import check_name  # noqa: E402
from connectome_priors.priors_store.writer import ArtifactWriter  # noqa: E402


def _full_disk():
    """A writer that writes part of its file, then fails as a full disk does (no file name)."""
    def fake(target, *args, **kwargs):
        with open(target, "wb") as fh:
            fh.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return fake


def _nothing_left(folder: Path) -> None:
    assert not folder.exists() or list(folder.iterdir()) == []  # no version, temp folder, latest


def test_disk_full_writing_a_kind_names_the_file_and_publishes_nothing(small_store, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(np, "save", _full_disk())
    with pytest.raises(PriorsError, match=r"cannot write .*/\.tmp-[^/]+/cell_sign\.npy: No "
                                          r"space left on device \(errno 28\) while building "
                                          r"artifact full.*Free space") as info:
        build("full", Population.of_fields("6_6_2"), store=small_store, root=tmp_path, params=FAST)
    assert info.value.errno == errno.ENOSPC and info.value.path.endswith("cell_sign.npy")
    assert "\n" not in str(info.value)
    _nothing_left(tmp_path / "full")


def test_disk_full_writing_the_neuron_table_or_manifest(small_store, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(pd.DataFrame, "to_parquet", lambda self, target, **kw: _full_disk()(target))
        with pytest.raises(PriorsError, match=r"neurons\.parquet: No space left on device"):
            build("full", Population.of_fields("6_6_2"), store=small_store, root=tmp_path,
                  params=FAST)
    _nothing_left(tmp_path / "full")
    real = Path.write_text

    def manifest_full(self, *args, **kwargs):
        if self.name == "manifest.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", manifest_full)
        with pytest.raises(PriorsError, match=r"manifest\.json: No space left on device"):
            build("full", Population.of_fields("6_6_2"), store=small_store, root=tmp_path,
                  params=FAST)
    _nothing_left(tmp_path / "full")


def test_disk_full_at_the_latest_pointer_keeps_the_complete_version(small_store, tmp_path,
                                                                    monkeypatch):
    def pointer_full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(artifact_module, "atomic_write_text", pointer_full)
        with pytest.raises(PriorsError, match=r"published full@[0-9a-f]{16} at .*, but cannot write "
                                              r".*full/latest: No space left on device"):
            build("full", Population.of_fields("6_6_2"), store=small_store, root=tmp_path,
                  params=FAST)
    (version,) = [p for p in (tmp_path / "full").iterdir()]
    assert not version.name.startswith(".")
    verify(version)  # complete: every file listed, every sha256 right
    m = build("full", Population.of_fields("6_6_2"), store=small_store, root=tmp_path, params=FAST)
    assert (tmp_path / "full" / "latest").read_text().strip() == m["version"] == version.name


def test_memmap_reserves_its_blocks_so_a_full_disk_is_an_error_not_sigbus(tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space, raising=False)
    with pytest.raises(PriorsError, match=r"big\.npy: No space left on device"):
        with ArtifactWriter(tmp_path, "big") as writer:
            writer.memmap("big.npy", (64, 64), np.float32)
    _nothing_left(tmp_path / "big")
    monkeypatch.undo()
    with ArtifactWriter(tmp_path, "ok") as writer:
        mm = writer.memmap("m.npy", (4, 4), np.float32)
        mm[:] = 1.0
        mm.flush()
        assert np.load(writer.path("m.npy")).sum() == 16.0


@pytest.mark.parametrize("name", ["a" * 101, "a" * 300, "x*", "f[0-9]", "f?", "../f", "a/b", ".hidden",
                                  "f662\n", "", "-x"])
def test_bad_names_are_refused_before_anything_is_written(tmp_path, name):
    with pytest.raises(PriorsError, match="is not allowed") as info:
        ArtifactWriter(tmp_path, name)
    assert "\n" not in str(info.value).replace(repr(name)[:41], "")  # one line
    if len(name) > 100:
        assert f"({len(name)} characters)" in str(info.value) and name not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ref", [("f662\n", "latest"), ("f662", "abc\n"), ("f662", "*"),
                                 ("f662", "[0-9]*"), ("a" * 300, "latest")])
def test_bad_refs_are_refused_by_load_and_verify(built, ref):
    root, _ = built
    with pytest.raises(PriorsError, match="is not allowed"):
        load(*ref, root=root)
    with pytest.raises(PriorsError, match="is not allowed"):
        resolve_version(*ref, root=root)


def test_check_name_accepts_the_longest_name():
    assert check_name("a" * 100) == "a" * 100
