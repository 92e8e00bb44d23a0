"""``run_experiment``: every task x variant of a prior, runs batched, with metrics per run.

For each task and variant the initial weights and the penalty come from the prior
(:func:`~training.variants.build_variant`); the runs of a variant train together as batched
models (:func:`~training.train.fit`, :func:`runs_per_batch` runs at a time); organization
metrics are computed per run on the *effective* recurrent matrix. One task x variant is a cell
(:mod:`training.cell`, which also says how its seeds derive from the master seed); this module
runs the cells in-process or on a cluster (:mod:`training.distributed`), writes them as they
finish and resumes a grid from the cells already written.

Only the kinds the requested variants read are loaded (:func:`~training.variants.required_kinds`),
and a prior that lacks one is refused before anything is trained or written
(:func:`check_kinds`): a structure-only prior (no spike trains, so no ``w_bio_modulation``)
trains ``W``, ``WD``, ``WDC``, ``WD*``, ``WD*C`` and ``WD*C*``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from connectome_priors.kernel.dask import resolve_scheduler
from connectome_priors.kernel.version import code_version

from connectome_priors.kernel.files import atomic_path

from .cell import RUN_COLUMNS, fit_config, run_seed, runs_per_batch, train_cell
from .checkpoint import checkpoint_name, save_checkpoint
from .config import ExperimentConfig
from .errors import MissingKindError
from .grammar import FUNCTIONAL_KINDS, default_variants, missing_kinds, required_kinds
from .train import Splits, make_splits

__all__ = ["ExperimentConfig", "run_experiment", "run_seed", "RUN_COLUMNS", "write_parquet",
           "config_dict", "fingerprint", "legacy_fingerprint", "runs_per_batch", "train_cell",
           "check_kinds", "describe_missing", "prior_arrays", "supported_variants",
           "why_absent"]

def run_experiment(prior, config: ExperimentConfig, *, out_dir: str | os.PathLike,
                   progress: bool = False, scheduler=None) -> pd.DataFrame:
    """Train every task x variant of ``config`` on ``prior``; write ``runs``/``curves`` parquet.

    Each task x variant is a *cell*: when it finishes, its rows go to
    ``<out_dir>/cells/<fingerprint>/`` and its trained weights to
    ``<out_dir>/checkpoints/`` (:mod:`training.checkpoint`). A rerun with the same config and prior
    (the fingerprint) into the same folder skips finished cells, so a killed grid resumes where it
    stopped and ends with the same tables.

    Parameters
    ----------
    prior
        A loaded prior (:func:`priors_store.load`) holding the kinds the variants of ``config``
        read (:func:`~training.variants.required_kinds`); only those are loaded.
    config
        What to train.
    out_dir
        Folder that receives ``runs.parquet`` (one row per run, columns :data:`RUN_COLUMNS`) and
        ``curves.parquet`` (one row per run and epoch); created if missing.
    progress
        Show a progress bar over task x variant.
    scheduler
        ``None`` (the ``dask_scheduler`` setting, ``$CXP_DASK_SCHEDULER``; when unset, train
        here, one cell after another), ``"local"`` (a Dask ``LocalCluster`` of
        one single-threaded worker per core), a scheduler address such as
        ``"tcp://host:8786"``, or a ``distributed.Client``: the cells are spread over the
        cluster's workers (:mod:`training.distributed`); files are written here as cells finish.

    Returns
    -------
    pandas.DataFrame
        The runs table.

    Raises
    ------
    MissingKindError
        If the prior lacks a kind that a variant of ``config`` reads (:func:`check_kinds`);
        raised before anything is trained or written.

    Examples
    --------
    >>> cfg = ExperimentConfig(tasks=("T2",), variants=("W",), runs=2,
    ...                        fit=FitConfig(epochs=1, n_train=128, n_val=64, n_test=64))
    >>> runs = run_experiment(prior, cfg, out_dir="out")  # doctest: +SKIP
    """
    check_kinds(prior, config.variants, protocol=config.protocol)
    arrays = prior_arrays(prior, config.variants, protocol=config.protocol)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prior_ref = _ref(prior)
    cells = _cells_dir(out, config, prior_ref)
    cells.mkdir(parents=True, exist_ok=True)

    def files(task: str, variant: str) -> tuple[Path, Path]:
        stem = checkpoint_name(task, variant).removesuffix(".safetensors")
        return cells / f"{stem}.runs.parquet", cells / f"{stem}.curves.parquet"

    def store(task: str, variant: str, result: tuple) -> None:
        cell_runs, cell_curves, model = result
        save_checkpoint(out / "checkpoints" / checkpoint_name(task, variant), model, task=task,
                        variant=variant, seeds=cell_runs["seed"].tolist(), prior=prior_ref,
                        config=config_dict(config), code_version=code_version())
        runs_file, curves_file = files(task, variant)
        write_parquet(cell_curves, curves_file)
        write_parquet(cell_runs, runs_file)  # written last: marks the cell complete

    grid = [(t, v) for t in config.tasks for v in config.variants]
    todo = [(t, v) for t, v in grid if not all(f.exists() for f in files(t, v))]
    bar = tqdm(total=len(grid), initial=len(grid) - len(todo), desc="train", unit="variant",
               disable=not progress)
    scheduler = resolve_scheduler(scheduler)
    with bar:
        if scheduler is None:
            splits: dict[str, Splits] = {}
            for task, variant in todo:
                bar.set_postfix_str(f"{task} {variant}")
                if task not in splits:
                    splits = {task: make_splits(task, fit_config(config))}
                store(task, variant, train_cell(task, variant, arrays, config,
                                                splits=splits[task]))
                bar.update()
        else:
            from .distributed import map_cells  # dask only when asked for

            for (task, variant), result in map_cells(scheduler, todo, arrays, config):
                store(task, variant, result)
                bar.set_postfix_str(f"{task} {variant}")
                bar.update()
    rows = [pd.read_parquet(files(t, v)[0]) for t, v in grid]
    curves = [pd.read_parquet(files(t, v)[1]) for t, v in grid]
    # reindex: cells written before a column existed (dale_violations) read it as missing
    runs = pd.concat(rows, ignore_index=True).reindex(columns=list(RUN_COLUMNS))
    runs["epochs_to_criterion"] = runs["epochs_to_criterion"].astype("Int64")
    runs["diverged"] = runs["diverged"].astype(bool)
    curve_df = pd.concat(curves, ignore_index=True)
    write_parquet(runs, out / "runs.parquet")
    write_parquet(curve_df, out / "curves.parquet")
    return runs


def _ref(prior) -> str:
    return f"{getattr(prior, 'name', '?')}@{getattr(prior, 'version', '?')}"


def _kinds(prior) -> list[str]:
    kinds = getattr(prior, "kinds", None)
    return list(kinds) if kinds is not None else list(prior.manifest["kinds"])


def why_absent(kinds, manifest: dict) -> str:
    """Why a prior's build left ``kinds`` out, from its manifest's ``parameters.skipped``, as one
    sentence (e.g. ``"Its build skipped the functional kinds: not every neuron has a spike train
    from one scan (...)"``); ``""`` where the manifest does not say."""
    skipped = (manifest.get("parameters") or {}).get("skipped") or {}
    reasons: dict[str, str] = {}
    for kind in kinds:
        if kind in skipped:
            reasons.setdefault(kind, str(skipped[kind]))
        elif kind in FUNCTIONAL_KINDS and "functional" in skipped:
            reasons.setdefault("the functional kinds", str(skipped["functional"]))
    if not reasons:
        return ""
    return "Its build skipped " + "; ".join(f"{k}: {r}" for k, r in reasons.items())


def describe_missing(missing: dict[str, tuple[str, ...]]) -> str:
    """``"has no kind 'k' (needed by V, W)"`` (``"has no kinds 'a' (needed by ...), 'b' (...)"``)
    for :func:`~training.variants.missing_kinds`' answer."""
    parts = [f"{kind!r} (needed by {', '.join(needers)})" for kind, needers in missing.items()]
    return f"has no kind{'s' if len(parts) > 1 else ''} {', '.join(parts)}"


def check_kinds(prior, variants, *, protocol: str = "corrected") -> tuple[str, ...]:
    """Refuse ``variants`` unless ``prior`` holds every kind they read; return them otherwise.

    Parameters
    ----------
    prior
        A loaded prior (``name``, ``version``, ``kinds``, ``manifest``).
    variants
        Variant names.
    protocol
        ``"corrected"`` or ``"paper"`` (:func:`~training.variants.required_kinds`).

    Returns
    -------
    tuple of str
        ``variants``, when all can run.

    Raises
    ------
    MissingKindError
        Naming, in one line, each absent kind with the requested variants that need it, the
        requested variants that would run, and why the build left the kinds out (where the
        manifest says).

    Examples
    --------
    >>> check_kinds(structure_only, ["W", "W*D*C"])  # doctest: +SKIP
    MissingKindError: prior s@0123abcd has no kind 'w_bio_modulation' (needed by W*D*C); ...
    """
    variants = tuple(dict.fromkeys(variants))
    kinds = _kinds(prior)
    missing = missing_kinds(variants, kinds, protocol=protocol)
    if not missing:
        return variants
    ref = _ref(prior)
    lacking = {v for vs in missing.values() for v in vs}
    runnable = tuple(v for v in variants if v not in lacking)
    supported = [v for v in default_variants(protocol)  # type: ignore[arg-type]
                 if not required_kinds(v, protocol=protocol) - set(kinds)]
    would = (f"variants that would run on it: {', '.join(runnable)}" if runnable else
             f"none of the requested variants would run on it (it supports "
             f"{', '.join(supported) or 'none of the canonical ones'})")
    why = why_absent(missing, getattr(prior, "manifest", {}) or {})
    builds = ([" neurons that all have spike trains from one scan"]
              if set(missing) & set(FUNCTIONAL_KINDS) else []) + \
             ([" few enough neurons for the dense communicability (DeriveParams.max_dense_n)"]
              if "communicability" in missing else [])
    raise MissingKindError(
        f"prior {ref} {describe_missing(missing)}; {would}. {why + '. ' if why else ''}Request "
        "only variants it supports"
        + (f", or train on a prior built from{' and'.join(builds)}" if builds else ""),
        prior=ref, missing=missing, runnable=runnable)


def supported_variants(prior, variants, *,
                       protocol: str = "corrected") -> tuple[tuple[str, ...], str | None]:
    """The ``variants`` that ``prior`` can run, and a one-line note on those left out (``None``
    when none is): what ``cxp train --variants all`` trains on a prior that lacks kinds.

    Examples
    --------
    >>> supported_variants(structure_only, ["W*D*C", "W", "WD"])  # doctest: +SKIP
    (('W', 'WD'), "leaves out 1 variant(s) that prior s@0123abcd cannot run: it has no kind ...")
    """
    variants = tuple(dict.fromkeys(variants))
    missing = missing_kinds(variants, _kinds(prior), protocol=protocol)
    if not missing:
        return variants, None
    left = {v for vs in missing.values() for v in vs}
    why = why_absent(missing, getattr(prior, "manifest", {}) or {})
    note = (f"leaves out {len(left)} variant(s) that prior {_ref(prior)} cannot run: it "
            f"{describe_missing(missing)}{'. ' + why if why else ''}")
    return tuple(v for v in variants if v not in left), note


def prior_arrays(prior, variants, *, protocol: str = "corrected") -> dict[str, np.ndarray]:
    """The arrays :func:`train_cell` needs for ``variants``: only the kinds they read
    (:func:`~training.variants.required_kinds`) and the ``(N, 3)`` voxel positions of
    ``prior.neurons`` (which also give N). Kinds no variant reads are not loaded."""
    need = set().union(*(required_kinds(v, protocol=protocol) for v in variants))
    names = {"w_bio_modulation": "w_bio_modulation", "distance_um": "distance_um",
             "communicability": "communicability_empirical",
             "connectome_signed": "connectome_signed", "cell_sign": "cell_sign"}
    arrays = {names[k]: _dense(prior[k]) for k in sorted(need)}
    arrays["positions_vox"] = prior.neurons[["x_vox", "y_vox", "z_vox"]].to_numpy(np.float64)
    return arrays


def _dense(value) -> np.ndarray:
    """A kind as a float64 array (sparse kinds, e.g. ``connectome_signed``, made dense)."""
    return np.asarray(value.toarray() if hasattr(value, "toarray") else value, dtype=np.float64)


def fingerprint(config: ExperimentConfig, prior_ref: str) -> str:
    """Identity of a cell's results: the whole config (the training settings in ``fit``
    included) less what does not change a cell (the task and variant lists, which only choose the
    cells, and ``runs_per_batch``, which changes speed) and the prior's ``name@version``; 16 hex
    digits. A grid can thus be extended or reordered and still reuse its finished cells."""
    d = config_dict(config)
    for key in ("runs_per_batch", "tasks", "variants"):
        d.pop(key)
    text = json.dumps({"config": d, "prior": prior_ref}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: Fit settings that the flat config of connectome-priors <= 0.1 could not set: cells written
#: then were trained with these values.
_LEGACY_FIXED = {"input_noise": 0.05, "criterion": 0.9, "eval_batch": 1024, "data_seed": 0}


def legacy_fingerprint(config: ExperimentConfig, prior_ref: str) -> str | None:
    """The fingerprint the flat config (before ``ExperimentConfig.fit``) gave the same cells, or
    ``None`` when ``config`` sets a fit field that the flat config fixed (no such old cells)."""
    fit = asdict(config.fit)
    if any(fit[k] != v for k, v in _LEGACY_FIXED.items()):
        return None
    flat = {k: v for k, v in config_dict(config).items()
            if k not in ("fit", "runs_per_batch", "tasks", "variants")}
    flat.update({k: fit[k] for k in ("epochs", "n_train", "n_val", "n_test", "positive_only",
                                     "batch_size", "lr")})
    text = json.dumps({"config": flat, "prior": prior_ref}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cells_dir(out: Path, config: ExperimentConfig, prior_ref: str) -> Path:
    """``<out>/cells/<fingerprint>``; finished cells of the same config under its legacy
    fingerprint are moved there first (one rename), so an old grid resumes."""
    cells = out / "cells" / fingerprint(config, prior_ref)
    legacy = legacy_fingerprint(config, prior_ref)
    old = out / "cells" / legacy if legacy else None
    if old is not None and old.is_dir() and not cells.exists():
        os.replace(old, cells)
    return cells


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` to ``path`` through a temporary file in the same folder, then rename."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def config_dict(config: ExperimentConfig) -> dict:
    """JSON-ready view of a config."""
    d = asdict(config)
    d["tasks"], d["variants"] = list(config.tasks), list(config.variants)
    return d
