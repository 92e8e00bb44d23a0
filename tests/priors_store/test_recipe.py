"""Recipe versions (issue 16): one recipe, one version on every machine; publishing a version again
keeps the first build; ``verify --rebuild`` rebuilds the recipe and compares every kind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from connectome_priors.cli import main
from connectome_priors.kernel.errors import CxpError
from connectome_priors.priors_store import (ArtifactIntegrityError, DeriveParams, Population, PriorsError,
                                            build, verify)
from connectome_priors.kernel.files import sha256_file
from connectome_priors.priors_store.comparison import FLOAT_ATOL, FLOAT_RTOL, compare_builds
from connectome_priors.priors_store.manifest import content_digest, recipe_version
from connectome_priors.priors_store.verification import verify_rebuild
from connectome_priors.priors_store.writer import ArtifactWriter

RECIPE = dict(population={"kind": "pooled", "n_neurons": 3},
              source_snapshot={"snapshot_id": "s", "source": "synthetic", "content_hash": "0" * 64},
              parameters={"seed": 1})


def _publish(root, dense: np.ndarray, labels=(0, 0, 1)) -> dict:
    with ArtifactWriter(root, "twice") as w:
        w.array("correlation", dense)
        w.labels("modules_wiring", np.asarray(labels))
        return w.commit(**RECIPE)


def _snapshot(directory) -> dict:
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir())}


# ------------------------------------------------------------------------------ re-publishing


def test_publishing_a_recipe_again_keeps_the_first_build(tmp_path):
    """Last-bit differences (another CPU's build): same version, no error, the first files kept."""
    first_values = np.random.default_rng(0).random((3, 3))
    first = _publish(tmp_path, first_values)
    folder = tmp_path / "twice" / first["version"]
    before = _snapshot(folder)
    nudged = np.nextafter(first_values, 2.0)  # every value one ulp up: other bytes, other sha256
    again = _publish(tmp_path, nudged)
    assert again == first  # the published manifest, created time and sha256 included
    assert _snapshot(folder) == before
    assert [p.name for p in (tmp_path / "twice").iterdir() if p.is_dir()] == [first["version"]]


@pytest.mark.parametrize("change, named", [
    (lambda d, lab: (d + 1e-3, lab), r"kind correlation \(correlation\.npy\): max \|difference\| 0\.001 "
                                     r"\(rtol 1e-06, atol 1e-09, 9 entries outside\)"),
    (lambda d, lab: (d, (0, 1, 1)), r"kind modules_wiring \(modules_wiring\.npy\): max \|difference\| 1 "
                                    r"\(exact, 1 entries outside\)"),
])
def test_publishing_other_numbers_under_a_version_is_refused(tmp_path, change, named):
    """Beyond the tolerances the derivation code changed without a new DERIVATION_VERSION."""
    values = np.random.default_rng(0).random((3, 3))
    first = _publish(tmp_path, values)
    before = _snapshot(tmp_path / "twice" / first["version"])
    dense, labels = change(values, (0, 0, 1))
    with pytest.raises(ArtifactIntegrityError, match=rf"twice@{first['version']} is published, and this "
                                                     rf"build of the same recipe differs from it: {named}\. "
                                                     r"The published build is kept.*bump it"):
        _publish(tmp_path, dense, labels)
    assert _snapshot(tmp_path / "twice" / first["version"]) == before
    assert not [p for p in (tmp_path / "twice").iterdir() if p.name.startswith(".tmp-")]


def test_compare_builds_tolerances(tmp_path):
    """rtol 1e-6 / atol 1e-9 on floats (NaN only against NaN), exact on integers."""
    assert (FLOAT_RTOL, FLOAT_ATOL) == (1e-6, 1e-9)
    base = np.array([[1.0, np.nan], [0.0, 1e3]])
    a = _publish(tmp_path / "a", base)
    cases = {"within": base * (1 + 5e-7), "rtol": base * (1 + 5e-6),
             "atol": base + np.array([[0, 0], [5e-9, 0]]), "nan": np.nan_to_num(base)}
    for label, values in cases.items():
        b = _publish(tmp_path / label, values)
        (got,) = [c for c in compare_builds(tmp_path / "a" / "twice" / a["version"],
                                            tmp_path / label / "twice" / b["version"])
                  if c.kind == "correlation"]
        assert got.ok == (label == "within"), (label, got)


# ------------------------------------------------------------------------------ verify --rebuild


def test_rebuild_of_an_untouched_artifact_passes(built, small_store, capsys):
    root, m = built
    directory = root / "f662" / m["version"]
    assert verify(directory, rebuild=True, store=small_store) == m
    checked = verify_rebuild(directory, store=small_store)
    assert {c.kind for c in checked} == set(m["kinds"]) | {"neurons.parquet"}
    assert all(c.ok for c in checked)
    assert main(["priors", "verify", "--rebuild", f"f662@{m['version']}", "--store", str(small_store),
                 "--artifacts", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"OK f662@{m['version']}: {len(m['files'])} files match their sha256" in out
    assert (f"OK rebuilt the recipe from snapshot {m['source_snapshot']['snapshot_id']}: "
            f"{len(m['kinds']) + 1} kinds (neuron table included) match") in out
    assert "float kinds within rtol 1e-06, atol 1e-09" in out


@pytest.mark.parametrize("kind, other, named", [
    ("sttc", DeriveParams(precision=False, sttc_dt_s=0.05),
     r"kind sttc \(sttc\.npy\): max \|difference\| 0\.\d+ \(rtol 1e-06, atol 1e-09, \d+ entries outside\)"),
    ("modules_wiring", DeriveParams(precision=False, module_resolution=3.0),
     r"kind modules_wiring \(modules_wiring\.npy\): max \|difference\| \d+ \(exact, \d+ entries outside\)"),
])
def test_rebuild_catches_another_recipes_file_with_its_sha256_in_the_manifest(
        copy, small_store, tmp_path, capsys, kind, other, named):
    """A file replaced by another build's (other parameters) AND the manifest's sha256, size and
    seal fixed to match: hashes pass, only the rebuild notices, naming the kind and difference."""
    directory, m, root = copy
    theirs = build("f662", Population.of_fields("6_6_2"), store=small_store, root=tmp_path / "other",
                   params=other)
    assert theirs["version"] != m["version"]
    fname = m["kinds"][kind]["file"]
    source = tmp_path / "other" / "f662" / theirs["version"] / fname
    shutil.copyfile(source, directory / fname)
    path = directory / "manifest.json"
    edited = json.loads(path.read_text())
    entry = next(f for f in edited["files"] if f["path"] == fname)
    entry.update(sha256=sha256_file(source), bytes=source.stat().st_size)
    edited["content_sha256"] = content_digest(edited)
    path.write_text(json.dumps(edited, indent=2, sort_keys=True))
    assert verify(directory)["version"] == m["version"]  # every hash and the seal agree
    with pytest.raises(ArtifactIntegrityError, match=rf"{fname}: differs from a rebuild of "
                                                     rf"f662@{m['version']}'s recipe: {named}") as info:
        verify(directory, rebuild=True, store=small_store)
    assert info.value.path == str(directory / fname)
    assert main(["priors", "verify", "--rebuild", "f662", "--store", str(small_store),
                 "--artifacts", str(root)]) == 2
    assert f"kind {kind} ({fname}): max |difference|" in capsys.readouterr().err


def test_rebuild_needs_the_recipes_snapshot(copy, small_store, tmp_path):
    directory, m, _ = copy
    path = directory / "manifest.json"
    other = json.loads(path.read_text())
    other["source_snapshot"]["snapshot_id"] = "synthetic-0000000000000000"
    other["version"] = recipe_version(other)
    path.write_text(json.dumps(other, indent=2, sort_keys=True))
    directory = directory.rename(directory.parent / other["version"])
    with pytest.raises(PriorsError, match=rf"cannot rebuild f662@{other['version']}: its recipe reads "
                                          r"snapshot synthetic-0000000000000000 .* which is absent in "
                                          rf"the store at {small_store}"):
        verify(directory, rebuild=True, store=small_store)
    with pytest.raises(CxpError, match="no neuron store at"):
        verify(directory, rebuild=True, store=tmp_path / "no-store")


# ---------------------------------------------------------------- one recipe, every machine

_BUILD = """
import json, sys
from connectome_priors.priors_store import DeriveParams, Population, build
from connectome_priors.kernel.files import sha256_file
m = build("f662", Population.of_fields("6_6_2"), store=sys.argv[1], root=sys.argv[2],
          params=DeriveParams(precision=sys.argv[3] == "precision"))
print(json.dumps({"version": m["version"], "files": {f["path"]: f["sha256"] for f in m["files"]}}))
"""


def _cpu_dispatch_found() -> list[str]:
    """NumPy's SIMD dispatch targets this CPU has (AVX2 / AVX512 groups: X86_V3, X86_V4, ...)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


VARIANTS = {
    "1 thread": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    "2 threads": {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},
    "no SIMD dispatch": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                         "NPY_DISABLE_CPU_FEATURES": " ".join(_cpu_dispatch_found())},
    "BLAS kernels of an older CPU": {"OPENBLAS_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Sandybridge"},
}


def _build_in(env_extra: dict, store, root, precision: bool) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")}
    env.update(env_extra)
    done = subprocess.run([sys.executable, "-c", _BUILD, str(store), str(root),
                           "precision" if precision else "fast"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


#: The version of f662 without precision (field 6_6_2 of the small store): a hash of the recipe and
#: of the snapshot's content, the same on every machine; another value means other prior ids.
F662_FAST_VERSION = "964ed93038f47afc"  # derivation version 2 (was 0a5b3a890b72569f under 1)
#: Files that no BLAS call computes (counts, labels, the neuron table, distances, STTC): the same
#: bytes under any thread count, SIMD dispatch or BLAS kernel. The others (correlation,
#: communicability, w_bio_modulation, precision) may differ in their last bits: within tolerance.
SAME_BYTES = ("connectome.npz", "connectome_size.npz", "distance_minmax.npy", "distance_um.npy",
              "modules_functional.npy", "modules_wiring.npy", "neurons.parquet", "sttc.npy")


def test_the_shared_artifact_has_the_known_version(built):
    """The same snapshot and recipe give the same prior id, in this process as in the matrix below."""
    assert built[1]["version"] == F662_FAST_VERSION


@pytest.mark.processes
@pytest.mark.parametrize("precision", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_same_recipe_same_version_under_threads_and_cpu_features(small_store, tmp_path, precision):
    """Builds in subprocesses with 1 or 2 BLAS/OpenMP threads, NumPy's AVX2/AVX512 dispatch
    disabled, and OpenBLAS forced to an older CPU's kernels: the known version; the files no BLAS
    call computes byte for byte the same (sha256); every other kind within the tolerances of the
    first build."""
    if not _cpu_dispatch_found():
        pytest.skip("this CPU has no SIMD dispatch target for NumPy to disable")
    results = {label: _build_in(env, small_store, tmp_path / str(i), precision)
               for i, (label, env) in enumerate(VARIANTS.items())}
    version = results["1 thread"]["version"]
    if not precision:
        assert version == F662_FAST_VERSION
    for label, r in results.items():
        assert r["version"] == version, label
        assert set(r["files"]) >= set(SAME_BYTES), label
        differ = [f for f in SAME_BYTES if r["files"][f] != results["1 thread"]["files"][f]]
        assert not differ, f"{label}: {differ} differ in bytes from the 1-thread build"
    first = tmp_path / "0" / "f662" / version
    for i in range(1, len(VARIANTS)):
        bad = [c for c in compare_builds(first, tmp_path / str(i) / "f662" / version) if not c.ok]
        assert not bad, [c.describe() for c in bad]
    # The first machine's build is the one kept when another publishes into the same root.
    again = _build_in(VARIANTS["no SIMD dispatch"], small_store, tmp_path / "1", precision)
    assert again == results["2 threads"]
