"""Derive every prior kind for a population and publish them as one artifact.

Kinds (see ``docs/method.md#priors``): ``distance_um`` and ``distance_minmax`` (always), ``connectome``
(sparse synapse counts, [pre, post]) and ``connectome_size`` (summed synapse size, where the source
has sizes), ``cell_sign``, ``connectome_signed`` and ``connectome_type_pair`` (Dale signs from the
cell classes, the signed wiring, the cell-type pair of every connection), ``communicability`` (empirical, up to ``max_dense_n`` neurons), ``modules_wiring``;
and where every neuron has a spike train from one scan: ``correlation``, ``sttc``, ``precision``,
``w_bio_modulation``, ``modules_functional``.
"""

from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from connectome_priors.etl.store import Store

from . import derive
from .config import artifact_root
from .derive.signed import cell_signs, signed_weight, type_pairs
from .distance_writer import write_distance
from .distributed import BuildEngine, check_engine, write_distance_dask
from .errors import PriorsError
from .manifest import DERIVATION_VERSION, nucleus_ids_digest, recipe_version
from .population import Population, ResolvedPopulation, resolve
from .writer import ArtifactWriter

__all__ = ["DERIVATION_VERSION", "DeriveParams", "Plan", "build", "build_per_field", "plan",
           "rebuild", "recipe_of"]


@dataclass(frozen=True)
class DeriveParams:
    """Parameters of every derivation (recorded in the manifest; part of the version, the recipe)."""

    bin_s: float = 0.2
    """Bin width (s) of the spike counts behind correlation and precision."""
    sttc_dt_s: float = 0.1
    """STTC coincidence window (s): |t_a - t_b| <= dt."""
    precision: bool = True
    """Derive the precision matrix (GraphicalLassoCV; the slowest functional kind)."""
    precision_seed: int = 0
    """Seed of the precision matrix's cross-validation."""
    module_resolution: float = 1.0
    """Leiden modularity resolution."""
    module_seed: int = 0
    """Leiden seed."""
    max_dense_n: int = 5000
    """Largest population for dense-only kinds (communicability: an N x N matrix exponential)."""
    distance_block: int = 1024
    """Rows per block when writing the distance matrices (bounds memory for pooled populations)."""
    signed_measure: str = "synapses"
    """Magnitude of ``connectome_signed``: ``"synapses"`` (synapse count) or ``"size"`` (summed
    synapse size; where the source has no sizes the kind is skipped)."""


def build(name: str, population: Population, *, store: Store | str | os.PathLike | None = None,
          root: str | os.PathLike | None = None, params: DeriveParams = DeriveParams(),
          engine: BuildEngine = "local", scheduler: Any = None, progress: bool = False) -> dict:
    """Derive all kinds for ``population`` from ``store`` and publish artifact ``name``.

    Returns the manifest. The version derives from the recipe (population and its nucleus ids,
    the snapshot's content hash, ``params``, :data:`DERIVATION_VERSION`), not from the numbers, so
    building the same population of the same snapshot with the same parameters yields the same
    version on every machine. Building a published version again writes nothing: the published
    build is kept once the new one matches it within the tolerances of
    :func:`~.comparison.compare_builds` (else :class:`~.errors.ArtifactIntegrityError`).

    ``engine`` ``"local"`` (default) computes everything in this process; ``"dask"`` computes the
    distance matrix's row blocks on a Dask cluster (``scheduler``: ``None`` for a fresh
    ``LocalCluster``, a ``"tcp://HOST:PORT"`` address or a ``distributed.Client``; see
    :mod:`priors_store.distributed`). Both give byte-identical files and the same version.

    Examples
    --------
    >>> m = build("v1_6_6_2", Population.of_fields("6_6_2"), store="/tmp/store")  # doctest: +SKIP
    >>> m["version"]                                                               # doctest: +SKIP
    """
    check_engine(engine, scheduler)
    store = store if isinstance(store, Store) else Store(store)
    root = artifact_root(root, store=store.directory)
    planned = plan(population, store, params=params)
    resolved = planned.resolved
    n = len(resolved.neurons)
    functional = resolved.spikes is not None or resolved.study is not None
    steps = ["distance", "connectome", "modules_wiring"] + (["communicability"] if n <= params.max_dense_n
                                                            else [])
    if functional:
        steps += ["correlation", "sttc"] + (["precision"] if params.precision else []) + \
                 ["w_bio_modulation", "modules_functional"]
    with ArtifactWriter(root, name) as writer, \
            tqdm(total=len(steps), desc=f"priors {name}", unit="kind", disable=not progress) as bar:
        def step(label: str) -> None:
            bar.set_postfix_str(label)

        writer.table("neurons.parquet", resolved.neurons)
        step("distance")
        if engine == "dask":
            write_distance_dask(resolved.positions_um, writer, block=params.distance_block,
                                scheduler=scheduler, progress=progress)
        else:
            write_distance(resolved.positions_um, writer, block=params.distance_block)
        bar.update()
        step("connectome")
        counts = _wiring(resolved, writer, params)
        bar.update()
        step("modules_wiring")
        labels, q = derive.modules_wiring(counts, resolution=params.module_resolution,
                                          seed=params.module_seed)
        writer.labels("modules_wiring", labels, description="Leiden modules of the symmetrized wiring graph",
                      stats={"modularity_q": float(q), "n_modules": int(labels.max() + 1) if len(labels) else 0})
        bar.update()
        if n <= params.max_dense_n:
            step("communicability")
            comm = derive.communicability(counts)
            writer.array("communicability", comm, orientation="[pre, post]",
                         description="expm(S^-1/2 A S^-1/2), diagonal zeroed; zero-strength nodes isolated")
            bar.update()
        if functional:
            _functional(resolved, writer, params, step, bar)
        return writer.commit(**planned.recipe)


@dataclass(frozen=True)
class Plan:
    """What :func:`build` will publish, before anything is derived: the resolved population and
    the recipe the manifest records (and its version derives from)."""

    resolved: ResolvedPopulation
    """The population resolved on its snapshot."""
    recipe: dict
    """``population``, ``source_snapshot``, ``parameters``, ``derivation_version``."""

    @property
    def version(self) -> str:
        """The version :func:`build` publishes for this recipe (hashed as the manifest holds it)."""
        return recipe_version(json.loads(json.dumps(self.recipe, sort_keys=True, default=str)))


def plan(population: Population, store: Store, *, params: DeriveParams = DeriveParams()) -> Plan:
    """Resolve ``population`` on ``store`` and assemble the recipe :func:`build` records.

    Raises
    ------
    PopulationError
        The population cannot be resolved (empty on this snapshot, unknown field, ...).
    """
    resolved = resolve(population, store)
    n = len(resolved.neurons)
    functional = resolved.spikes is not None or resolved.study is not None
    functional_source = ("derived from spike trains" if resolved.spikes is not None else
                         "released by the source (store table study_functional), not derived here"
                         if functional else None)
    if params.signed_measure not in _MEASURES:
        raise PriorsError(f"DeriveParams.signed_measure must be one of {', '.join(_MEASURES)}; "
                          f"found {params.signed_measure!r}")
    skipped = {}
    if params.signed_measure == "size" and not _has_sizes(resolved.connections):
        skipped["connectome_signed"] = ("signed_measure 'size': the source reports no synapse "
                                        "sizes for these connections")
    if n > params.max_dense_n:
        skipped["communicability"] = f"{n} neurons > max_dense_n {params.max_dense_n}"
    if not functional:
        skipped["functional"] = ("not every neuron has a spike train from one scan "
                                 "(functional kinds need simultaneous recordings)")
    snap = resolved.snapshot
    return Plan(resolved, {
        "population": {**population.describe(), "n_neurons": n,
                       "nucleus_ids_sha256": nucleus_ids_digest(resolved.neurons.nucleus_id)},
        "source_snapshot": {
            "snapshot_id": snap["snapshot_id"], "source": snap["source"],
            "datastack": snap.get("datastack"),
            "materialization_version": _int_or_none(snap.get("materialization_version")),
            "materialization_timestamp": _str_or_none(snap.get("materialization_timestamp")),
            "content_hash": snap["content_hash"], "synthetic": snap["source"] == "synthetic",
            **({"activity_snapshot": resolved.activity} if resolved.activity else {})},
        "parameters": {**asdict(params), "skipped": skipped, "functional_source": functional_source},
        "derivation_version": DERIVATION_VERSION})


def recipe_of(manifest: dict) -> tuple[Population, DeriveParams]:
    """The population (pinned to the manifest's source snapshot) and parameters a manifest
    records: what :func:`build` needs to build its recipe again.

    Raises
    ------
    PriorsError
        The manifest's parameters are not :class:`DeriveParams` fields (another code version).
    """
    pop = manifest["population"]
    names = {f.name for f in fields(DeriveParams)}
    recorded = {k: v for k, v in manifest["parameters"].items() if k not in ("skipped", "functional_source")}
    unknown = sorted(set(recorded) - names)
    if unknown:
        raise PriorsError(f"{manifest['name']}@{manifest['version']}: parameters {unknown} are not "
                          f"derivation parameters of this code (DeriveParams: {sorted(names)}); "
                          "rebuild it with the connectome-priors release that built it "
                          f"({manifest.get('code_version')})")
    population = Population(pop["kind"], fields=tuple(pop.get("fields") or ()), sql=pop.get("sql"),
                            snapshot=manifest["source_snapshot"]["snapshot_id"],
                            activity_snapshot=pop.get("activity_snapshot"))
    return population, DeriveParams(**recorded)


def rebuild(manifest: dict, *, store: Store | str | os.PathLike | None = None,
            root: str | os.PathLike) -> dict:
    """Build ``manifest``'s recipe again from ``store`` into the artifact root ``root`` (e.g. a
    temporary folder); return the new manifest. See :func:`~.verification.verify` (``rebuild=True``)."""
    population, params = recipe_of(manifest)
    if manifest.get("derivation_version", DERIVATION_VERSION) != DERIVATION_VERSION:
        raise PriorsError(f"{manifest['name']}@{manifest['version']} was derived by derivation code "
                          f"version {manifest['derivation_version']!r}; this code is version "
                          f"{DERIVATION_VERSION!r} and gives other results. Rebuild it with the "
                          f"release that built it ({manifest.get('code_version')})")
    return build(manifest["name"], population, store=store, root=root, params=params)


def build_per_field(prefix: str, fields: list[str] | None = None, *,
                    store: Store | str | os.PathLike | None = None,
                    root: str | os.PathLike | None = None, snapshot: str | None = None,
                    params: DeriveParams = DeriveParams(), jobs: int = 1,
                    progress: bool = False) -> list[dict]:
    """Build one artifact per field, named ``<prefix>_<session>_<scan>_<field>``.

    ``fields`` None means every field of the snapshot. ``jobs`` > 1 builds fields in that many
    worker processes (each reads the store read-only). Returns the manifests in field order.
    """
    store = store if isinstance(store, Store) else Store(store)
    root = artifact_root(root, store=store.directory)
    sid = snapshot or store.latest_snapshot()
    if fields is None:
        fields = store.sql("SELECT DISTINCT session, scan_idx, field FROM functional_units "
                           "ORDER BY session, scan_idx, field", snapshot=sid) \
            .astype(str).agg("_".join, axis=1).tolist()
    tasks = [(f"{prefix}_{f}", f) for f in fields]
    bar = tqdm(total=len(tasks), desc=f"priors {prefix}_*", unit="field", disable=not progress)
    with bar:
        if jobs <= 1:
            out = []
            for name, f in tasks:
                out.append(build(name, Population.of_fields(f, snapshot=sid), store=store, root=root,
                                 params=params))
                bar.update()
            return out
        with ProcessPoolExecutor(max_workers=jobs, initializer=_one_blas_thread) as pool:
            futures = [pool.submit(build, name, Population.of_fields(f, snapshot=sid),
                                   store=str(store.directory), root=str(root), params=params)
                       for name, f in tasks]
            out = []
            for fut in futures:
                out.append(fut.result())
                bar.update()
            return out


def _one_blas_thread() -> None:
    """Worker initializer: one BLAS thread per worker process, so workers do not oversubscribe."""
    from threadpoolctl import threadpool_limits  # only in worker processes

    threadpool_limits(1)


#: Magnitudes ``connectome_signed`` can take (``DeriveParams.signed_measure``).
_MEASURES = ("synapses", "size")


def _has_sizes(connections: pd.DataFrame) -> bool:
    return bool(len(connections)) and not connections.sum_size.isna().any()


def _wiring(resolved: ResolvedPopulation, writer: ArtifactWriter,
            params: DeriveParams) -> sp.csr_matrix:
    n = len(resolved.neurons)
    c = resolved.connections
    counts = derive.connectome(c.pre_index.to_numpy(), c.post_index.to_numpy(),
                               c.n_synapses.to_numpy(), n=n)
    writer.sparse("connectome", counts, orientation="[pre, post]", unit="synapses",
                  description="synapse counts, rows presynaptic",
                  stats={"n_connections": int(counts.nnz), "n_synapses": int(counts.sum()),
                         "density": counts.nnz / max(n * (n - 1), 1)})
    sizes = None
    if _has_sizes(c):
        sizes = derive.synapse_size(c.pre_index.to_numpy(), c.post_index.to_numpy(),
                                    c.sum_size.to_numpy(dtype=np.float64), n=n)
        writer.sparse("connectome_size", sizes, orientation="[pre, post]", unit="voxel count",
                      description="summed synapse size, rows presynaptic")
    _signed(resolved.neurons, counts, sizes, writer, params)
    return counts


def _signed(neurons: pd.DataFrame, counts: sp.csr_matrix, sizes: sp.csr_matrix | None,
            writer: ArtifactWriter, params: DeriveParams) -> None:
    """``cell_sign``, ``connectome_signed`` (unless its measure is absent) and
    ``connectome_type_pair``: the connectome-constrained init's inputs (issue 24)."""
    signs, unrecognized = cell_signs(neurons.cell_class.to_numpy(dtype=object))
    unknown = signs == 0
    writer.labels("cell_sign", signs,
                  description="Dale sign of each neuron from its cell class: +1 excitatory, "
                              "-1 inhibitory, 0 unknown (no class, or another one)",
                  stats={"n_excitatory": int((signs == 1).sum()),
                         "n_inhibitory": int((signs == -1).sum()), "n_unknown": int(unknown.sum()),
                         "unrecognized_classes": list(unrecognized),
                         "n_connections_from_unknown": int(counts[unknown].nnz)})
    measure = counts if params.signed_measure == "synapses" else sizes
    if measure is not None:
        signed = signed_weight(measure, signs)
        writer.sparse("connectome_signed", signed, orientation="[pre, post]",
                      unit="synapses" if params.signed_measure == "synapses" else "voxel count",
                      description=f"{params.signed_measure} signed by the presynaptic cell "
                                  "(cell_sign; unsigned where the class is unknown)",
                      stats={"measure": params.signed_measure,
                             "n_negative": int((signed.data < 0).sum()),
                             "n_positive": int((signed.data > 0).sum())})
    pairs, types = type_pairs(counts, neurons.cell_type.to_numpy(dtype=object))
    writer.sparse("connectome_type_pair", pairs, orientation="[pre, post]",
                  description="1 + t_pre * T + t_post per connection; t indexes stats.cell_types "
                              "(T of them; null: no type)",
                  stats={"cell_types": list(types), "n_types": len(types)})


def _functional(resolved: ResolvedPopulation, writer: ArtifactWriter, params: DeriveParams,
                step, bar) -> None:
    spikes = resolved.spikes
    if spikes is None:
        _released(resolved.study, writer, params, step, bar)
        return
    step("correlation")
    corr = derive.correlation(spikes, bin_s=params.bin_s)
    writer.array("correlation", corr, orientation="symmetric",
                 description=f"Pearson correlation of spike counts in {params.bin_s} s bins")
    bar.update()
    step("sttc")
    sttc = derive.sttc(spikes, dt=params.sttc_dt_s)
    writer.array("sttc", sttc, orientation="symmetric",
                 description=f"spike time tiling coefficient, dt {params.sttc_dt_s} s")
    bar.update()
    if params.precision:
        step("precision")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = derive.precision(spikes, bin_s=params.bin_s, seed=params.precision_seed)
        # sklearn warns per non-converged CV fit; keep the count in the manifest, not on screen
        notes = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:120]}" for w in caught})
        writer.array("precision", value, orientation="symmetric",
                     description="GraphicalLassoCV precision of binned counts",
                     stats={"fit_warnings": len(caught), "warning_kinds": notes[:5]})
        bar.update()
    _from_correlation(corr, sttc, writer, params, step, bar)


def _released(study: dict[str, np.ndarray], writer: ArtifactWriter, params: DeriveParams,
              step, bar) -> None:
    """Functional kinds from the source's released matrices (no spike trains to derive from)."""
    note = " (as released by the source, not derived here)"
    for kind in ("correlation", "sttc", "precision"):
        if kind == "precision" and not params.precision:
            continue
        step(kind)
        if kind in study:
            writer.array(kind, study[kind], orientation="symmetric", description=kind + note)
        bar.update()
    if "correlation" in study and "sttc" in study:
        _from_correlation(study["correlation"], study["sttc"], writer, params, step, bar)


def _from_correlation(corr: np.ndarray, sttc: np.ndarray, writer: ArtifactWriter,
                      params: DeriveParams, step, bar) -> None:
    step("w_bio_modulation")
    writer.array("w_bio_modulation", derive.w_bio_modulation(corr, sttc), orientation="symmetric",
                 description="minmax(correlation) * minmax(sttc): the study's deterministic init factor")
    bar.update()
    step("modules_functional")
    labels, q = derive.modules_functional(corr, resolution=params.module_resolution,
                                          seed=params.module_seed)
    writer.labels("modules_functional", labels,
                  description="Leiden modules of the positive correlation graph",
                  stats={"modularity_q": float(q), "n_modules": int(labels.max() + 1) if len(labels) else 0})
    bar.update()


def _int_or_none(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _str_or_none(value) -> str | None:
    return None if value is None or pd.isna(value) else str(value)
