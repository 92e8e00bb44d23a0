"""Tests of training/experiment.py and training/report.py: a tiny end-to-end run on a prior
artifact built from a small synthetic store (N ~ 45)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from connectome_priors import priors_store
from connectome_priors.kernel.version import code_version
from connectome_priors.training.config import ExperimentConfig, FitConfig
from connectome_priors.training.errors import MissingKindError
from connectome_priors.training.experiment import (RUN_COLUMNS, check_kinds, prior_arrays,
                                                   run_experiment, run_seed, supported_variants)
from connectome_priors.training.report import PUBLISHED_6_6_2, write_report
from connectome_priors.training.stats import compare, summarize
from connectome_priors.training.variants import VARIANTS

CFG = ExperimentConfig(tasks=("T2",), variants=("W", "W*D*C"), runs=2, n_null=5, seed=3,
                       fit=FitConfig(epochs=1, n_train=256, n_val=128, n_test=128, batch_size=64))


@pytest.fixture(scope="module")
def tiny(tiny_prior):
    """(store, artifact root, manifest) of the session's ~45-unit prior 'tiny' of field 6_6_2."""
    return tiny_prior


@pytest.fixture(scope="module")
def experiment(tiny, tmp_path_factory):
    _, root, _ = tiny
    prior = priors_store.load("tiny", root=root)
    out = tmp_path_factory.mktemp("train-out")
    return prior, out, run_experiment(prior, CFG, out_dir=out)


def test_runs_table(experiment):
    prior, out, runs = experiment
    assert list(runs.columns) == list(RUN_COLUMNS)
    assert len(runs) == 4
    assert runs["diverged"].dtype == bool
    assert list(runs["variant"].unique()) == ["W", "W*D*C"]
    assert set(runs["protocol"]) == {"corrected"} and set(runs["n_units"]) == {len(prior.neurons)}
    # seeds explicit, recorded, shared across variants (common random numbers)
    assert runs["seed"].tolist() == [run_seed(3, 0), run_seed(3, 1)] * 2
    assert runs["data_seed"].nunique() == 1 and runs["init_seed"].nunique() == 1
    ok = runs[~runs["diverged"]]
    assert ok["test_accuracy"].between(0, 1).all() and np.isfinite(ok["task_loss"]).all()
    assert np.isfinite(ok["modularity_q"]).all() and np.isfinite(ok["entropy"]).all()
    on_disk = pd.read_parquet(out / "runs.parquet")
    assert len(on_disk) == 4 and list(on_disk.columns) == list(RUN_COLUMNS)
    curves = pd.read_parquet(out / "curves.parquet")
    assert len(curves) == 4 and {"epoch", "val_accuracy", "task", "variant", "seed"} <= set(curves)
    assert not list(out.glob(".*.tmp"))


def test_report_names_prior_and_synthetic(experiment, tiny):
    prior, out, runs = experiment
    stats = {m: compare(runs, m) for m in ("test_accuracy", "modularity_q")}
    path = write_report(out, runs, summarize(runs), stats, prior.manifest, CFG)
    md = path.read_text()
    snap = prior.manifest["source_snapshot"]["snapshot_id"]
    assert f"tiny@{prior.version}" in md and snap in md and "SYNTHETIC" in md
    assert f"| prior built by | {prior.manifest['code_version']} |" in md
    assert f"| report written by | {code_version()} |" in md
    assert "Published table" not in md  # corrected protocol, synthetic prior
    assert not (out / "published.png").exists()
    html = (out / "report.html").read_text()
    assert prior.version in html and "SYNTHETIC" in html and "<table" in html
    for png in ("accuracy.png", "curves.png", "metrics.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(out / "summary.csv")) == 2
    assert json.loads((out / "stats.json").read_text())["test_accuracy"]["metric"] == "test_accuracy"


def test_paper_table_beside_ours_for_blueprint_6_6_2(experiment, tmp_path):
    prior, _, runs = experiment
    manifest = {**prior.manifest, "source_snapshot": {**prior.manifest["source_snapshot"],
                                                      "source": "blueprint", "synthetic": False},
                "population": {"kind": "fields", "fields": ["6_6_2"], "sql": None}}
    cfg = {"protocol": "paper"}
    md = write_report(tmp_path, runs, summarize(runs), {}, manifest, cfg).read_text()
    assert "Published table" in md and "0.948" in md and "SYNTHETIC" not in md
    assert "![The study's published accuracy beside ours" in md
    assert (tmp_path / "published.png").read_bytes()[:4] == b"\x89PNG"
    assert tuple(PUBLISHED_6_6_2) == VARIANTS and PUBLISHED_6_6_2["W*D*C*"]["T3"] == 0.880


def test_experiment_config_holds_the_fit_config_and_fingerprints_all_of_it():
    """ExperimentConfig holds one FitConfig; every fit setting reaches fit and changes the cells'
    fingerprint (a changed default never reuses stale cells)."""
    from dataclasses import fields, replace

    from connectome_priors.training.cell import fit_config as _fit_config
    from connectome_priors.training.experiment import fingerprint

    changed = ExperimentConfig(fit=FitConfig(epochs=3, lr=0.01, batch_size=16, n_train=64,
                                             n_val=32, n_test=48, positive_only=True,
                                             input_noise=0.1, criterion=0.8, eval_batch=7))
    fcfg = _fit_config(changed)
    assert replace(fcfg, data_seed=0) == changed.fit
    # the trials' seed derives from the master seed
    assert _fit_config(ExperimentConfig(seed=1)).data_seed != _fit_config(
        ExperimentConfig(seed=2)).data_seed
    with pytest.raises(ValueError, match="fit.data_seed is derived from seed"):
        ExperimentConfig(fit=FitConfig(data_seed=3))
    base = fingerprint(ExperimentConfig(), "p@1")
    other = {"epochs": 3, "lr": 0.01, "batch_size": 16, "input_noise": 0.1, "n_train": 64,
             "n_val": 32, "n_test": 48, "criterion": 0.8, "positive_only": True, "eval_batch": 7}
    assert set(other) == {f.name for f in fields(FitConfig)} - {"data_seed"}
    for name, value in other.items():
        cfg = ExperimentConfig(fit=replace(FitConfig(), **{name: value}))
        assert fingerprint(cfg, "p@1") != base, name


def test_cells_under_the_flat_configs_fingerprint_are_migrated(tmp_path):
    """Cells finished before ExperimentConfig.fit existed are found under their old fingerprint
    (computed here by hand from the flat config) and moved to the new one."""
    import hashlib
    import json

    from connectome_priors.training.experiment import _cells_dir, fingerprint, legacy_fingerprint

    cfg = CFG
    flat = {"runs": 2, "protocol": "corrected", "epochs": 1, "n_train": 256, "n_val": 128,
            "n_test": 128, "seed": 3, "positive_only": False, "batch_size": 64, "lr": 1e-3,
            "n_null": 5}
    old = hashlib.sha256(json.dumps({"config": flat, "prior": "p@1"}, sort_keys=True)
                         .encode()).hexdigest()[:16]
    assert legacy_fingerprint(cfg, "p@1") == old != fingerprint(cfg, "p@1")
    (tmp_path / "cells" / old).mkdir(parents=True)
    (tmp_path / "cells" / old / "T2__W.runs.parquet").write_bytes(b"x")
    cells = _cells_dir(tmp_path, cfg, "p@1")
    assert cells.name == fingerprint(cfg, "p@1") and (cells / "T2__W.runs.parquet").exists()
    assert not (tmp_path / "cells" / old).exists()
    # a fit setting the flat config could not set has no old cells
    assert legacy_fingerprint(replace(cfg, fit=replace(cfg.fit, input_noise=0.0)), "p@1") is None


def test_config_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown variant 'W\\*D'"):
        ExperimentConfig(variants=("W*D",))
    with pytest.raises(ValueError, match="unknown task 'T4'"):
        ExperimentConfig(tasks=("T4",))
    with pytest.raises(ValueError, match="unknown protocol"):
        ExperimentConfig(protocol="fast")


def test_metrics_skipped_for_diverged_runs():
    from connectome_priors.training.cell import _metrics

    w = np.random.default_rng(0).normal(size=(30, 30))
    assert all(np.isnan(v) for v in _metrics(w, diverged=True, n_null=2, seed=0).values())
    ok = _metrics(w, diverged=False, n_null=2, seed=0)
    assert set(ok) == {"modularity_q", "small_world_sigma", "assortativity", "entropy"}
    assert np.isfinite(ok["modularity_q"]) and np.isfinite(ok["entropy"])


def test_killed_grid_resumes_to_the_same_tables(experiment, tmp_path):
    """A cell whose results were never written (the run was killed) is trained again; finished
    cells are reused untouched; the final tables equal the uninterrupted ones."""
    prior, out, runs = experiment
    cells = next((out / "cells").iterdir())
    assert sorted(p.name for p in cells.iterdir()) == [
        "T2__W.curves.parquet", "T2__W.runs.parquet", "T2__WxDxC.curves.parquet",
        "T2__WxDxC.runs.parquet"]
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    import shutil

    shutil.copytree(out / "cells", resumed / "cells")
    shutil.copytree(out / "checkpoints", resumed / "checkpoints")
    (resumed / "cells" / cells.name / "T2__WxDxC.runs.parquet").unlink()  # killed in that cell
    kept = (resumed / "checkpoints" / "T2__W.safetensors").stat().st_mtime_ns
    again = run_experiment(prior, CFG, out_dir=resumed)
    assert (resumed / "checkpoints" / "T2__W.safetensors").stat().st_mtime_ns == kept
    cols = ["task", "variant", "run", "seed", "test_accuracy", "train_accuracy", "task_loss"]
    pd.testing.assert_frame_equal(again[cols], runs[cols])


def test_runs_per_batch_changes_speed_not_results(tiny, tmp_path):
    from dataclasses import replace

    from connectome_priors.training.experiment import fingerprint

    _, root, _ = tiny
    prior = priors_store.load("tiny", root=root)
    cfg = replace(CFG, variants=("W",), runs=3, runs_per_batch=1)
    assert fingerprint(cfg, "p@1") == fingerprint(replace(cfg, runs_per_batch=3), "p@1")
    assert fingerprint(cfg, "p@1") != fingerprint(replace(cfg, seed=4), "p@1")
    assert fingerprint(cfg, "p@1") != fingerprint(cfg, "p@2")
    assert fingerprint(cfg, "p@1") == fingerprint(replace(cfg, variants=("W*D*C", "W")), "p@1")
    one = run_experiment(prior, cfg, out_dir=tmp_path / "one")
    three = run_experiment(prior, replace(cfg, runs_per_batch=3), out_dir=tmp_path / "three")
    np.testing.assert_allclose(one["task_loss"], three["task_loss"], rtol=1e-4)
    assert one["seed"].tolist() == three["seed"].tolist()


def test_checkpoint_reproduces_the_reported_test_accuracy(experiment):
    from connectome_priors.training.checkpoint import load_checkpoint
    from connectome_priors.training.train import evaluate, make_splits

    prior, out, runs = experiment
    ck = load_checkpoint(out / "checkpoints" / "T2__WxDxC.safetensors")
    meta = ck.metadata
    assert meta["task"] == "T2" and meta["variant"] == "W*D*C"
    assert meta["prior"] == f"tiny@{prior.version}" and meta["config"]["runs"] == 2
    mine = runs[runs["variant"] == "W*D*C"]
    assert meta["seeds"] == mine["seed"].tolist() and ck.model.config.runs == 2
    from connectome_priors.training.cell import _derived

    fcfg = FitConfig(n_train=CFG.fit.n_train, n_val=CFG.fit.n_val, n_test=CFG.fit.n_test,
                     data_seed=_derived(CFG.seed, 2))
    acc, _ = evaluate(ck.model, *make_splits("T2", fcfg).test, 1024)
    np.testing.assert_allclose(acc, mine["test_accuracy"].to_numpy())


def test_checkpoint_refuses_a_foreign_file(tmp_path):
    from connectome_priors.training.checkpoint import load_checkpoint
    from connectome_priors.training.errors import TrainingError

    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(TrainingError, match="x.safetensors"):
        load_checkpoint(bad)
    with pytest.raises(TrainingError, match="missing.safetensors"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_grid_on_a_dask_cluster_matches_the_local_run(experiment, tmp_path):
    """The cells spread over a real distributed scheduler (LocalCluster, two workers) give the
    same tables and checkpoints as the in-process run."""
    from distributed import Client, LocalCluster

    from connectome_priors.training.checkpoint import load_checkpoint

    prior, out, runs = experiment
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        spread = run_experiment(prior, CFG, out_dir=tmp_path, scheduler=client)
    cols = ["task", "variant", "run", "seed", "diverged"]
    pd.testing.assert_frame_equal(spread[cols], runs[cols])
    for col in ("test_accuracy", "task_loss", "modularity_q"):
        np.testing.assert_allclose(spread[col], runs[col], rtol=1e-5)
    a = load_checkpoint(tmp_path / "checkpoints" / "T2__WxDxC.safetensors").model
    b = load_checkpoint(out / "checkpoints" / "T2__WxDxC.safetensors").model
    assert torch.allclose(a.W, b.W, atol=1e-6)


def test_bad_scheduler_address_is_a_clear_error(experiment, tmp_path):
    from dataclasses import replace

    from connectome_priors.training.errors import TrainingError

    prior, _, _ = experiment
    with pytest.raises(TrainingError, match="'nowhere' is not a Dask scheduler address .* "
                                            "or 'local' for a local cluster"):
        run_experiment(prior, replace(CFG, seed=11), out_dir=tmp_path, scheduler="nowhere")


def test_full_prior_report_lists_its_kinds_and_lacks_none(experiment, tmp_path):
    prior, _, runs = experiment
    md = write_report(tmp_path, runs, summarize(runs), {}, prior.manifest, CFG).read_text()
    assert f"Kinds of the prior: {', '.join(prior.kinds)}." in md
    assert "w_bio_modulation" in prior.kinds and "This prior lacks" not in md


class _Spy:
    """A prior that records which kinds are read."""

    def __init__(self, prior):
        self.prior, self.read = prior, []
        self.name, self.version, self.kinds = prior.name, prior.version, prior.kinds
        self.manifest, self.neurons = prior.manifest, prior.neurons

    def __getitem__(self, kind):
        self.read.append(kind)
        return self.prior[kind]


@pytest.mark.parametrize("variants, protocol, kinds", [
    (("W", "WD", "WDC"), "corrected", []),
    (("W", "WD*"), "corrected", ["distance_um"]),
    (("WD*",), "paper", []),
    (("W*D*C", "WD*C*"), "corrected", ["communicability", "distance_um", "w_bio_modulation"]),
    (("Wc", "Wc!"), "corrected", ["cell_sign", "connectome_signed"]),
])
def test_prior_arrays_load_only_the_kinds_the_variants_read(tiny, variants, protocol, kinds):
    _, root, _ = tiny
    spy = _Spy(priors_store.load("tiny", root=root))
    arrays = prior_arrays(spy, variants, protocol=protocol)
    assert sorted(spy.read) == kinds
    names = {"communicability": "communicability_empirical"}
    assert set(arrays) == {names.get(k, k) for k in kinds} | {"positions_vox"}
    assert arrays["positions_vox"].shape == (len(spy.neurons), 3)


def test_run_experiment_on_a_structure_only_prior(structure_only, tmp_path):
    """W trains without w_bio_modulation; a grid naming W*D*C is refused before anything is
    written, the error carrying its facts."""
    path, manifest = structure_only
    prior = priors_store.load("wiring", root=path / "artifacts")
    cfg = replace(CFG, variants=("W", "W*D*C", "WD*C*", "W!D*C"))
    with pytest.raises(MissingKindError, match=r"has no kind 'w_bio_modulation' \(needed by "
                                               r"W\*D\*C, W!D\*C\); variants that would run "
                                               r"on it: W, WD\*C\*\.") as err:
        run_experiment(prior, cfg, out_dir=tmp_path / "refused")
    assert err.value.prior == f"wiring@{manifest['version']}"
    assert err.value.missing == {"w_bio_modulation": ("W*D*C", "W!D*C")}
    assert err.value.runnable == ("W", "WD*C*")
    assert not (tmp_path / "refused").exists()
    assert check_kinds(prior, ["W", "WD*C*", "W"]) == ("W", "WD*C*")
    kept, note = supported_variants(prior, ["W*D*C", "W", "WD"])
    assert kept == ("W", "WD") and note.startswith(
        f"leaves out 1 variant(s) that prior wiring@{manifest['version']} cannot run: it has no "
        "kind 'w_bio_modulation' (needed by W*D*C). Its build skipped the functional kinds: ")
    assert supported_variants(prior, ["WD", "W"]) == (("WD", "W"), None)
    runs = run_experiment(prior, replace(cfg, variants=("W", "WD*C*")), out_dir=tmp_path / "ok")
    assert runs["variant"].tolist() == ["W", "W", "WD*C*", "WD*C*"]
    assert set(runs["n_units"]) == {manifest["population"]["n_neurons"]}


def test_check_kinds_without_build_reasons():
    """A prior whose manifest gives no reason (e.g. written by hand): the line still names the
    kinds, the variants needing them and what the prior supports."""
    from types import SimpleNamespace

    prior = SimpleNamespace(name="hand", version="00ff", kinds=["distance_um"],
                            manifest={"kinds": {"distance_um": {}}})
    with pytest.raises(MissingKindError) as err:
        check_kinds(prior, ["W*D*C*", "WD*C*"])
    assert str(err.value) == (
        "prior hand@00ff has no kinds 'communicability' (needed by W*D*C*, WD*C*), "
        "'w_bio_modulation' (needed by W*D*C*); none of the requested variants would run on it "
        "(it supports WD*C, WDC, WD*, WD, W). Request only variants it supports, or train on a "
        "prior built from neurons that all have spike trains from one scan and few enough "
        "neurons for the dense communicability (DeriveParams.max_dense_n)")
    prior.kinds = ["w_bio_modulation"]  # only the paper protocol's D* needs no distance_um
    with pytest.raises(MissingKindError, match=r"^prior hand@00ff has no kind 'distance_um' "
                                               r"\(needed by WD\*\); variants that would run "
                                               r"on it: W\*DC, W\. Request only variants it "
                                               r"supports$"):
        check_kinds(prior, ["WD*", "W*DC", "W"])
    assert check_kinds(prior, ["WD*", "W*DC", "W"], protocol="paper") == ("WD*", "W*DC", "W")
