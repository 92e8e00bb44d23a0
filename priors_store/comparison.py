"""Compare two builds of one recipe kind by kind, within the tolerances a rebuild must meet.

Floating-point results differ in their last bits between CPUs, BLAS builds and thread counts, so
a rebuild (:func:`~.verification.verify_rebuild`) or a second build of a published version
(:class:`~.writer.ArtifactWriter`) is checked against the published files with
:func:`compare_builds`: integer kinds and the neuron table exactly, float kinds within
:data:`FLOAT_RTOL` and :data:`FLOAT_ATOL`, the kinds in :data:`NORM_TOLERANCES` by a relative
Frobenius difference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .manifest import MANIFEST, NEURONS

__all__ = ["FLOAT_ATOL", "FLOAT_RTOL", "NORM_TOLERANCES", "KindComparison", "compare_builds"]

#: Tolerances of :func:`compare_builds` for float kinds: ``|a - b| <= FLOAT_ATOL + FLOAT_RTOL * |b|``
#: elementwise (NaN only where the other has NaN). Integer kinds, labels and the neuron table must
#: be equal. float32 rounds at ~6e-8 relative, so a last-bit difference passes.
FLOAT_RTOL = 1e-6
FLOAT_ATOL = 1e-9

#: Kinds compared by a relative Frobenius norm, ``||a - b||_F <= tol * ||a||_F``, instead of
#: elementwise: ``precision`` comes from GraphicalLassoCV, an iterative fit that often stops
#: unconverged (recorded in its stats), so last-bit differences of its input move its result by
#: ~3e-4 relative (measured: OpenBLAS Sandybridge vs SkylakeX kernels, field 6_6_2 of the test
#: store; max |difference| 0.011 on values up to 61).
NORM_TOLERANCES = {"precision": 1e-2}


@dataclass(frozen=True)
class KindComparison:
    """How one kind (or the neuron table) of two builds of a recipe compares."""

    kind: str
    """Kind name, or ``neurons.parquet``."""
    file: str
    """Its file in the artifact folder."""
    rule: str
    """``exact`` (integer kinds, labels, the neuron table) or ``rtol ..., atol ...`` (floats)."""
    ok: bool
    """Within the rule."""
    identical: bool
    """Byte-identical files (same sha256)."""
    max_abs_diff: float
    """Largest |published - rebuilt| (inf where NaNs, shapes or dtypes differ; 0 for tables)."""
    n_outside: int = 0
    """Entries outside the tolerance."""
    note: str = ""
    """What differs when it is not a number (missing kind, shape, dtype, table rows)."""
    rel_norm_diff: float | None = None
    """``||a - b||_F / ||a||_F`` for kinds compared by norm (:data:`NORM_TOLERANCES`)."""

    def describe(self) -> str:
        """One line: kind, rule and the largest difference."""
        if self.note:
            return f"kind {self.kind} ({self.file}): {self.note}"
        state = "identical" if self.identical else f"max |difference| {self.max_abs_diff:.3g}"
        if self.rel_norm_diff is not None:
            state += f", relative Frobenius difference {self.rel_norm_diff:.3g}"
        extra = f", {self.n_outside} entries outside" if self.n_outside else ""
        return f"kind {self.kind} ({self.file}): {state} ({self.rule}{extra})"


def compare_builds(published: Path, rebuilt: Path, *, published_manifest: dict | None = None,
                   rebuilt_manifest: dict | None = None, rtol: float = FLOAT_RTOL,
                   atol: float = FLOAT_ATOL, block: int = 1024) -> list[KindComparison]:
    """Compare two builds of one recipe kind by kind; return one :class:`KindComparison` each.

    Integer and label kinds (``connectome``, ``modules_*``) and the neuron table must be equal;
    float kinds (dense or sparse) must satisfy ``|a - b| <= atol + rtol * |a|`` elementwise, with
    ``a`` the published value and NaN only where the other is NaN; kinds in
    :data:`NORM_TOLERANCES` (``precision``: 1e-2) ``||a - b||_F <= tol * ||a||_F`` instead.
    Byte-identical files pass without reading. Kinds present in only one build fail. Dense
    matrices are compared in row blocks of ``block`` rows (memory stays bounded for pooled
    populations). Stats are not compared: they summarize the compared numbers.

    >>> bad = [c for c in compare_builds(a_dir, b_dir) if not c.ok]  # doctest: +SKIP
    """
    pm = published_manifest or _read(published)
    rm = rebuilt_manifest or _read(rebuilt)
    sums = ({f["path"]: f["sha256"] for f in pm["files"]}, {f["path"]: f["sha256"] for f in rm["files"]})
    rule = f"rtol {rtol:g}, atol {atol:g}"
    out = []
    if NEURONS in sums[0] or NEURONS in sums[1]:
        same = sums[0].get(NEURONS) == sums[1].get(NEURONS)
        ok = same or (NEURONS in sums[0] and NEURONS in sums[1] and
                      pd.read_parquet(published / NEURONS).equals(pd.read_parquet(rebuilt / NEURONS)))
        out.append(KindComparison(NEURONS, NEURONS, "exact", ok, same, 0.0 if ok else float("inf"),
                                  note="" if ok else "the neuron tables differ"))
    for kind in sorted(set(pm["kinds"]) | set(rm["kinds"])):
        if kind not in pm["kinds"] or kind not in rm["kinds"]:
            where = "the rebuild" if kind not in rm["kinds"] else "the published build"
            out.append(KindComparison(kind, (pm["kinds"].get(kind) or rm["kinds"][kind])["file"],
                                      "exact", False, False, float("inf"), note=f"missing in {where}"))
            continue
        entry = pm["kinds"][kind]
        fname = entry["file"]
        if sums[0].get(fname) == sums[1].get(fname):
            out.append(KindComparison(kind, fname, "identical bytes", True, True, 0.0))
            continue
        if entry["format"] == "npz-sparse":
            a, b = sp.load_npz(published / fname).tocsr(), sp.load_npz(rebuilt / fname).tocsr()
            out.append(_compare_sparse(kind, fname, a, b, rtol, atol, rule))
        else:
            a = np.load(published / fname, mmap_mode="r", allow_pickle=False)
            b = np.load(rebuilt / fname, mmap_mode="r", allow_pickle=False)
            norm = NORM_TOLERANCES.get(kind)
            out.append(_compare_dense(kind, fname, a, b, rtol, atol,
                                      rule if norm is None else f"relative Frobenius <= {norm:g}",
                                      block, norm))
    return out


def _read(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text("utf-8"))


def _exact(dtype: np.dtype) -> bool:
    return not np.issubdtype(dtype, np.inexact)


def _compare_dense(kind, fname, a, b, rtol, atol, rule, block, norm=None) -> KindComparison:
    # a: published, b: rebuilt
    if a.shape != b.shape or a.dtype != b.dtype:
        return KindComparison(kind, fname, rule, False, False, float("inf"),
                              note=f"published {a.dtype}{list(a.shape)}, rebuilt {b.dtype}{list(b.shape)}")
    exact = _exact(a.dtype)
    worst, outside, sq_diff, sq_ref = 0.0, 0, 0.0, 0.0
    for start in range(0, max(len(a), 1), block):
        x = np.asarray(a[start:start + block])
        y = np.asarray(b[start:start + block])
        if exact:
            bad = x != y
            if bad.any():
                worst = max(worst, float(np.max(np.abs(x[bad].astype(np.float64) - y[bad]))))
                outside += int(bad.sum())
            continue
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        nan_x, nan_y = np.isnan(x64), np.isnan(y64)
        if (nan_x != nan_y).any():
            worst, outside = float("inf"), outside + int((nan_x != nan_y).sum())
        both = ~(nan_x | nan_y)
        diff = np.abs(x64[both] - y64[both])
        if diff.size:
            worst = max(worst, float(diff.max()))
            outside += int((diff > atol + rtol * np.abs(x64[both])).sum())
            sq_diff += float(np.sum(diff ** 2))
            sq_ref += float(np.sum(x64[both] ** 2))
    if norm is not None and not exact and worst != float("inf"):
        rel = (sq_diff ** 0.5) / (sq_ref ** 0.5) if sq_ref > 0 else (0.0 if sq_diff == 0 else float("inf"))
        return KindComparison(kind, fname, rule, rel <= norm, False, worst, rel_norm_diff=rel)
    return KindComparison(kind, fname, "exact" if exact else rule, outside == 0, False, worst, outside)


def _compare_sparse(kind, fname, a, b, rtol, atol, rule) -> KindComparison:
    if a.shape != b.shape or a.dtype != b.dtype:
        return KindComparison(kind, fname, rule, False, False, float("inf"),
                              note=f"published {a.dtype}{list(a.shape)}, rebuilt {b.dtype}{list(b.shape)}")
    exact = _exact(a.dtype)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    diff = abs(a64 - b64).tocsr()
    if np.isnan(diff.data).any():  # sparse kinds hold no NaN; if one does, it fails
        diff.data = np.nan_to_num(diff.data, nan=np.inf)
    worst = float(diff.max()) if diff.nnz else 0.0
    if exact:
        outside = int((diff.data != 0).sum())
    else:
        excess = (diff - rtol * abs(a64)).tocsr()
        outside = int((excess.data > atol).sum())
    return KindComparison(kind, fname, "exact" if exact else rule, outside == 0, False, worst, outside)
