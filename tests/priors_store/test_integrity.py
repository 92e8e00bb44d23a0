"""Artifact integrity: verify/load re-derive the version (the recipe) and the content seal from the
manifest and refuse any edit; old (manifest_version 1) manifests still load; the writer cleans up
after killed builds and survives an identical concurrent build."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connectome_priors.priors_store.writer as artifact_module
from connectome_priors.priors_store import ArtifactIntegrityError, load, verify
from connectome_priors.priors_store.manifest import (content_digest, content_version, nucleus_ids_digest,
                                                     recipe_version)
from connectome_priors.priors_store.writer import ArtifactWriter, remove_stale_temporaries


def _edit(directory, edit) -> None:
    path = directory / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m, indent=2, sort_keys=True))


def _old_version(m: dict) -> str:
    """The version as ArtifactWriter.commit derived it before issue 15 (copied verbatim)."""
    identity = json.dumps({"population": m["population"], "snapshot": m["source_snapshot"],
                           "parameters": m["parameters"], "kinds": m["kinds"],
                           "files": [(f["path"], f["sha256"]) for f in m["files"]]},
                          sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _recipe_version(m: dict) -> str:
    """The recipe version as documented in the manifest schema (issue 16), written out here."""
    recipe = {"derivation_version": m["derivation_version"], "population": m["population"],
              "source_snapshot": m["source_snapshot"], "parameters": m["parameters"]}
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _reseal(m: dict) -> None:
    """What a careful editor does: recompute the content seal and the recipe version."""
    m["content_sha256"] = content_digest(m)
    m["version"] = recipe_version(m)


def test_untouched_artifact_passes_and_its_version_is_rederived(built):
    root, m = built
    directory = root / "f662" / m["version"]
    assert verify(directory) == m
    on_disk = json.loads((directory / "manifest.json").read_text())
    assert on_disk["manifest_version"] == 2 and on_disk["derivation_version"] == "2"
    assert recipe_version(on_disk) == _recipe_version(on_disk) == m["version"]
    assert content_digest(on_disk) == on_disk["content_sha256"]
    prior = load("f662", root=root)
    assert on_disk["population"]["nucleus_ids_sha256"] == nucleus_ids_digest(prior.neurons.nucleus_id)
    assert prior["distance_um"].shape == (len(prior), len(prior))


def test_versions_of_the_same_inputs_do_not_change():
    """Pinned: a fixed recipe derives to the version it derived to when this check was written."""
    import tempfile

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root, ArtifactWriter(root, "pin") as w:
        w.array("distance_um", rng.random((4, 4)).astype(np.float32), description="soma distance",
                stats={"max_um": 1.5, "n": np.int64(3)})
        w.labels("modules_wiring", np.array([0, 0, 1, 1]), stats={"n_modules": 2})
        m = w.commit(population={"kind": "fields", "fields": ["1_1_1"], "sql": None, "n_neurons": 4},
                     source_snapshot={"snapshot_id": "synthetic-0", "source": "synthetic",
                                      "content_hash": "0" * 64, "synthetic": True},
                     parameters={"seed": 0, "bin_s": 0.2, "skipped": {"functional": "why"}},
                     derivation_version="1")
        # Issue 16 made the version a hash of the recipe (derivation_version "1", population,
        # source snapshot, parameters), no longer of the files: this content pinned 32e2c5757cd8d1c5
        # under manifest_version 1 (still its content_version), and its recipe pins ea5e096d85944ab6.
        # Both must never change: a changed pin means every published version moved.
        assert m["version"] == _recipe_version(m) == "ea5e096d85944ab6"
        assert content_version(m) == _old_version(m) == "32e2c5757cd8d1c5"
        # The files do not enter the version: other numbers, same recipe, same version.
    with tempfile.TemporaryDirectory() as root, ArtifactWriter(root, "pin") as w:
        w.array("distance_um", np.zeros((4, 4), np.float32))
        again = w.commit(population=m["population"], source_snapshot=m["source_snapshot"],
                         parameters=m["parameters"], derivation_version="1")
    assert again["version"] == m["version"] and again["content_sha256"] != m["content_sha256"]


def test_kind_mapped_to_another_kinds_file_is_refused(copy):
    directory, m, root = copy
    _edit(directory, lambda x: x["kinds"]["distance_um"].update(file="correlation.npy"))
    match = (r"manifest\.json: kinds\.distance_um\.file is 'correlation\.npy'; the build writes kind "
             r"'distance_um' \(npy\) to 'distance_um\.npy'")
    with pytest.raises(ArtifactIntegrityError, match=match) as info:
        verify(directory)
    assert (info.value.expected, info.value.found) == ("distance_um.npy", "correlation.npy")
    with pytest.raises(ArtifactIntegrityError, match=match):
        load("f662", root=root)


def test_swapped_kinds_with_rederived_version_are_refused(copy):
    """Swapping two kinds' files and recomputing the version still breaks the file names."""
    directory, m, _ = copy

    def swap(x):
        k = x["kinds"]
        k["sttc"]["file"], k["correlation"]["file"] = k["correlation"]["file"], k["sttc"]["file"]
        _reseal(x)

    _edit(directory, swap)
    with pytest.raises(ArtifactIntegrityError, match=r"kinds\.correlation\.file is 'sttc\.npy'"):
        verify(directory)


def test_edited_version_is_refused(copy):
    directory, m, root = copy
    _edit(directory, lambda x: x.update(version="0123456789abcdef"))
    with pytest.raises(ArtifactIntegrityError,
                       match=rf"manifest\.json: version is '0123456789abcdef', but the manifest's recipe: "
                             rf"derivation_version, population, source_snapshot, parameters derives "
                             rf"to '{m['version']}': the manifest was edited") as info:
        verify(directory)
    assert (info.value.expected, info.value.found) == (m["version"], "0123456789abcdef")
    with pytest.raises(ArtifactIntegrityError, match=r"version is '0123456789abcdef'"):
        load("f662", m["version"], root=root)


@pytest.mark.parametrize("edit, what", [
    (lambda x: x["source_snapshot"].update(snapshot_id="blueprint-cee8d5289635bd49"), "snapshot"),
    (lambda x: x["source_snapshot"].update(content_hash="1" * 64), "snapshot content"),
    (lambda x: x["source_snapshot"].update(synthetic=False), "synthetic flag"),
    (lambda x: x["population"].update(fields=["5_6_8"]), "population"),
    (lambda x: x["population"].update(nucleus_ids_sha256="2" * 64), "population's nucleus ids"),
    (lambda x: x["parameters"].update(bin_s=0.1), "parameters"),
    (lambda x: x.update(derivation_version="999"), "derivation code version"),
])
def test_edited_recipe_is_refused(copy, edit, what):
    directory, m, root = copy
    _edit(directory, edit)
    with pytest.raises(ArtifactIntegrityError, match=rf"version is '{m['version']}', but the manifest's "
                                                     r"recipe: .* derives to '[0-9a-f]{16}'"):
        verify(directory)
    with pytest.raises(ArtifactIntegrityError, match=r"the manifest was edited"):
        load("f662", root=root)


@pytest.mark.parametrize("edit, what", [
    (lambda x: x["kinds"]["modules_wiring"]["stats"].update(modularity_q=0.99), "stats"),
    (lambda x: x["files"][0].update(sha256="0" * 64), "a file's sha256"),
    (lambda x: x["files"][0].update(bytes=1), "a file's size"),
])
def test_edited_content_is_refused(copy, edit, what):
    """Stats and file hashes are not part of the version; content_sha256 seals them."""
    directory, m, root = copy
    _edit(directory, edit)
    with pytest.raises(ArtifactIntegrityError, match=r"content_sha256 is [0-9a-f]{16}\.\.\., but the "
                                                     r"manifest's kinds and files .* hash to "
                                                     r"[0-9a-f]{16}\.\.\.: the manifest was edited"):
        verify(directory)
    with pytest.raises(ArtifactIntegrityError, match=r"the manifest was edited"):
        load("f662", root=root)


def test_neuron_table_must_be_the_recipes_population(copy):
    """A resealed manifest naming other nucleus ids: the version moves (folder name check); the
    table itself is checked against nucleus_ids_sha256 too."""
    directory, m, _ = copy
    _edit(directory, lambda x: (x["population"].update(nucleus_ids_sha256="2" * 64), _reseal(x)))
    with pytest.raises(ArtifactIntegrityError, match=rf"in f662/{m['version']}/"):
        verify(directory)
    fresh = directory.parent / json.loads((directory / "manifest.json").read_text())["version"]
    directory.rename(fresh)
    with pytest.raises(ArtifactIntegrityError, match=r"neurons\.parquet: its nucleus ids hash to "
                                                     r"[0-9a-f]{16}\.\.\., the recipe's population"):
        verify(fresh)


def test_manifest_version_1_still_loads(copy):
    """An artifact published before recipe versions (issue 16) loads and verifies with the formula
    it was written with; an edit of it is refused."""
    directory, m, root = copy

    def to_v1(x):
        for key in ("derivation_version", "content_sha256"):
            del x[key]
        del x["population"]["nucleus_ids_sha256"]
        x["manifest_version"] = 1
        x["version"] = _old_version(x)

    _edit(directory, to_v1)
    old = json.loads((directory / "manifest.json").read_text())
    directory = directory.rename(directory.parent / old["version"])
    assert verify(directory) == old
    assert load("f662", old["version"], root=root)["distance_um"].shape[0] == m["population"]["n_neurons"]
    _edit(directory, lambda x: x["kinds"]["modules_wiring"]["stats"].update(modularity_q=0.99))
    with pytest.raises(ArtifactIntegrityError, match=r"population, source_snapshot, parameters, kinds, "
                                                     r"files' sha256 \(manifest_version 1\) derives to"):
        verify(directory)


def test_consistent_rewrite_in_another_folder_is_refused(copy):
    """A rewritten manifest whose version is re-derived no longer matches its folder's name."""
    directory, m, _ = copy

    def rewrite(x):
        x["source_snapshot"]["synthetic"] = False
        _reseal(x)

    _edit(directory, rewrite)
    with pytest.raises(ArtifactIntegrityError, match=rf"version is '[0-9a-f]{{16}}', but the artifact lives "
                                                     rf"in f662/{m['version']}/: expected '{m['version']}'"):
        verify(directory)


def test_recorded_shape_and_dtype_are_checked(copy):
    """shape and dtype are not part of the version; content_sha256 seals them, and even with the
    seal recomputed they are checked against the .npy header."""
    directory, m, _ = copy

    def entry(x):
        return next(f for f in x["files"] if f["path"] == "distance_um.npy")

    _edit(directory, lambda x: (entry(x).update(shape=[3, 3]), x.update(content_sha256=content_digest(x))))
    with pytest.raises(ArtifactIntegrityError, match=r"distance_um\.npy: shape \[\d+, \d+\] differs from "
                                                     r"the manifest's \[3, 3\]"):
        verify(directory, hashes=False)
    _edit(directory, lambda x: (entry(x).update(shape=[m["population"]["n_neurons"]] * 2, dtype="float64"),
                                x.update(content_sha256=content_digest(x))))
    with pytest.raises(ArtifactIntegrityError, match=r"distance_um\.npy: dtype float32 differs from the "
                                                     r"manifest's float64"):
        verify(directory, hashes=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_manifest_corruption_is_refused_or_harmless(built, tmp_path_factory, data):
    """Any byte change of manifest.json: verify returns the same manifest or refuses it, nothing else."""
    root, m = built
    directory = tmp_path_factory.mktemp("fuzz") / "f662" / m["version"]
    shutil.copytree(root / "f662" / m["version"], directory)
    raw = bytearray((directory / "manifest.json").read_bytes())
    for _ in range(data.draw(st.integers(1, 4), label="n_changes")):
        at = data.draw(st.integers(0, len(raw) - 1), label="offset")
        raw[at] = data.draw(st.integers(0, 255), label="byte")
    (directory / "manifest.json").write_bytes(bytes(raw))
    try:
        got = verify(directory, hashes=False)
    except ArtifactIntegrityError:
        return
    # created and code_version are neither in the version nor sealed (documented): only they may differ
    uncovered = {"created", "code_version"}
    assert {k: v for k, v in got.items() if k not in uncovered} == \
        {k: v for k, v in m.items() if k not in uncovered}


def test_killed_builds_temporaries_are_removed_by_the_next_build(tmp_path):
    folder = tmp_path / "demo"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = artifact_module._HOST
    killed = folder / f".tmp-{host}-{dead}-{'a' * 32}"
    running = folder / f".tmp-{host}-{os.getpid()}-{'b' * 32}"
    legacy_old = folder / f".tmp-{'c' * 32}"          # named before owners were recorded
    legacy_new = folder / f".tmp-{'d' * 32}"
    other_host_old = folder / f".tmp-otherhost-1-{'e' * 32}"
    for d in (killed, running, legacy_old, legacy_new, other_host_old):
        d.mkdir()
        (d / "distance_um.npy").write_bytes(b"partial")
    hour_ago = time.time() - 2 * artifact_module.STALE_AFTER_S
    for d in (legacy_old, other_host_old):
        os.utime(d, (hour_ago, hour_ago))
    with ArtifactWriter(tmp_path, "demo") as w:
        w.array("distance_um", np.zeros((2, 2), np.float32))
        w.commit(population={"kind": "pooled", "n_neurons": 2},
                 source_snapshot={"snapshot_id": "s", "source": "synthetic", "content_hash": "0" * 64},
                 parameters={})
    left = sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))
    assert left == sorted([running.name, legacy_new.name])
    assert remove_stale_temporaries(folder, stale_after_s=0) == [legacy_new]


def test_identical_concurrent_build_returns_the_winners_version(tmp_path, monkeypatch):
    """Two identical builds: the winner renames first; the loser's rename hits ENOTEMPTY."""
    def write(w):
        w.array("distance_um", np.eye(3, dtype=np.float32))
        return dict(population={"kind": "pooled", "n_neurons": 3},
                    source_snapshot={"snapshot_id": "s", "source": "synthetic", "content_hash": "0" * 64},
                    parameters={"seed": 1})

    real_rename = artifact_module._rename
    winner = {}

    def race(src, dst):
        monkeypatch.setattr(artifact_module, "_rename", real_rename)
        with ArtifactWriter(tmp_path, "race") as other:  # publishes the same version first
            winner.update(other.commit(**write(other)))
        real_rename(src, dst)  # raises ENOTEMPTY (Linux) / EEXIST

    monkeypatch.setattr(artifact_module, "_rename", race)
    with ArtifactWriter(tmp_path, "race") as loser:
        m = loser.commit(**write(loser))
    assert m == winner and m["version"] == winner["version"]
    versions = [p.name for p in (tmp_path / "race").iterdir() if p.is_dir()]
    assert versions == [m["version"]]  # no temporary left behind
    assert verify(tmp_path / "race" / m["version"]) == m


@pytest.mark.processes
def test_identical_concurrent_builds_in_processes(tmp_path):
    """The real race, 4 processes at once: all succeed with one version and one folder."""
    script = (
        "import sys, numpy as np\n"
        "from connectome_priors.priors_store.writer import ArtifactWriter\n"
        "with ArtifactWriter(sys.argv[1], 'race') as w:\n"
        "    w.array('distance_um', np.eye(300, dtype=np.float32))\n"
        "    m = w.commit(population={'kind': 'pooled', 'n_neurons': 300}, source_snapshot={'snapshot_id': 's',"
        " 'source': 'synthetic', 'content_hash': '0' * 64}, parameters={})\n"
        "print(m['version'])\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len({o[0].strip() for o in outs}) == 1
    assert [p.name for p in (tmp_path / "race").iterdir() if p.is_dir()] == [outs[0][0].strip()]
