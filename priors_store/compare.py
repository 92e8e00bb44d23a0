"""What changed between two versions of a prior artifact, as data and as a report.

:func:`diff` compares two loaded artifacts: their recipes (population, snapshot, parameters),
every kind, and, neuron by neuron (nucleus ids, stable across materializations, unlike root ids):

- ``neurons``: nucleus ids added (in b only) and removed (in a only), and how many both hold;
- ``connectome``: edges ``(pre nucleus, post nucleus)`` added, removed, changed in synapse count
  and unchanged, with the distribution of the count changes (b - a; an added edge counts its
  synapses, a removed one minus its synapses);
- ``modules``: per label kind in both (``modules_wiring``, ``modules_functional``), the adjusted
  Rand index (scikit-learn's ``adjusted_rand_score``) of the two assignments over the neurons both
  hold;
- ``functional``: per functional matrix in both (``correlation``, ``sttc``, ``precision``,
  ``w_bio_modulation``), the Pearson correlation of the two matrices' off-diagonal entries over
  the neurons both hold (pairs where either is NaN left out, and counted).

:func:`render_markdown` and :func:`render_html` turn that into the change report
``cxp priors rebuild`` writes beside each new version and ``cxp priors diff --format markdown``
prints; :func:`write_report` writes both (and a PNG of the count changes) to a folder;
:func:`summary` is its one line.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from connectome_priors.kernel.files import atomic_path, atomic_write_text

from .prior import Prior

__all__ = ["FUNCTIONAL_KINDS", "diff", "render_html", "render_markdown", "summary", "write_report"]

#: Dense functional kinds whose agreement the report gives as a correlation.
FUNCTIONAL_KINDS = ("correlation", "sttc", "precision", "w_bio_modulation")
#: Nucleus ids listed per direction in a report (all of them are in the JSON of :func:`diff`).
SHOWN_IDS = 50


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def diff(a: Prior, b: Prior) -> dict:
    """Compare two loaded artifacts (``a`` the older, ``b`` the newer).

    Returns
    -------
    dict
        ``a``, ``b``: ``NAME@VERSION`` of each (with ``snapshot``);
        ``population``, ``snapshot`` and ``parameters``: {key: (a, b)} for keys that differ;
        ``kinds``: {kind: summary} with 'only in a'/'only in b', 'identical', or for same-shape
        numeric kinds the max absolute difference and the share of entries that differ;
        ``same_neurons``: whether the neuron order is identical; and ``neurons``,
        ``connectome``, ``modules``, ``functional`` as in the module docstring.

    Examples
    --------
    >>> d = diff(load("v1_l23", "1a2b"), load("v1_l23"))          # doctest: +SKIP
    >>> d["neurons"]["n_added"], d["connectome"]["n_changed"]     # doctest: +SKIP
    """
    out: dict = {"a": _ref(a), "b": _ref(b)}
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
    ids_a = a.neurons.nucleus_id.astype(np.int64).to_numpy()
    ids_b = b.neurons.nucleus_id.astype(np.int64).to_numpy()
    common = np.intersect1d(ids_a, ids_b)
    out["neurons"] = {"n_a": len(ids_a), "n_b": len(ids_b), "n_common": len(common),
                      "added": np.setdiff1d(ids_b, ids_a).tolist(),
                      "removed": np.setdiff1d(ids_a, ids_b).tolist()}
    out["neurons"].update(n_added=len(out["neurons"]["added"]),
                          n_removed=len(out["neurons"]["removed"]))
    out["connectome"] = _edges(a, b) if "connectome" in a and "connectome" in b else None
    pos_a, pos_b = _positions(ids_a, common), _positions(ids_b, common)
    out["modules"] = {}
    for kind in sorted(set(a.kinds) & set(b.kinds)):
        if kind.startswith("modules_") and a.manifest["kinds"][kind].get("format") == "labels":
            out["modules"][kind] = _ari(np.asarray(a[kind])[pos_a], np.asarray(b[kind])[pos_b])
    out["functional"] = {}
    for kind in FUNCTIONAL_KINDS:
        if kind in a and kind in b:
            out["functional"][kind] = _matrix_correlation(a.get(kind), b.get(kind), pos_a, pos_b)
    return out


def _ref(p: Prior) -> dict:
    return {"ref": f"{p.name}@{p.version}",
            "snapshot": p.manifest["source_snapshot"]["snapshot_id"],
            "materialization_version": p.manifest["source_snapshot"].get("materialization_version")}


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row positions of ``wanted`` nucleus ids in an artifact's neuron order ``ids``."""
    return pd.Series(np.arange(len(ids)), index=ids).loc[wanted].to_numpy()


def _edge_table(p: Prior) -> pd.DataFrame:
    m = sp.coo_matrix(p.get("connectome", as_="sparse"))
    ids = p.neurons.nucleus_id.astype(np.int64).to_numpy()
    keep = m.data != 0
    return pd.DataFrame({"pre": ids[m.row[keep]], "post": ids[m.col[keep]],
                         "n": m.data[keep].astype(np.int64)})


def _edges(a: Prior, b: Prior) -> dict:
    ea, eb = _edge_table(a), _edge_table(b)
    both = ea.merge(eb, on=["pre", "post"], how="outer", suffixes=("_a", "_b"), indicator=True)
    added = both["_merge"] == "right_only"
    removed = both["_merge"] == "left_only"
    n_a = both.n_a.fillna(0).astype(np.int64)
    n_b = both.n_b.fillna(0).astype(np.int64)
    delta = n_b - n_a
    changed = (both["_merge"] == "both") & (delta != 0)
    moved = delta[delta != 0]
    counts = moved.value_counts().sort_index()
    return {"n_a": len(ea), "n_b": len(eb), "n_added": int(added.sum()),
            "n_removed": int(removed.sum()), "n_changed": int(changed.sum()),
            "n_unchanged": int(((both["_merge"] == "both") & (delta == 0)).sum()),
            "synapses_a": int(ea.n.sum()), "synapses_b": int(eb.n.sum()),
            "synapse_change_counts": {int(k): int(v) for k, v in counts.items()},
            "synapse_change_quantiles": ({q: float(moved.quantile(q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
                                         if len(moved) else {})}


def _ari(la: np.ndarray, lb: np.ndarray) -> dict:
    from sklearn.metrics import adjusted_rand_score  # only when modules are compared

    n = len(la)
    return {"adjusted_rand_index": float(adjusted_rand_score(la, lb)) if n >= 2 else None,
            "n_neurons": n, "n_modules_a": int(len(np.unique(la))), "n_modules_b": int(len(np.unique(lb)))}


def _matrix_correlation(ma, mb, pos_a: np.ndarray, pos_b: np.ndarray) -> dict:
    ma = ma.toarray() if sp.issparse(ma) else np.asarray(ma)
    mb = mb.toarray() if sp.issparse(mb) else np.asarray(mb)
    va = ma[np.ix_(pos_a, pos_a)].astype(np.float64)
    vb = mb[np.ix_(pos_b, pos_b)].astype(np.float64)
    off = ~np.eye(len(pos_a), dtype=bool)
    va, vb = va[off], vb[off]
    ok = np.isfinite(va) & np.isfinite(vb)
    r = None
    if ok.sum() >= 2 and np.std(va[ok]) > 0 and np.std(vb[ok]) > 0:
        r = float(np.corrcoef(va[ok], vb[ok])[0, 1])
    return {"pearson_r": r, "n_pairs": int(ok.sum()), "n_pairs_nan": int((~ok).sum()),
            "max_abs_difference": float(np.max(np.abs(va[ok] - vb[ok]))) if ok.any() else None}


# ------------------------------------------------------------------------------------- reports

def _num(v, fmt: str = ".4f") -> str:
    return "n/a" if v is None else format(v, fmt)


def summary(d: dict) -> str:
    """One line: neurons and edges added/removed/changed, each ARI and functional correlation."""
    n, parts = d["neurons"], []
    parts.append(f"neurons +{n['n_added']} -{n['n_removed']} ({n['n_a']} -> {n['n_b']})")
    c = d.get("connectome")
    if c:
        parts.append(f"edges +{c['n_added']} -{c['n_removed']} changed {c['n_changed']} "
                     f"({c['n_a']} -> {c['n_b']})")
    parts += [f"{k} ARI {_num(v['adjusted_rand_index'], '.3f')}" for k, v in d["modules"].items()]
    parts += [f"{k} r {_num(v['pearson_r'], '.3f')}" for k, v in d["functional"].items()]
    return "; ".join(parts)


def _ids(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:SHOWN_IDS]))
    return (shown + (f", ... ({len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else "")) or "none"


def _sections(d: dict) -> list[tuple[str, list[str], list[list[str]], str | None]]:
    """The report as (title, header, rows, note) tables: one source for Markdown and HTML."""
    a, b, n = d["a"], d["b"], d["neurons"]
    out = [("Versions", ["", "a (before)", "b (after)"],
            [["artifact", a["ref"], b["ref"]], ["snapshot", a["snapshot"], b["snapshot"]],
             ["materialization", str(a.get("materialization_version")),
              str(b.get("materialization_version"))]], None)]
    out.append(("Neurons (by nucleus id)", ["", "count"],
                [["in a", str(n["n_a"])], ["in b", str(n["n_b"])], ["in both", str(n["n_common"])],
                 ["added", str(n["n_added"])], ["removed", str(n["n_removed"])]],
                f"Added: {_ids(n['added'])}. Removed: {_ids(n['removed'])}."))
    c = d.get("connectome")
    if c:
        q = c["synapse_change_quantiles"]
        note = ("Synapse count change per edge (b - a, over added, removed and changed edges): "
                + (", ".join(f"{int(k * 100)}% {v:+g}" for k, v in q.items()) if q else "none")
                + ".")
        out.append(("Connectome edges (pre, post nucleus)", ["", "count"],
                    [["in a", str(c["n_a"])], ["in b", str(c["n_b"])], ["added", str(c["n_added"])],
                     ["removed", str(c["n_removed"])], ["changed count", str(c["n_changed"])],
                     ["unchanged", str(c["n_unchanged"])],
                     ["synapses", f"{c['synapses_a']} -> {c['synapses_b']}"]], note))
        dist = c["synapse_change_counts"]
        if dist:
            out.append(("Distribution of synapse count changes", ["change (b - a)", "edges"],
                        [[f"{k:+d}", str(v)] for k, v in dist.items()], None))
    if d["modules"]:
        out.append(("Module assignments (neurons in both)",
                    ["kind", "adjusted Rand index", "neurons", "modules a", "modules b"],
                    [[k, _num(v["adjusted_rand_index"]), str(v["n_neurons"]), str(v["n_modules_a"]),
                      str(v["n_modules_b"])] for k, v in d["modules"].items()], None))
    if d["functional"]:
        out.append(("Functional matrices (neurons in both, off-diagonal)",
                    ["kind", "Pearson r", "pairs", "pairs with NaN", "max |a - b|"],
                    [[k, _num(v["pearson_r"]), str(v["n_pairs"]), str(v["n_pairs_nan"]),
                      _num(v["max_abs_difference"], ".4g")] for k, v in d["functional"].items()],
                    None))
    recipe = [[f"{sec}: {k}", str(va), str(vb)] for sec in ("population", "snapshot", "parameters")
              for k, (va, vb) in d[sec].items()]
    if recipe:
        out.append(("Recipe differences", ["key", "a", "b"], recipe, None))
    out.append(("Kinds", ["kind", "comparison"], [[k, str(v)] for k, v in d["kinds"].items()], None))
    return out


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(d: dict, *, plot: str | None = None) -> str:
    """The change report of :func:`diff`'s result as Markdown (``plot``: a PNG to link)."""
    lines = [f"# Changes: {d['a']['ref']} -> {d['b']['ref']}", "", summary(d), ""]
    for title, header, rows, note in _sections(d):
        lines += [f"## {title}", "", "| " + " | ".join(map(_md_cell, header)) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
        lines += [""] + ([note, ""] if note else [])
    if plot:
        lines += [f"![synapse count changes per edge]({plot})", ""]
    return "\n".join(lines)


def render_html(d: dict, *, plot: str | None = None) -> str:
    """The same report as a standalone HTML page."""
    e = html.escape
    body = [f"<h1>Changes: {e(d['a']['ref'])} &rarr; {e(d['b']['ref'])}</h1>",
            f"<p>{e(summary(d))}</p>"]
    for title, header, rows, note in _sections(d):
        body.append(f"<h2>{e(title)}</h2><table><tr>"
                    + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
                    + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>"
                              for r in rows) + "</table>")
        if note:
            body.append(f"<p>{e(note)}</p>")
    if plot:
        body.append(f'<p><img src="{e(plot)}" alt="synapse count changes per edge"></p>')
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(d['b']['ref'])} changes"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _plot(d: dict, path: Path) -> bool:
    """A bar chart of the synapse count changes per edge; False when there are none."""
    c = d.get("connectome")
    if not c or not c["synapse_change_counts"]:
        return False
    from .plots import _pyplot  # matplotlib only when a report is written

    plt = _pyplot()
    dist = c["synapse_change_counts"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(list(dist), list(dist.values()), color=["#b2182b" if k < 0 else "#2166ac" for k in dist])
    ax.set_xlabel("synapse count change per edge (b - a)")
    ax.set_ylabel("edges")
    ax.set_title(f"{d['a']['ref']} -> {d['b']['ref']}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


def write_report(d: dict, directory: str | os.PathLike, stem: str) -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.html`` and (when edges changed) ``<stem>.png`` into
    ``directory``, each atomically; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    png = directory / f"{stem}.png"
    plotted = _plot(d, png)
    plot = png.name if plotted else None
    md = atomic_write_text(directory / f"{stem}.md", render_markdown(d, plot=plot))
    page = atomic_write_text(directory / f"{stem}.html", render_html(d, plot=plot))
    return [md, page] + ([png] if plotted else [])
