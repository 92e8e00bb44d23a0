"""Pictures of a prior artifact: wiring vs distance, matrices ordered by module, neurons in 3-D."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .prior import Prior

__all__ = ["plot_all"]


def _pyplot():
    import matplotlib  # plotting is optional work; no backend chosen at import

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def connection_probability(prior: Prior, *, bin_um: float = 25.0, max_um: float = 500.0):
    """Share of ordered pairs that are connected, per soma-distance bin; returns (centres, p, n)."""
    dist = np.asarray(prior["distance_um"], dtype=np.float64)
    conn = prior.get("connectome", as_="sparse").toarray() > 0
    off = ~np.eye(len(dist), dtype=bool)
    edges = np.arange(0.0, max_um + bin_um, bin_um)
    which = np.digitize(dist[off], edges) - 1
    ok = (which >= 0) & (which < len(edges) - 1)
    n = np.bincount(which[ok], minlength=len(edges) - 1)
    k = np.bincount(which[ok], weights=conn[off][ok], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / n, np.nan)
    return (edges[:-1] + edges[1:]) / 2, p, n


def plot_all(prior: Prior, out_dir: str | os.PathLike, *, max_matrix_n: int = 2000) -> list[Path]:
    """Render the artifact's PNGs into ``out_dir``; return their paths."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    label = f"{prior.name}@{prior.version}"
    if prior.manifest["source_snapshot"].get("synthetic"):
        label += " (SYNTHETIC data)"
    written = []
    if "distance_um" in prior and "connectome" in prior and len(prior) <= max_matrix_n:
        centres, p, n = connection_probability(prior)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(centres, p, marker="o")
        ax.set_xlabel("soma distance (um)")
        ax.set_ylabel("connection probability")
        ax.set_title(f"Wiring vs distance\n{label}", fontsize=9)
        written.append(_save(fig, out / "connection_probability.png", plt))
    modules = next((k for k in ("modules_functional", "modules_wiring") if k in prior), None)
    order = np.argsort(np.asarray(prior[modules]), kind="stable") if modules else np.arange(len(prior))
    if len(prior) <= max_matrix_n:
        shown = [k for k in ("connectome", "w_bio_modulation", "correlation", "sttc") if k in prior]
        fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4), squeeze=False)
        for ax, kind in zip(axes[0], shown):
            value = prior[kind]
            value = value.toarray() if sp.issparse(value) else np.array(value, dtype=np.float64)
            value = value[np.ix_(order, order)]
            if kind == "connectome":  # too sparse for an image: one dot per connected pair
                ax.spy(value, markersize=1.5, color="black")
                ax.set_title(f"connectome (rows pre), {int((value > 0).sum())} pairs", fontsize=9)
                continue
            np.fill_diagonal(value, np.nan)
            im = ax.imshow(value, cmap="viridis", interpolation="nearest")
            ax.set_title(kind, fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle(f"Matrices ordered by {modules or 'neuron order'}\n{label}", fontsize=9)
        written.append(_save(fig, out / "matrices_by_module.png", plt))
    pos = prior.neurons[["x_nm", "y_nm", "z_nm"]].to_numpy(dtype=np.float64) / 1000.0
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="3d")
    colour = np.asarray(prior[modules]) if modules else "grey"
    ax.scatter(pos[:, 0], pos[:, 2], pos[:, 1], c=colour, cmap="tab20", s=6)
    ax.set_xlabel("x (um)")
    ax.set_ylabel("z (um)")
    ax.set_zlabel("depth y (um)")
    ax.invert_zaxis()
    ax.set_title(f"Neurons coloured by {modules or 'nothing'}\n{label}", fontsize=9)
    written.append(_save(fig, out / "neurons_3d.png", plt))
    return written


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
