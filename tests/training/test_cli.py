"""Tests of training/cli.py through ``cxp train`` (connectome_priors.cli.main)."""

from __future__ import annotations

import pandas as pd
import pytest

from connectome_priors.cli import main
from connectome_priors.training.cli import parse_variants
from connectome_priors.training.errors import TrainingError
from connectome_priors.training.experiment import RUN_COLUMNS
from connectome_priors.training.variants import VARIANTS


@pytest.fixture
def store(tiny_prior):
    """The session's store holding a tiny synthetic snapshot and prior 'tiny' under <store>/artifacts."""
    path, _, manifest = tiny_prior
    return path, manifest


def test_cxp_train_end_to_end(store, tmp_path, capsys):
    path, manifest = store
    out = tmp_path / "out"
    rc = main(["train", "--prior", f"tiny@{manifest['version'][:8]}", "--store", str(path),
               "--tasks", "T2", "--variants", "W,W*D*C", "--runs", "2", "--epochs", "1",
               "--n-train", "192", "--n-val", "64", "--n-test", "64", "--seed", "1",
               "--threads", "1", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert f"report: {out / 'report.md'}" in text and "SYNTHETIC" in text
    runs = pd.read_parquet(out / "runs.parquet")
    assert list(runs.columns) == list(RUN_COLUMNS) and len(runs) == 4
    assert runs["diverged"].dtype == bool
    md = (out / "report.md").read_text()
    assert manifest["version"] in md and manifest["source_snapshot"]["snapshot_id"] in md
    assert "SYNTHETIC" in md
    assert all((out / p).is_file() for p in ("accuracy.png", "curves.png", "metrics.png",
                                             "report.html", "summary.csv", "stats.json"))
    # the same command again resumes: both cells are reused, their checkpoints untouched
    ck = out / "checkpoints" / "T2__WxDxC.safetensors"
    stamp = ck.stat().st_mtime_ns
    assert main(["train", "--prior", "tiny", "--store", str(path), "--tasks", "T2", "--variants",
                 "W,W*D*C", "--runs", "2", "--epochs", "1", "--n-train", "192", "--n-val", "64",
                 "--n-test", "64", "--seed", "1", "--out", str(out), "--no-progress",
                 "--runs-per-batch", "1"]) == 0
    assert ck.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), runs)


def test_cxp_train_errors(store, tmp_path, capsys):
    path, _ = store
    base = ["train", "--store", str(path), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(base + ["--prior", "nope"]) == 2
    assert "no artifact named 'nope'" in capsys.readouterr().err
    assert main(base + ["--prior", "tiny", "--variants", "W*D"]) == 2
    assert "unknown variant 'W*D'" in capsys.readouterr().err
    assert main(base + ["--prior", "tiny", "--tasks", "T9"]) == 2
    assert "unknown task 'T9'" in capsys.readouterr().err
    assert main(base + ["--prior", "tiny", "--dask-scheduler", "nowhere", "--tasks", "T2",
                        "--variants", "W", "--runs", "1", "--epochs", "1", "--n-train", "64",
                        "--n-val", "32", "--n-test", "32"]) == 2
    err = capsys.readouterr().err
    assert "'nowhere' is not a Dask scheduler address" in err and "or 'local'" in err


def test_parse_variants():
    assert parse_variants("all", "paper") == VARIANTS
    assert parse_variants("all") == VARIANTS + ("WdiagD*C", "WoffD*C", "WrandD*C")
    assert parse_variants(" W*D*C , W ") == ("W*D*C", "W")
    with pytest.raises(TrainingError, match="names no variant"):
        parse_variants(" , ")


#: Quick training settings for the structure-only prior (N = 56).
QUICK = ["--tasks", "T2", "--runs", "1", "--epochs", "1", "--n-train", "64", "--n-val", "32",
         "--n-test", "32", "--batch-size", "32", "--threads", "1", "--no-progress"]


def test_structure_only_prior_trains_w_and_wd(structure_only, tmp_path, capsys):
    """A prior without functional kinds (no w_bio_modulation) trains W and WD."""
    path, manifest = structure_only
    assert "w_bio_modulation" not in manifest["kinds"] and "distance_um" in manifest["kinds"]
    out = tmp_path / "out"
    rc = main(["train", "--prior", "wiring", "--store", str(path), "--variants", "W,WD",
               "--out", str(out), *QUICK])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.err == "" and "note:" not in captured.out
    assert "1 task(s) x 2 variant(s) x 1 runs" in captured.out
    runs = pd.read_parquet(out / "runs.parquet")
    assert list(runs.columns) == list(RUN_COLUMNS)
    assert runs["variant"].tolist() == ["W", "WD"] and set(runs["n_units"]) == {56}
    assert runs["test_accuracy"].between(0, 1).all()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["T2__W.safetensors",
                                                                       "T2__WD.safetensors"]
    md = (out / "report.md").read_text()
    assert "This prior lacks w_bio_modulation. Its build skipped the functional kinds" in md
    assert "It is a structure-only prior" in md


@pytest.mark.parametrize("variants, needers, runnable", [
    ("W*D*C", "W*D*C", None),
    ("W,W*D*C", "W*D*C", "W"),
    ("W!D*C*,WD,W*DC*,WdiagD*C,WD*C*", "W!D*C*, W*DC*, WdiagD*C", "WD, WD*C*"),
])
def test_structure_only_prior_refuses_bio_variants_up_front(structure_only, tmp_path, capsys,
                                                            variants, needers, runnable):
    """A list with a variant the prior cannot run is refused whole, before training: exit 2,
    one line naming the missing kind, the variants needing it and those that would run."""
    path, manifest = structure_only
    out = tmp_path / "out"
    rc = main(["train", "--prior", "wiring", "--store", str(path), "--variants", variants,
               "--out", str(out), *QUICK])
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    would = (f"variants that would run on it: {runnable}. " if runnable else
             "none of the requested variants would run on it (it supports WD*C, WDC, WD*, WD, "
             "W, WD*C*). ")
    assert lines[0].startswith(
        f"cxp train: error: prior wiring@{manifest['version']} has no kind 'w_bio_modulation' "
        f"(needed by {needers}); {would}Its build skipped the functional kinds: not every "
        "neuron has a spike train from one scan"), lines[0]
    assert captured.out == ""  # not even the "training on ..." line
    assert not out.exists()    # nothing trained or written


def test_structure_only_prior_all_trains_what_it_supports(structure_only, tmp_path, capsys):
    """--variants all on a structure-only prior: the six variants with the orthogonal init, and
    one note naming the eight left out and why."""
    path, manifest = structure_only
    out = tmp_path / "out"
    rc = main(["train", "--prior", "wiring", "--store", str(path), "--variants", "all",
               "--out", str(out), *QUICK])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    notes = [line for line in captured.out.splitlines() if line.startswith("note:")]
    assert notes == [
        f"note: --variants all leaves out 8 variant(s) that prior wiring@{manifest['version']} "
        "cannot run: it has no kind 'w_bio_modulation' (needed by W*D*C, W*D*C*, W*DC*, W!D*C, "
        "W!D*C*, WdiagD*C, WoffD*C, WrandD*C). Its build skipped the functional kinds: not "
        "every neuron has a spike train from one scan (functional kinds need simultaneous "
        "recordings)"]
    assert "1 task(s) x 6 variant(s) x 1 runs" in captured.out
    runs = pd.read_parquet(out / "runs.parquet")
    assert runs["variant"].tolist() == ["WD*C", "WDC", "WD*", "WD", "W", "WD*C*"]


def test_full_prior_all_keeps_every_variant(store, tmp_path, capsys, monkeypatch):
    """On a prior with functional kinds 'all' leaves nothing out (training stubbed: only the
    expansion is under test)."""
    from connectome_priors.training import experiment

    path, _ = store
    seen = {}

    def stop(prior, config, **kwargs):
        seen["variants"] = config.variants
        raise TrainingError("stub: stop before training")

    monkeypatch.setattr(experiment, "run_experiment", stop)
    assert main(["train", "--prior", "tiny", "--store", str(path), "--variants", "all",
                 "--out", str(tmp_path / "o"), *QUICK]) == 2
    assert seen["variants"] == VARIANTS + ("WdiagD*C", "WoffD*C", "WrandD*C")
    assert "note:" not in capsys.readouterr().out


def test_help_documents_all_on_a_structure_only_prior(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "'all' trains the variants it supports and prints a note naming those left out" in text
    assert "refused before anything is trained (exit 2)" in text
