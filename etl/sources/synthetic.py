"""Seeded synthetic MICrONS-like dataset: the embedded default source.

**The data are synthetic: generated, not measured.** They follow the scale and layout of the
MICrONS ``minnie65_public`` functional data (56 imaging fields, ~19k co-registered functional
units on ~15k distinct cells, 4 x 4 x 40 nm voxels) so that the whole pipeline can run without
network or released files, and they carry known structure (wiring depends on distance and on
functional similarity; activity is correlated in space and by tuning) so that derived priors can
be checked for it. Same seed, same tables, byte for byte, on every machine (see *Same content on
every machine*; numpy's random streams are those of one numpy version).

Statistical model
-----------------
1. **Somata.** Cells form a homogeneous Poisson process per cortical layer in a minnie65-like box:
   x in ``volume_x_um``, z in ``volume_z_um``, y from the pia (``pia_y_um``) down 1,000 um, y
   growing with depth. Layers by depth below pia: L1 0-100 um, L2/3 100-350, L4 350-500, L5
   500-750, L6 750-1000, each with its density ``layer_density_per_mm3``. Positions are rounded
   to whole voxels (4, 4, 40 nm) and every later step uses the rounded positions.
2. **Scans and fields.** ``ceil(n_fields / fields_per_scan)`` scans; the first scans are the
   study's (session, scan_idx) = (6, 6), (5, 6), (5, 3), then others drawn from sessions 4..9 and
   scan_idx 2..7; fields are numbered 2, 4, 6, ... A scan images ``fields_per_scan`` planes at
   depths ``d0 + k * spacing`` (``d0`` in ``plane_depth_um``, spacing in ``plane_spacing_um``),
   each a ``fov_um`` field of view in x-z with a small common tilt (``plane_tilt_sd``); a centre
   may lie up to a quarter field of view from the edge of the box, the field then being clipped.
   With probability ``revisit_prob`` a scan re-images an earlier scan's site, shifted laterally
   by N(0, ``revisit_shift_um``) and in depth by N(0, ``revisit_depth_um``). A plane images the
   cells whose soma lies within ``plane_thickness_um / 2`` of it and co-registers a uniformly
   random subset of them of target size ``lo + (hi - lo) * Beta(field_size_beta)`` (``lo, hi =
   field_size_range``; all of them where fewer). Planes of different scans overlap, so a cell can
   be co-registered in several fields (~1.3 units per cell at the defaults). The union of
   co-registered cells is the ``neurons`` table.
   Unit ids are sorted random draws from a per-field block of ROI ids (unit ids grow with field
   number within a scan), assigned to the field's cells in random order.
3. **Cells.** L1 cells are inhibitory; elsewhere a cell is inhibitory with probability
   ``inhibitory_fraction``. Types by layer and class (23P, 4P, 5P-IT/ET/NP, 6P-IT/CT; BC, MC,
   BPC, NGC). Each cell has a preferred direction ``psi ~ U(0, 360)`` (orientation ``psi mod
   180``), an orientation sharpness ``kappa ~ Gamma(2, tuning_sharpness / 2)``, a direction bias
   ``delta ~ Beta(1.2, 3)``, a response gain ``g ~ stimulus_gain * LogNormal(0, 0.4)``, a base
   rate LogNormal with mean ``mean_rate_hz`` and log-SD ``rate_log_sd``, a latent coupling
   ``c ~ latent_gain * LogNormal(0, 0.3)`` and ``n_latents`` latent loadings ``L_k(x)``, smooth
   functions of soma position: random Fourier features (64 per latent) of a Gaussian process
   with squared-exponential covariance of length ``latent_length_um``, so nearby cells load
   alike and far cells independently.
4. **Activity** (per scan; planes of a scan are recorded together). Time is cut into
   ``bin_s`` bins over ``duration_s``. The stimulus is a sequence of ``stimulus_segment_s``
   segments, each a drifting direction ``phi`` out of ``n_directions`` or a blank (probability
   ``blank_fraction``). ``n_latents`` latent AR(1) processes ``z_k`` (unit variance, time
   constant ``latent_tau_s``) are shared by the scan. Unit i's rate in bin t is::

       lambda_i(t) = r_i * s_i(t) / <s_i> * exp(c_i u_i(t) - c_i^2 v_i / 2),
       s_i(t)      = 1 + g_i * exp(kappa_i (cos 2(phi - psi_i) - 1))
                           * (1 - delta_i + delta_i (1 + cos(phi - psi_i)) / 2)    (0 on blanks),
       u_i(t)      = sum_k L_ik z_k(t) / sqrt(K),   v_i = sum_k L_ik^2 / K,

   with ``r_i`` the cell's base rate times a unit factor LogNormal(0, 0.2) and ``<s_i>`` the
   time average of ``s_i``, so the mean rate stays ``r_i``. Counts are Poisson(lambda_i(t)
   bin_s); each spike is placed uniformly within its bin and times are sorted. A cell imaged in
   several fields gets independent trains per unit, driven by its own scan's stimulus and
   latents. Correlations are therefore spatially clustered (shared latents, smooth loadings) and
   functionally clustered (co-tuned cells respond to the same stimuli).
5. **Tuning table**, estimated from each unit's own counts: mean count per direction minus the
   blank mean, clipped at 0 (``R_d``); ``osi = |sum R_d e^(2i phi_d)| / sum R_d``, ``dsi = |sum
   R_d e^(i phi_d)| / sum R_d``, preferred orientation and direction the angles of those vector
   sums. Null where a unit has no stimulus-driven response. Computed exactly as stated, in
   correctly rounded arithmetic (see below).
6. **Wiring**, among all cells of the ``neurons`` table (pooled, not only field-mates), each
   ordered pair (i, j), i != j, independently::

       p_ij = p0 * exp(-d_ij^2 / (2 sigma^2)) * exp(a_ori (cos 2(theta_i - theta_j) - 1))
                 * exp(a_lat (cos(L_i, L_j) - 1)) * (b if i or j is inhibitory else 1),

   ``p0 = wiring_peak_prob``, ``sigma = wiring_sigma_um``, ``a_ori = like_to_like_orientation``,
   ``a_lat = like_to_like_latent``, ``b = inhibitory_wiring_boost``, ``cos(L_i, L_j)`` the
   cosine similarity of the latent loadings. Pairs beyond ``wiring_cutoff_sigmas * sigma`` are
   not drawn. Pairs are drawn in row blocks by thinning (a distance-only draw, then acceptance
   of the rest), so memory stays small. A connection has ``1 + min(Poisson(synapse_extra_mean),
   max_synapses - 1)`` synapses, each of LogNormal size (median ``synapse_size_median`` voxels,
   log-SD ``synapse_size_log_sd``) rounded to whole voxels (at least 1); ``sum_size`` is their
   sum.
7. **Ids.** Nucleus ids are distinct draws from 100,000..899,999 in ascending cell order; root
   ids are distinct 18-digit ``864691135xxxxxxxxx`` draws. Co-registration residuals (um) are
   Gamma(2, 2.5); scores are ``10 exp(-residual / 10)`` plus N(0, 0.5) noise, floored at 0; both
   are stored rounded to 6 decimals.

Same content on every machine
-----------------------------
The snapshot id is a hash of the stored tables, so every stored bit must be the same on every
CPU, BLAS and thread count. numpy's ``exp``, ``log``, ``sin``, ``cos`` and ``arctan2`` take
CPU-specific SIMD paths (AVX512, AVX2, baseline), BLAS kernels and thread counts change the order
and fusing (FMA) of sums in ``@``, and libm (used inside numpy's samplers) differs between
systems: all of these differ in the last bits. The four arithmetic operations, ``sqrt``, ``rint``
and ``ldexp`` are correctly rounded (IEEE 754), hence the same everywhere. So:

- **Stored floats** are computed from the seed with those operations only. Positions are whole
  voxels; spike times are uniform draws added to integer bins; the tuning table comes from
  integer counts through fixed-order sums and ``_exp`` / ``_cos_sin`` / ``_arctan2`` (this
  module's series built from correctly rounded operations, accurate to a few units in the last
  place). Values drawn through numpy's samplers, whose C code may use libm or be compiled with
  FMA elsewhere, are put on a grid: synapse sizes in whole voxels (sums of integers are exact in
  any order), co-registration residual and score rounded to 6 decimals. A last-bit difference
  (~1e-15) moves a value across a grid boundary with probability ~1e-9 or less per value; the
  grids are far below any resolution the model or its users rely on, so the model is unchanged.
- **Decisions** (a spike count, a connection, a layout draw) compare a float with an independent
  uniform draw (Bernoulli thinning, Poisson and rejection samplers) or round it to an integer.
  Such a decision changes only when the draw falls between the two versions of the float, with
  probability about the size of the difference (~1e-16). The wiring probabilities, latent
  loadings and cosines are nevertheless computed with the portable functions above (the
  distance draw only where the uniform is below ``p_max``, so the cost stays small); the rates
  of the Poisson counts (~2e8 values at full size) use numpy's fast ``exp`` / ``log`` / ``cos``
  and BLAS, and with ~1e-15 per draw the chance that any count of a full-size run differs is
  ~1e-7.
- ``tests/etl/test_synthetic.py`` regenerates in child processes with numpy's AVX512 and AVX2
  paths disabled (``NPY_DISABLE_CPU_FEATURES``), other OpenBLAS kernels (``OPENBLAS_CORETYPE``)
  and 1 or 2 threads, compares the content hashes, and pins the full default's snapshot id.

The defaults give 56 fields of ~60-630 units (mean ~340), ~19k units on ~15k cells, ~17M spikes,
~175k connections, and ~300 connections among the cells of a 312-unit field, whose connected pairs
lie ~95 um apart against ~270 um for all pairs.

Example
-------
>>> from connectome_priors.etl.sources.synthetic import SyntheticConfig, generate
>>> result = generate(SyntheticConfig(seed=1, n_fields=2, duration_s=30.0))
>>> sorted(result.tables)
['connections', 'functional_units', 'neurons', 'spikes', 'tuning']
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from ..contracts import arrow_schema
from ..tables import SourceTables

__all__ = ["SyntheticConfig", "VOXEL_SIZE_NM", "generate"]

#: Voxel size (x, y, z) of the synthetic volume in nm, as minnie65.
VOXEL_SIZE_NM: tuple[float, float, float] = (4.0, 4.0, 40.0)

_LAYERS = ("L1", "L2/3", "L4", "L5", "L6")
_LAYER_TOP_UM = (0.0, 100.0, 350.0, 500.0, 750.0, 1000.0)
#: (types, probabilities) per layer; L1 cells are all inhibitory neurogliaform cells.
_EXCITATORY_TYPES = ((), (("23P",), (1.0,)), (("4P",), (1.0,)),
                     (("5P-IT", "5P-ET", "5P-NP"), (0.6, 0.25, 0.15)),
                     (("6P-IT", "6P-CT"), (0.5, 0.5)))
_INHIBITORY_TYPES = (("BC", "MC", "BPC", "NGC"), (0.45, 0.3, 0.15, 0.1))
_L1_TYPE = "NGC"
_STUDY_SCANS = ((6, 6), (5, 6), (5, 3))
_SESSIONS = range(4, 10)
_SCAN_IDX = range(2, 8)
_ROOT_BASE = 864691135_000_000_000
_N_FOURIER = 64
_WIRING_BLOCK = 512
_STORED_DECIMALS = 6
"""Decimals kept of the stored floats drawn through numpy's samplers (residual, score)."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic generator; the defaults give the MICrONS minnie65 scale."""

    seed: int = 0
    """Seed of every random draw: same seed, same tables."""
    n_fields: int = 56
    """Number of imaging fields (planes) over all scans."""
    fields_per_scan: int = 4
    """Planes recorded together in one scan (they share stimulus and latent time courses)."""
    volume_x_um: tuple[float, float] = (432.0, 1540.0)
    """Soma x range in um (minnie65 voxels 108k..385k at 4 nm)."""
    volume_z_um: tuple[float, float] = (596.0, 1108.0)
    """Soma z range in um (sections 14.9k..27.7k at 40 nm)."""
    pia_y_um: float = 340.0
    """y of the pia in um (voxel 85k at 4 nm); depth below the pia grows with y."""
    layer_density_per_mm3: tuple[float, float, float, float, float] = (
        20000.0, 160000.0, 190000.0, 130000.0, 130000.0)
    """Soma density of L1, L2/3, L4, L5 and L6 in cells per mm^3."""
    inhibitory_fraction: float = 0.13
    """Probability that a cell below L1 is inhibitory (L1 cells all are)."""
    fov_um: tuple[float, float] = (600.0, 500.0)
    """Field of view of an imaging plane in um along x and z."""
    plane_thickness_um: float = 20.0
    """Thickness of the slab of somata an imaging plane records, in um."""
    plane_depth_um: tuple[float, float] = (80.0, 640.0)
    """Range of plane depths below the pia in um."""
    plane_spacing_um: tuple[float, float] = (40.0, 80.0)
    """Range of the depth step between consecutive planes of a scan in um."""
    plane_tilt_sd: float = 0.03
    """SD of a scan's plane slope along x and along z (um of depth per um)."""
    revisit_prob: float = 0.1
    """Probability that a scan re-images an earlier scan's site (same cells, new units)."""
    revisit_shift_um: float = 40.0
    """SD of a revisit's lateral (x and z) offset in um."""
    revisit_depth_um: float = 4.0
    """SD of a revisit's depth offset in um."""
    field_size_range: tuple[int, int] = (42, 632)
    """Smallest and largest number of co-registered units a field aims at."""
    field_size_beta: tuple[float, float] = (2.0, 2.0)
    """Beta(a, b) of a field's target size within field_size_range."""
    duration_s: float = 900.0
    """Recording length of every scan in s."""
    bin_s: float = 0.1
    """Time bin of the rate model in s."""
    mean_rate_hz: float = 1.0
    """Mean firing rate over cells in Hz."""
    rate_log_sd: float = 0.6
    """SD of the natural log of the cells' base rates."""
    n_directions: int = 16
    """Number of stimulus drift directions, evenly spaced over 360 degrees."""
    stimulus_segment_s: float = 1.0
    """Duration of one stimulus segment (one direction or a blank) in s."""
    blank_fraction: float = 0.2
    """Probability that a stimulus segment is blank."""
    stimulus_gain: float = 2.0
    """Typical response at the preferred direction, relative to the baseline rate."""
    tuning_sharpness: float = 2.0
    """Mean von Mises concentration of the orientation tuning curves."""
    n_latents: int = 4
    """Number of shared latent AR(1) processes per scan."""
    latent_tau_s: float = 2.0
    """Time constant of the latent processes in s."""
    latent_length_um: float = 150.0
    """Spatial correlation length of the latent loadings in um."""
    latent_gain: float = 0.7
    """Typical coupling of a cell's log rate to its latent drive."""
    wiring_sigma_um: float = 90.0
    """SD of the Gaussian fall-off of connection probability with soma distance in um."""
    wiring_cutoff_sigmas: float = 3.5
    """Pairs farther apart than this many wiring_sigma_um are never connected."""
    wiring_peak_prob: float = 0.032
    """Connection probability of two co-located, identically tuned excitatory cells."""
    like_to_like_orientation: float = 0.5
    """Concentration of the preference for similar preferred orientation in wiring."""
    like_to_like_latent: float = 0.75
    """Concentration of the preference for similar latent loadings in wiring."""
    inhibitory_wiring_boost: float = 2.0
    """Factor on the connection probability of pairs that include an inhibitory cell."""
    synapse_extra_mean: float = 0.6
    """Mean number of synapses beyond the first in a connection (Poisson)."""
    max_synapses: int = 10
    """Largest number of synapses in one connection."""
    synapse_size_median: float = 4000.0
    """Median synapse size in voxels."""
    synapse_size_log_sd: float = 0.8
    """SD of the natural log of synapse sizes."""

    def __post_init__(self) -> None:
        n_scans = math.ceil(self.n_fields / max(self.fields_per_scan, 1))
        checks = (
            (self.n_fields >= 1 and self.fields_per_scan >= 1, "n_fields and fields_per_scan must be >= 1"),
            (n_scans <= len(_SESSIONS) * len(_SCAN_IDX),
             f"{n_scans} scans needed but only {len(_SESSIONS) * len(_SCAN_IDX)} (session, scan_idx) "
             "pairs exist; raise fields_per_scan or lower n_fields"),
            (self.fov_um[0] <= self.volume_x_um[1] - self.volume_x_um[0]
             and self.fov_um[1] <= self.volume_z_um[1] - self.volume_z_um[0],
             "fov_um must fit inside volume_x_um x volume_z_um"),
            (self.duration_s >= self.bin_s > 0, "need duration_s >= bin_s > 0"),
            (self.n_directions >= 2 and self.n_latents >= 1, "need n_directions >= 2 and n_latents >= 1"),
            (0 < self.wiring_peak_prob * max(self.inhibitory_wiring_boost, 1.0) <= 1,
             "wiring_peak_prob * inhibitory_wiring_boost must be in (0, 1]"),
            (self.max_synapses >= 1, "max_synapses must be >= 1"),
            (0 <= self.revisit_prob <= 1 and 0 <= self.blank_fraction < 1
             and 0 <= self.inhibitory_fraction <= 1, "probabilities must lie in [0, 1]"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid SyntheticConfig: {message}")


@dataclass(frozen=True)
class _Fields:
    """Imaging layout: one entry per field, plus the field's cells as pool indices."""

    session: np.ndarray
    scan_idx: np.ndarray
    field: np.ndarray
    scan: np.ndarray
    """Index of the field's scan (fields of a scan are contiguous)."""
    cells: list[np.ndarray]
    """Pool indices of each field's co-registered cells, in unit order."""
    unit_id: list[np.ndarray]
    """Unit ids of each field's cells, ascending."""


def generate(config: SyntheticConfig = SyntheticConfig(), *, progress: bool = False) -> SourceTables:
    """Generate a seeded, synthetic MICrONS-like dataset.

    Parameters
    ----------
    config
        Generator parameters; see :class:`SyntheticConfig` and the module docstring for the model.
    progress
        Show a progress bar over the generation steps (does not change the result).

    Returns
    -------
    SourceTables
        ``neurons``, ``functional_units``, ``connections``, ``spikes`` and ``tuning`` with exactly
        their contracts' columns, ``parameters`` (the config, voxel size, ``synthetic: True``) and
        a ``report`` of summary numbers.

    Examples
    --------
    >>> st = generate(SyntheticConfig(seed=3, n_fields=1, duration_s=20.0))
    >>> st.tables["functional_units"].num_rows == st.tables["spikes"].num_rows
    True
    """
    cfg = config
    seqs = np.random.SeedSequence(cfg.seed).spawn(6)
    rng_pool, rng_layout, rng_cells, rng_wiring, rng_ids = (np.random.default_rng(q) for q in seqs[:5])
    pos_um, layer = _soma_pool(cfg, rng_pool)
    fields = _layout(cfg, pos_um, rng_layout)
    pool_idx = np.unique(np.concatenate(fields.cells))
    cells = _cell_properties(cfg, pos_um[pool_idx], layer[pool_idx], rng_cells)
    unit_cell = [np.searchsorted(pool_idx, c) for c in fields.cells]
    n_blocks = math.ceil(len(pool_idx) / _WIRING_BLOCK)
    bar = tqdm(total=len(unit_cell) + n_blocks + 1, desc="synthetic", unit="step", disable=not progress)
    with bar:
        activity = _activity(cfg, fields, unit_cell, cells, seqs[5], bar)
        pre, post = _wire(cfg, cells, rng_wiring, bar)
        tables = _tables(cfg, fields, unit_cell, cells, activity, pre, post, rng_ids)
        bar.update(1)
    report = _report(cfg, fields, unit_cell, cells, activity, tables, pre, post)
    parameters = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    parameters.update(voxel_size_nm=list(VOXEL_SIZE_NM), synthetic=True)
    origin = f"synthetic generator (seed {cfg.seed})"
    return SourceTables(source="synthetic", tables=tables, parameters=parameters, report=report,
                        origins={name: origin for name in tables})


def _soma_pool(cfg: SyntheticConfig, rng: np.random.Generator):
    """Somata of the whole box: positions (um, rounded to whole voxels) and layer index."""
    (x0, x1), (z0, z1) = cfg.volume_x_um, cfg.volume_z_um
    parts, layers = [], []
    for k, density in enumerate(cfg.layer_density_per_mm3):
        top, bottom = _LAYER_TOP_UM[k], _LAYER_TOP_UM[k + 1]
        n = rng.poisson(density * (x1 - x0) * (z1 - z0) * (bottom - top) * 1e-9)
        lo = np.array([x0, cfg.pia_y_um + top, z0])
        hi = np.array([x1, cfg.pia_y_um + bottom, z1])
        parts.append(lo + (hi - lo) * rng.random((n, 3)))
        layers.append(np.full(n, k, dtype=np.int8))
    vox_um = np.asarray(VOXEL_SIZE_NM) / 1000.0
    pos = np.round(np.concatenate(parts) / vox_um) * vox_um
    return pos, np.concatenate(layers)


def _scan_ids(n_scans: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(session, scan_idx) of each scan: the study's scans first, then random others; sorted."""
    others = [(s, i) for s in _SESSIONS for i in _SCAN_IDX if (s, i) not in _STUDY_SCANS]
    picked = list(_STUDY_SCANS[:n_scans])
    extra = n_scans - len(picked)
    if extra > 0:
        picked += [others[j] for j in rng.choice(len(others), size=extra, replace=False)]
    return sorted(picked)


def _layout(cfg: SyntheticConfig, pos: np.ndarray, rng: np.random.Generator) -> _Fields:
    """Place scans and planes, select each plane's co-registered cells, give them unit ids."""
    n_scans = math.ceil(cfg.n_fields / cfg.fields_per_scan)
    (x0, x1), (z0, z1) = cfg.volume_x_um, cfg.volume_z_um
    half_w, half_h = cfg.fov_um[0] / 2, cfg.fov_um[1] / 2
    # centres may sit up to a quarter field of view beyond the edge of the box: the field is clipped
    cx_lim, cz_lim = (x0 + half_w / 2, x1 - half_w / 2), (z0 + half_h / 2, z1 - half_h / 2)
    depth = pos[:, 1] - cfg.pia_y_um
    session, scan_idx, field, scan, cells, unit_ids = [], [], [], [], [], []
    sites: list[tuple[float, float, float, float, float, float]] = []
    for s, (ses, idx) in enumerate(_scan_ids(n_scans, rng)):
        n_planes = min(cfg.fields_per_scan, cfg.n_fields - s * cfg.fields_per_scan)
        if sites and rng.random() < cfg.revisit_prob:
            cx, cz, d0, step, tx, tz = sites[rng.integers(len(sites))]
            cx = float(np.clip(cx + rng.normal(0, cfg.revisit_shift_um), *cx_lim))
            cz = float(np.clip(cz + rng.normal(0, cfg.revisit_shift_um), *cz_lim))
            d0 = d0 + rng.normal(0, cfg.revisit_depth_um)
        else:
            cx, cz = rng.uniform(*cx_lim), rng.uniform(*cz_lim)
            step = rng.uniform(*cfg.plane_spacing_um)
            top = cfg.plane_depth_um[1] - (cfg.fields_per_scan - 1) * step
            d0 = rng.uniform(cfg.plane_depth_um[0], max(top, cfg.plane_depth_um[0]))
            tx, tz = rng.normal(0, cfg.plane_tilt_sd, size=2)
        sites.append((cx, cz, d0, step, tx, tz))
        inside = (np.abs(pos[:, 0] - cx) <= half_w) & (np.abs(pos[:, 2] - cz) <= half_h)
        roi_start = 0
        for k in range(n_planes):
            plane = d0 + k * step + tx * (pos[:, 0] - cx) + tz * (pos[:, 2] - cz)
            lo, hi = cfg.field_size_range
            target = int(round(lo + (hi - lo) * rng.beta(*cfg.field_size_beta)))
            hit = np.flatnonzero(inside & (np.abs(depth - plane) <= cfg.plane_thickness_um / 2))
            members = rng.choice(hit, size=min(target, len(hit)), replace=False)
            n_rois = int(math.ceil(len(members) / rng.uniform(0.2, 0.5))) + 1
            ids = roi_start + 1 + np.sort(rng.choice(n_rois, size=len(members), replace=False))
            roi_start += n_rois
            session.append(ses)
            scan_idx.append(idx)
            field.append(2 * (k + 1))
            scan.append(s)
            cells.append(members)
            unit_ids.append(ids.astype(np.int64))
    return _Fields(np.array(session, np.int64), np.array(scan_idx, np.int64), np.array(field, np.int64),
                   np.array(scan, np.int64), cells, unit_ids)


def _cell_properties(cfg: SyntheticConfig, pos: np.ndarray, layer: np.ndarray,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Class, type, tuning, rates and latent loadings of the co-registered cells."""
    n = len(pos)
    inhibitory = (layer == 0) | (rng.random(n) < cfg.inhibitory_fraction)
    cell_type = np.full(n, _L1_TYPE, dtype=object)
    groups = [((layer == k) & ~inhibitory, types) for k, types in enumerate(_EXCITATORY_TYPES) if types]
    for sel, (names, probs) in groups + [(inhibitory & (layer > 0), _INHIBITORY_TYPES)]:
        cell_type[sel] = np.asarray(names, dtype=object)[rng.choice(len(names), size=int(sel.sum()), p=probs)]
    # latent loadings: random Fourier features of a GP with squared-exponential covariance
    omega = rng.normal(0.0, 1.0 / cfg.latent_length_um, size=(cfg.n_latents, _N_FOURIER, 3))
    phase = rng.uniform(0.0, 2 * np.pi, size=(cfg.n_latents, _N_FOURIER))
    weight = rng.normal(size=(cfg.n_latents, _N_FOURIER))
    centre = [math.fsum(pos[:, a]) / max(n, 1) for a in range(3)]
    centred = [pos[:, a] - centre[a] for a in range(3)]
    loadings = np.zeros((n, cfg.n_latents))  # (cells, latents)
    for k in range(cfg.n_latents):
        # explicit sums in a fixed order (no BLAS) and _cos_sin: the same bits on every machine
        arg = centred[0][:, None] * omega[k, :, 0] + centred[1][:, None] * omega[k, :, 1] \
            + centred[2][:, None] * omega[k, :, 2] + phase[k]  # (cells, features)
        features = _cos_sin(arg)[0]
        for f in range(_N_FOURIER):
            loadings[:, k] += features[:, f] * weight[k, f]
        loadings[:, k] *= math.sqrt(2.0 / _N_FOURIER)
    log_sd = cfg.rate_log_sd
    return {
        "pos": pos,
        "layer": layer,
        "inhibitory": inhibitory,
        "cell_type": cell_type,
        "pref_dir": rng.uniform(0.0, 2 * np.pi, n),
        "kappa": rng.gamma(2.0, cfg.tuning_sharpness / 2.0, n),
        "dir_bias": rng.beta(1.2, 3.0, n),
        "gain": cfg.stimulus_gain * rng.lognormal(0.0, 0.4, n),
        "rate": rng.lognormal(math.log(cfg.mean_rate_hz) - log_sd ** 2 / 2, log_sd, n),
        "coupling": cfg.latent_gain * rng.lognormal(0.0, 0.3, n),
        "loadings": loadings,
    }


def _scan_drive(cfg: SyntheticConfig, n_bins: int, rng: np.random.Generator):
    """Stimulus code per bin (direction index, n_directions = blank) and latents (K, bins)."""
    seg = max(1, round(cfg.stimulus_segment_s / cfg.bin_s))
    n_seg = math.ceil(n_bins / seg)
    code = rng.integers(cfg.n_directions, size=n_seg)
    code[rng.random(n_seg) < cfg.blank_fraction] = cfg.n_directions
    stim = np.repeat(code, seg)[:n_bins]
    a = math.exp(-cfg.bin_s / cfg.latent_tau_s)
    noise = rng.standard_normal((cfg.n_latents, n_bins))
    latents = np.empty_like(noise)  # (latents, bins), unit variance
    latents[:, 0] = noise[:, 0]
    if n_bins > 1:
        from scipy.signal import lfilter  # scipy.signal costs ~1.4 s to import

        latents[:, 1:], _ = lfilter([math.sqrt(1 - a * a)], [1.0, -a], noise[:, 1:], axis=1,
                                    zi=a * noise[:, :1])
    return stim, latents


def _activity(cfg: SyntheticConfig, fields: _Fields, unit_cell: list[np.ndarray], cells: dict,
              ss: np.random.SeedSequence, bar) -> dict[str, np.ndarray]:
    """Spike trains and tuning estimates of every unit, field by field."""
    n_bins = max(1, round(cfg.duration_s / cfg.bin_s))
    n_scans = int(fields.scan.max()) + 1
    scan_seqs = ss.spawn(n_scans)
    angles = 2 * np.pi * np.arange(cfg.n_directions) / cfg.n_directions
    times, counts, tuning = [], [], []
    drive = None
    for f, members in enumerate(unit_cell):
        s = int(fields.scan[f])
        if drive is None or drive[0] != s:
            drive_rng, *field_rngs = [np.random.default_rng(q) for q in
                                      scan_seqs[s].spawn(1 + cfg.fields_per_scan)]
            drive = (s, *_scan_drive(cfg, n_bins, drive_rng), field_rngs)
        _, stim, latents, field_rngs = drive
        rng = field_rngs[int(fields.field[f]) // 2 - 1]
        spike_counts = _field_counts(cfg, members, cells, stim, latents, angles, rng)
        tuning.append(_tuning(spike_counts, stim, cfg.n_directions))
        t, n = _spike_times(spike_counts, cfg.bin_s, rng)
        times.append(t)
        counts.append(n)
        bar.update(1)
    return {"times": np.concatenate(times), "n_spikes": np.concatenate(counts),
            "tuning": np.concatenate(tuning, axis=0)}


def _field_counts(cfg: SyntheticConfig, members: np.ndarray, cells: dict, stim: np.ndarray,
                  latents: np.ndarray, angles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson spike counts (units, bins) of one field's units."""
    n_units = len(members)
    psi = cells["pref_dir"][members, None]
    delta = cells["dir_bias"][members, None]
    curve = np.exp(cells["kappa"][members, None] * (np.cos(2 * (angles - psi)) - 1)) \
        * (1 - delta + delta * (1 + np.cos(angles - psi)) / 2)  # (units, directions)
    response = np.concatenate([curve, np.zeros((n_units, 1))], axis=1) * cells["gain"][members, None]
    occupancy = np.bincount(stim, minlength=cfg.n_directions + 1) / len(stim)
    mean_drive = 1.0 + response @ occupancy
    loadings = cells["loadings"][members]
    coupling = cells["coupling"][members]
    var = (loadings ** 2).sum(axis=1) / cfg.n_latents
    rate = cells["rate"][members] * rng.lognormal(0.0, 0.2, n_units)
    log_scale = np.log(rate * cfg.bin_s / mean_drive) - coupling ** 2 * var / 2
    shared = np.zeros((n_units, len(stim)))  # (units, bins)
    for k in range(cfg.n_latents):
        shared += loadings[:, k, None] * latents[k]
    shared *= coupling[:, None] / math.sqrt(cfg.n_latents)
    shared += log_scale[:, None]
    lam = np.exp(shared, out=shared)
    lam *= 1.0 + response[:, stim]
    return rng.poisson(lam)


def _tuning(counts: np.ndarray, stim: np.ndarray, n_dir: int) -> np.ndarray:
    """Vector-sum tuning (pref_ori_deg, pref_dir_deg, osi, dsi) per unit; NaN where undriven.

    Stored as computed, so computed with correctly rounded operations only (see _exp): the same
    bits on every machine.
    """
    onehot = (stim[:, None] == np.arange(n_dir + 1)).astype(np.float64)
    sums = counts.astype(np.float64) @ onehot  # exact in any order: integer sums < 2**53
    n_bins = onehot.sum(axis=0)  # exact: integers
    mean = np.divide(sums, n_bins, out=np.zeros_like(sums), where=n_bins > 0)
    shown = n_bins[:n_dir] > 0
    resp = np.clip(mean[:, :n_dir] - mean[:, n_dir:], 0.0, None) * shown
    angles = 2 * np.pi * np.arange(n_dir) / n_dir
    cos1, sin1 = _cos_sin(angles)
    cos2, sin2 = _cos_sin(2 * angles)
    total, re1, im1, re2, im2 = np.zeros((5, len(resp)))
    for d in range(n_dir):  # vector sums in a fixed order (no BLAS, no pairwise reduction)
        r = resp[:, d]
        total += r
        re1 += r * cos1[d]
        im1 += r * sin1[d]
        re2 += r * cos2[d]
        im2 += r * sin2[d]
    with np.errstate(invalid="ignore", divide="ignore"):
        osi = np.minimum(np.sqrt(re2 * re2 + im2 * im2) / total, 1.0)
        dsi = np.minimum(np.sqrt(re1 * re1 + im1 * im1) / total, 1.0)
    ori = np.mod(_arctan2(im2, re2) * (90.0 / math.pi), 180.0)
    direction = np.mod(_arctan2(im1, re1) * (180.0 / math.pi), 360.0)
    ori[ori >= 180.0] = 0.0
    direction[direction >= 360.0] = 0.0
    out = np.stack([ori, direction, osi, dsi], axis=1)
    out[total <= 0] = np.nan
    return out


def _spike_times(counts: np.ndarray, bin_s: float, rng: np.random.Generator):
    """Spike times (flat, unit-major, ascending within unit) and spikes per unit."""
    unit, b = np.nonzero(counts)
    k = counts[unit, b]
    unit, b = np.repeat(unit, k), np.repeat(b, k)
    base = unit.astype(np.float64) * counts.shape[1]
    key = np.sort(base + b + rng.random(len(b)))  # stays within each unit's [base, base + bins)
    return (key - base) * bin_s, counts.sum(axis=1)


def _wire(cfg: SyntheticConfig, cells: dict, rng: np.random.Generator, bar) -> tuple[np.ndarray, np.ndarray]:
    """Directed connections (pre, post cell indices) drawn in row blocks by thinning."""
    pos = cells["pos"]
    order = np.argsort(pos[:, 0], kind="stable")
    xs, ys, zs = (np.ascontiguousarray(pos[order, k]) for k in range(3))
    theta = np.mod(cells["pref_dir"][order], np.pi)
    load = cells["loadings"][order]
    norm = np.zeros(len(load))
    for k in range(load.shape[1]):  # fixed order, no BLAS: the same bits on every machine
        norm += load[:, k] * load[:, k]
    load = load / np.maximum(np.sqrt(norm), 1e-12)[:, None]
    inhib = cells["inhibitory"][order]
    boost = max(cfg.inhibitory_wiring_boost, 1.0)
    p_max = cfg.wiring_peak_prob * boost
    radius = cfg.wiring_cutoff_sigmas * cfg.wiring_sigma_um
    inv2s2 = 1.0 / (2 * cfg.wiring_sigma_um ** 2)
    pres, posts = [], []
    for i0 in range(0, len(xs), _WIRING_BLOCK):
        i1 = min(i0 + _WIRING_BLOCK, len(xs))
        j0 = int(np.searchsorted(xs, xs[i0] - radius, "left"))
        j1 = int(np.searchsorted(xs, xs[i1 - 1] + radius, "right"))
        d2 = np.square(xs[i0:i1, None] - xs[None, j0:j1])  # (rows, cols)
        d2 += np.square(ys[i0:i1, None] - ys[None, j0:j1])
        d2 += np.square(zs[i0:i1, None] - zs[None, j0:j1])
        rows = np.arange(i0, i1)
        d2[rows - i0, rows - j0] = np.inf  # no self-connections
        r, c = np.nonzero(d2 < radius * radius)
        u = rng.random(len(r))
        near = np.flatnonzero(u < p_max)  # u < p_max e^(-d2 / 2 s^2) needs u < p_max: few _exp calls
        keep = near[u[near] < p_max * _exp(-d2[r[near], c[near]] * inv2s2)]
        pre, post = r[keep] + i0, c[keep] + j0
        cos_lat = np.zeros(len(pre))
        for k in range(load.shape[1]):
            cos_lat += load[pre, k] * load[post, k]
        like = _exp(cfg.like_to_like_orientation * (_cos_sin(2 * (theta[pre] - theta[post]))[0] - 1)
                    + cfg.like_to_like_latent * (cos_lat - 1))
        like *= np.where(inhib[pre] | inhib[post], boost, 1.0) / boost
        accept = rng.random(len(pre)) < like
        pres.append(order[pre[accept]])
        posts.append(order[post[accept]])
        bar.update(1)
    if not pres:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(pres), np.concatenate(posts)


def _tables(cfg: SyntheticConfig, fields: _Fields, unit_cell: list[np.ndarray], cells: dict,
            activity: dict, pre: np.ndarray, post: np.ndarray, rng: np.random.Generator):
    """Assemble the five contract tables (rows in key order)."""
    n = len(cells["pos"])
    nucleus = np.sort(100_000 + rng.choice(800_000, size=n, replace=False)).astype(np.int64)
    root = (_ROOT_BASE + rng.choice(1_000_000_000, size=n, replace=False)).astype(np.int64)
    vox = np.round(cells["pos"] / (np.asarray(VOXEL_SIZE_NM) / 1000.0))
    cls = np.where(cells["inhibitory"], "inhibitory", "excitatory")
    neurons = _table("neurons", {
        "nucleus_id": nucleus, "root_id": root,
        "x_vox": vox[:, 0], "y_vox": vox[:, 1], "z_vox": vox[:, 2],
        "x_nm": vox[:, 0] * VOXEL_SIZE_NM[0], "y_nm": vox[:, 1] * VOXEL_SIZE_NM[1],
        "z_nm": vox[:, 2] * VOXEL_SIZE_NM[2],
        "cell_type": cells["cell_type"], "cell_class": cls,
        "layer": np.asarray(_LAYERS, dtype=object)[cells["layer"]],
    })
    sizes = np.array([len(c) for c in unit_cell])
    cell = np.concatenate(unit_cell)
    residual = np.round(rng.gamma(2.0, 2.5, len(cell)), _STORED_DECIMALS)
    score = np.maximum(10.0 * _exp(-residual / 10.0) + rng.normal(0.0, 0.5, len(cell)), 0.0)
    score = np.round(score, _STORED_DECIMALS)
    keys = {"session": np.repeat(fields.session, sizes), "scan_idx": np.repeat(fields.scan_idx, sizes)}
    field = np.repeat(fields.field, sizes)
    unit_id = np.concatenate(fields.unit_id)
    units = _table("functional_units", {**keys, "field": field, "unit_id": unit_id,
                                        "nucleus_id": nucleus[cell], "root_id": root[cell],
                                        "score": score, "residual": residual})
    offsets = np.concatenate([[0], np.cumsum(activity["n_spikes"])]).astype(np.int32)
    spike_times = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(activity["times"]),
                                           type=pa.list_(pa.float64()))
    spikes = _table("spikes", {**keys, "field": field, "unit_id": unit_id,
                               "n_spikes": activity["n_spikes"].astype(np.int64), "spike_times": spike_times})
    tun = activity["tuning"]
    tuning = _table("tuning", {**keys, "unit_id": unit_id, "pref_ori_deg": tun[:, 0],
                               "pref_dir_deg": tun[:, 1], "osi": tun[:, 2], "dsi": tun[:, 3]})
    srt = np.lexsort((nucleus[post], nucleus[pre]))
    n_syn = 1 + np.minimum(rng.poisson(cfg.synapse_extra_mean, len(srt)), cfg.max_synapses - 1)
    z = rng.standard_normal(int(n_syn.sum()))
    # LogNormal sizes in whole voxels, so sums are exact integers in any order
    syn_size = np.maximum(np.rint(cfg.synapse_size_median * _exp(cfg.synapse_size_log_sd * z)), 1.0)
    starts = np.concatenate([[0], np.cumsum(n_syn)[:-1]])
    sum_size = np.add.reduceat(syn_size, starts) if len(srt) else np.zeros(0)
    connections = _table("connections", {"pre_nucleus_id": nucleus[pre[srt]],
                                         "post_nucleus_id": nucleus[post[srt]],
                                         "n_synapses": n_syn.astype(np.int64), "sum_size": sum_size})
    tables = {"neurons": neurons, "functional_units": units, "connections": connections,
              "spikes": spikes, "tuning": tuning}
    return tables


def _table(name: str, columns: dict) -> pa.Table:
    """Arrow table with exactly the contract's columns and types (NaN floats become nulls)."""
    schema = arrow_schema(name)
    arrays = []
    for fld in schema:
        values = columns[fld.name]
        if isinstance(values, pa.Array):
            arrays.append(values)
        elif pa.types.is_floating(fld.type):
            values = np.asarray(values, dtype=np.float64)
            arrays.append(pa.array(values, fld.type, mask=np.isnan(values)))
        else:
            arrays.append(pa.array(values, fld.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _report(cfg: SyntheticConfig, fields: _Fields, unit_cell: list[np.ndarray], cells: dict,
            activity: dict, tables: dict, pre: np.ndarray, post: np.ndarray) -> dict:
    """Summary numbers: counts, field sizes, rates and within-field wiring statistics."""
    pos = cells["pos"]
    slot = np.full(len(pos), -1)
    n_conn = n_pairs = 0
    sum_conn_d = sum_pair_d = 0.0
    for members in unit_cell:
        slot[members] = np.arange(len(members))
        both = (slot[pre] >= 0) & (slot[post] >= 0)
        n_conn += int(both.sum())
        sum_conn_d += float(np.linalg.norm(pos[pre[both]] - pos[post[both]], axis=1).sum())
        p = pos[members]
        d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(axis=-1))
        n_pairs += len(members) * (len(members) - 1)
        sum_pair_d += float(d.sum())
        slot[members] = -1
    sizes = np.array([len(c) for c in unit_cell])
    n_spikes = int(activity["n_spikes"].sum())
    n_units = int(sizes.sum())
    return {
        "synthetic": True,
        "n_scans": int(fields.scan.max()) + 1,
        "n_fields": len(sizes),
        "n_neurons": len(pos),
        "n_units": n_units,
        "units_per_neuron": n_units / max(len(pos), 1),
        "field_size_min": int(sizes.min()),
        "field_size_mean": float(sizes.mean()),
        "field_size_max": int(sizes.max()),
        "excitatory_fraction": float(1 - cells["inhibitory"].mean()),
        "n_connections": tables["connections"].num_rows,
        "n_synapses": int(np.asarray(tables["connections"].column("n_synapses")).sum()),
        "n_spikes": n_spikes,
        "mean_rate_hz": n_spikes / max(n_units, 1) / cfg.duration_s,
        "within_field_connections": n_conn,
        "within_field_connection_prob": n_conn / max(n_pairs, 1),
        "within_field_mean_connected_distance_um": sum_conn_d / max(n_conn, 1),
        "within_field_mean_pair_distance_um": sum_pair_d / max(n_pairs, 1),
    }


# Elementary functions with the same bits on every machine. numpy's exp, log, sin, cos and arctan2
# take CPU-specific SIMD paths (AVX512, AVX2, baseline) and libm differs between systems; their
# results differ in the last bits. The four arithmetic operations, sqrt, rint and ldexp are
# correctly rounded (IEEE 754), hence identical everywhere, and numpy never fuses them into an FMA
# across ufunc calls; these functions use nothing else (accuracy: a few units in the last place).

_LN2_HI = 6.93147180369123816490e-01  # ln 2 = _LN2_HI + _LN2_LO, k * _LN2_HI exact for |k| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_EXP_TAYLOR = tuple(1.0 / math.factorial(j) for j in range(15))  # |r| <= ln(2)/2: error < 1e-19
_PIO2 = (1.57079632673412561417e+00, 6.07710050630396597660e-11,  # pi/2 in three 33-bit parts
         2.02226624871116645580e-21)
_SIN_TAYLOR = tuple((-1) ** j / math.factorial(2 * j + 1) for j in range(11))  # |r| <= pi/4
_COS_TAYLOR = tuple((-1) ** j / math.factorial(2 * j) for j in range(12))
_ATAN_TAYLOR = tuple((-1) ** j / (2 * j + 1) for j in range(15))  # |t| <= tan(pi/16)
_TAN_PI_8 = 0.41421356237309503


def _horner(coefficients: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    """sum_j coefficients[j] * x**j by Horner's rule."""
    out = np.full_like(x, coefficients[-1])
    for c in coefficients[-2::-1]:
        out *= x
        out += c
    return out


def _exp(x) -> np.ndarray:
    """e**x, the same bits on every machine (x clipped to [-745, 709])."""
    x = np.clip(np.asarray(x, dtype=np.float64), -745.0, 709.0)
    k = np.rint(x * (1.0 / _LN2_HI))
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= ln(2)/2 (+ rounding)
    return np.ldexp(_horner(_EXP_TAYLOR, r), k.astype(np.int64))


def _cos_sin(x) -> tuple[np.ndarray, np.ndarray]:
    """(cos x, sin x), the same bits on every machine (accurate for |x| < 1e6)."""
    x = np.asarray(x, dtype=np.float64)
    k = np.rint(x * (2.0 / math.pi))
    r = ((x - k * _PIO2[0]) - k * _PIO2[1]) - k * _PIO2[2]  # |r| <= pi/4 (+ rounding)
    r2 = r * r
    c = _horner(_COS_TAYLOR, r2)
    s = _horner(_SIN_TAYLOR, r2) * r
    q = np.mod(k, 4.0)
    cos = np.where(q == 0, c, np.where(q == 1, -s, np.where(q == 2, -c, s)))
    sin = np.where(q == 0, s, np.where(q == 1, c, np.where(q == 2, -s, -c)))
    return cos, sin


def _arctan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Angle of (x, y) in (-pi, pi], the same bits on every machine; 0 at the origin."""
    ax, ay = np.abs(x), np.abs(y)
    swap = ay > ax
    num, den = np.where(swap, ax, ay), np.where(swap, ay, ax)
    t = np.divide(num, den, out=np.zeros_like(num), where=den > 0)  # [0, 1]
    big = t > _TAN_PI_8
    t = np.where(big, (t - 1.0) / (t + 1.0), t)  # |t| <= tan(pi/8): atan t = pi/4 + atan t'
    t = t / (1.0 + np.sqrt(1.0 + t * t))  # half angle: |t| <= tan(pi/16)
    a = 2.0 * t * _horner(_ATAN_TAYLOR, t * t)
    a = np.where(big, a + math.pi / 4, a)
    a = np.where(swap, math.pi / 2 - a, a)
    a = np.where(x < 0, math.pi - a, a)
    return np.where(y < 0, -a, a)
