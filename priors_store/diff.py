"""What changed between two versions of a prior artifact."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .load import Prior

__all__ = ["diff"]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def diff(a: Prior, b: Prior) -> dict:
    """Compare two loaded artifacts.

    Returns
    -------
    dict
        ``population``, ``snapshot`` and ``parameters``: {key: (a, b)} for keys that differ;
        ``kinds``: {kind: summary} with 'only in a'/'only in b', 'identical', or for same-shape
        numeric kinds the max absolute difference and the share of entries that differ;
        ``same_neurons``: whether the neuron order is identical.
    """
    out: dict = {}
    for key, section in (("population", "population"), ("snapshot", "source_snapshot"),
                         ("parameters", "parameters")):
        fa, fb = _flatten(a.manifest[section]), _flatten(b.manifest[section])
        out[key] = {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}
    same_neurons = a.neurons.nucleus_id.tolist() == b.neurons.nucleus_id.tolist()
    out["same_neurons"] = same_neurons
    sums_a = {f["path"]: f["sha256"] for f in a.manifest["files"]}
    sums_b = {f["path"]: f["sha256"] for f in b.manifest["files"]}
    kinds = {}
    for kind in sorted(set(a.kinds) | set(b.kinds)):
        if kind not in b:
            kinds[kind] = "only in a"
            continue
        if kind not in a:
            kinds[kind] = "only in b"
            continue
        fa, fb = a.manifest["kinds"][kind]["file"], b.manifest["kinds"][kind]["file"]
        if sums_a.get(fa) == sums_b.get(fb):
            kinds[kind] = "identical"
            continue
        va, vb = a.get(kind), b.get(kind)
        va = va.toarray() if sp.issparse(va) else np.asarray(va)
        vb = vb.toarray() if sp.issparse(vb) else np.asarray(vb)
        if not same_neurons or va.shape != vb.shape:
            kinds[kind] = f"changed (shapes {va.shape} vs {vb.shape}, neuron order differs)"
            continue
        delta = np.abs(va.astype(np.float64) - vb.astype(np.float64))
        kinds[kind] = (f"changed: max |a-b| {np.nanmax(delta):.6g}, "
                       f"{np.mean(delta > 0):.2%} of entries differ")
    out["kinds"] = kinds
    return out
