"""One import root: the stages install beneath ``connectome_priors``, load lazily, and keep their
layers (import-linter contracts, which must fail on a backwards import)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.processes  # every test here starts python, cxp, pip or lint-imports


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("bare", ["etl", "training", "schemas", "priors_store"])
def test_no_bare_stage_module_outside_the_repository(bare, tmp_path):
    done = _python(f"import {bare}", tmp_path)
    assert done.returncode == 1 and f"No module named '{bare}'" in done.stderr


def test_stages_import_from_the_root_and_load_lazily(tmp_path):
    done = _python(
        "import sys\n"
        "import connectome_priors.priors_store.derive as d\n"
        "assert callable(d.communicability)\n"
        "assert not [m for m in sys.modules if m.startswith('connectome_priors.etl')], 'etl loaded'\n"
        "import connectome_priors.training.tasks\n"
        "assert not [m for m in sys.modules if m.startswith('connectome_priors.etl.sources')]\n"
        "import duckdb\n"  # only now: the derivations above never needed it
        "from connectome_priors import run_etl, Store, build, load, Population, run_experiment, "
        "ExperimentConfig\n"
        "from connectome_priors.priors_store.reader import load as load2\n"
        "assert load is load2\n"
        "print('ok')\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_pipeline_runs_from_another_directory(tmp_path):
    """ETL -> build -> load -> train, outside the repository (no top-level stage folder on the
    path): package data and every module resolve under the root."""
    done = _python(
        "from connectome_priors import run_etl, build, load, Population, run_experiment, "
        "ExperimentConfig, FitConfig\n"
        "from connectome_priors.etl.sources.synthetic import SyntheticConfig\n"
        "from connectome_priors.priors_store import DeriveParams\n"
        "cfg = SyntheticConfig(seed=5, n_fields=1, fields_per_scan=1, duration_s=60.0, "
        "field_size_range=(20, 24))\n"
        "snap = run_etl('synthetic', store='s', synthetic=cfg, progress=False)\n"
        "build('tiny', Population.pooled(), store='s', root='a', params=DeriveParams(precision=False))\n"
        "prior = load('tiny', root='a')\n"
        "runs = run_experiment(prior, ExperimentConfig(tasks=('T2',), variants=('W',), runs=1, "
        "n_null=2, fit=FitConfig(epochs=1, n_train=64, n_val=32, n_test=32, batch_size=32)), "
        "out_dir='t')\n"
        "print(len(runs), prior['distance_um'].shape[0] > 0)\n", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1", "True"]


def test_cxp_help_lists_every_command(tmp_path):
    cxp = Path(sys.executable).with_name("cxp")
    done = subprocess.run([str(cxp), "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("etl", "status", "sql", "refresh", "aggregate", "priors", "train",
                    "synth-synapses"):
        assert command in done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The package installed as a wheel would be (the stages physically under the root)."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    src = build / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", ".cxp", "build",
                                                              "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True, timeout=300)
    return target


def _lint(site: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=site,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_hold_and_catch_a_backwards_import(site, tmp_path):
    done = _lint(site)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
    broken = tmp_path / "site"
    shutil.copytree(site, broken)
    store = broken / "connectome_priors" / "etl" / "store.py"
    store.write_text(store.read_text() + "\nfrom connectome_priors.training import tasks  # backwards\n")
    done = _lint(broken)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "connectome_priors.etl.store -> connectome_priors.training" in done.stdout


def test_a_new_cycle_between_siblings_breaks_the_contracts(site, tmp_path):
    broken = tmp_path / "site"
    shutil.copytree(site, broken)
    store = broken / "connectome_priors" / "etl" / "store.py"
    store.write_text(store.read_text() + "\nfrom connectome_priors.etl import cli  # a cycle\n")
    done = _lint(broken)
    assert done.returncode != 0
    assert "No cycles are allowed in connectome_priors.etl" in done.stdout


def test_the_wheel_check_names_a_module_the_package_would_not_ship(tmp_path):
    """`make lint` runs .ci/check_wheel.py: a wheel that leaves a module of the tree out fails."""
    check = [sys.executable, str(REPO / ".ci" / "check_wheel.py")]
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools reuses a stale build folder
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    shutil.rmtree(REPO / "build", ignore_errors=True)
    wheel = next(tmp_path.glob("connectome_priors-*.whl"))
    done = subprocess.run(check + [str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "all " in done.stdout, done.stdout + done.stderr
    lacking = tmp_path / "lacking" / wheel.name
    lacking.parent.mkdir()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(lacking, "w") as dst:
        for item in src.infolist():
            if not item.filename.startswith("connectome_priors/etl/sources/nwb/"):
                dst.writestr(item, src.read(item))
    done = subprocess.run(check + [str(lacking)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "connectome_priors/etl/sources/nwb/reader.py" in done.stdout
