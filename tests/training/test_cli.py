"""Tests of training/cli.py through ``cxp train`` (connectome_priors.cli.main)."""

from __future__ import annotations

import pandas as pd
import pytest

from connectome_priors import priors_store
from connectome_priors.cli import main
from connectome_priors.etl.pipeline import run_etl
from connectome_priors.priors_store.pipeline import DeriveParams
from connectome_priors.priors_store.population import Population
from connectome_priors.training.cli import parse_variants
from connectome_priors.training.errors import TrainingError
from connectome_priors.training.experiment import RUN_COLUMNS
from connectome_priors.training.variants import VARIANTS

from .test_experiment import TINY


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding a tiny synthetic snapshot and prior 'tiny' under <store>/artifacts."""
    path = tmp_path_factory.mktemp("train-cli") / "store"
    run_etl("synthetic", store=path, synthetic=TINY)
    manifest = priors_store.build("tiny", Population.of_fields("6_6_2"), store=path,
                                  root=path / "artifacts", params=DeriveParams(precision=False))
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
