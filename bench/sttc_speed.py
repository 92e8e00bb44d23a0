"""Speed of the vectorized STTC against the per-pair reference loop, side by side, checked equal.

Three populations:

- the largest released field that has spike trains (``4_7_8``, 193 units, ~0.5 M spikes; its
  spike times sit on the imaging frame grid, 0.1587 s apart, as in every released field);
- a synthetic 312-unit field (the size of the study's main field 6_6_2, whose spikes are not in
  the shared copy): seeded Poisson trains at 1 Hz over 6000 s in continuous time (~1.9 M spikes,
  ~12x more coincident spike pairs than the released field: the hard case);
- the same trains snapped to the frame grid (how released spike times look).

For each, ``sttc`` is timed on all pairs (best of ``--repeats``). The reference
``sttc_pairwise_loop`` takes minutes to hours on all pairs, so it is timed on a seeded random
subset of pairs and extrapolated to all pairs (the output says so); the same subset is checked
against ``sttc``. For context, a faster per-pair baseline (one ``searchsorted`` per pair, the
kind of loop docs/method.md#sttc-speed times at ~5 s for 193 units) is timed the same way.

    .venv/bin/python bench/sttc_speed.py [--loop-pairs 100] [--repeats 3] [--seed 0]
                                         [--data ../shared/data/cortical-blueprint]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from connectome_priors.etl.formats.safe_npy import load_numeric_object_array  # noqa: E402
from connectome_priors.priors_store.derive.functional import default_t_end, sttc  # noqa: E402
from connectome_priors.testing.oracles import sttc_pairwise_loop  # noqa: E402

#: Spacing of the released spike times (half an imaging frame), s.
FRAME_GRID_S = 0.15870748623183317


def searchsorted_loop(trains, pairs, *, dt: float, t_end: float) -> np.ndarray:
    """Per-pair baseline: tiling fractions per unit, then one searchsorted per ordered pair."""
    cover = []
    for t in trains:
        gaps = np.diff(t)
        covered = (2 * dt * t.size - np.maximum(0.0, 2 * dt - gaps).sum()
                   - max(0.0, dt - t[0]) - max(0.0, t[-1] + dt - t_end))
        cover.append(covered / t_end)

    def near(ta, tb):
        i = np.searchsorted(tb, ta)
        left = np.abs(ta - tb[np.maximum(i - 1, 0)]) <= dt
        right = np.abs(tb[np.minimum(i, tb.size - 1)] - ta) <= dt
        return float(np.mean(left | right))

    def term(p, t):
        return 1.0 if p * t == 1 else (p - t) / (1 - p * t)

    out = np.full(len(pairs), np.nan)
    for k, (a, b) in enumerate(pairs):
        pa, pb = near(trains[a], trains[b]), near(trains[b], trains[a])
        out[k] = 0.5 * (term(pa, cover[b]) + term(pb, cover[a]))
    return out


def poisson(n: int, *, rate_hz: float, duration_s: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.sort(rng.uniform(0, duration_s, rng.poisson(rate_hz * duration_s)))
            for _ in range(n)]


def on_grid(trains: list[np.ndarray], grid_s: float) -> list[np.ndarray]:
    return [np.unique(np.round(t / grid_s)) * grid_s for t in trains]


def best_of(repeats: int, fn):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def run_case(label: str, trains: list[np.ndarray], *, loop_pairs: int, repeats: int,
             seed: int, dt: float = 0.1) -> bool:
    n = len(trains)
    n_spikes = sum(t.size for t in trains)
    t_end = default_t_end(trains)
    all_pairs = n * (n - 1) // 2
    print(f"\n== {label}: {n} units, {n_spikes:,} spikes, t_end {t_end:.1f} s, "
          f"{all_pairs:,} pairs")

    fast_s, fast = best_of(repeats, lambda: sttc(trains, dt=dt, t_end=t_end))
    print(f"sttc (vectorized, all pairs, best of {repeats}):          {fast_s:9.3f} s")

    rng = np.random.default_rng(seed)
    iu, ju = np.triu_indices(n, 1)
    pick = rng.choice(all_pairs, size=min(loop_pairs, all_pairs), replace=False)
    pairs = list(zip(iu[pick].tolist(), ju[pick].tolist()))
    start = time.perf_counter()
    loop = sttc_pairwise_loop(trains, dt=dt, t_end=t_end, pairs=pairs)
    loop_sub_s = time.perf_counter() - start
    loop_s = loop_sub_s * all_pairs / len(pairs)
    extrapolated = len(pairs) < all_pairs
    how = (f"EXTRAPOLATED from {len(pairs)} random pairs ({loop_sub_s:.1f} s)"
           if extrapolated else "all pairs, measured")
    print(f"sttc_pairwise_loop (reference):                        {loop_s:9.1f} s  [{how}]")

    sub_pairs = min(all_pairs, 20 * len(pairs))
    pick2 = rng.choice(all_pairs, size=sub_pairs, replace=False)
    pairs2 = list(zip(iu[pick2].tolist(), ju[pick2].tolist()))
    start = time.perf_counter()
    ss = searchsorted_loop(trains, pairs2, dt=dt, t_end=t_end)
    ss_s = (time.perf_counter() - start) * all_pairs / sub_pairs
    ss_how = (f"extrapolated from {sub_pairs} random pairs" if sub_pairs < all_pairs
              else "all pairs, measured")
    print(f"per-pair searchsorted loop (context):                  {ss_s:9.2f} s  [{ss_how}]")

    a, b = np.array(pairs).T
    diff_loop = np.abs(fast[a, b] - loop[a, b]).max()
    a2, b2 = np.array(pairs2).T
    diff_ss = np.abs(fast[a2, b2] - ss).max()
    print(f"speedup vs reference loop: {loop_s / fast_s:,.0f}x   "
          f"vs searchsorted loop: {ss_s / fast_s:,.1f}x")
    ok = diff_loop <= 1e-12 and diff_ss <= 1e-12
    print(f"agreement on checked pairs: max |sttc - loop| = {diff_loop:.1e}, "
          f"max |sttc - searchsorted| = {diff_ss:.1e}  -> {'OK' if ok else 'MISMATCH'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("CXP_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default_data / "cortical-blueprint",
                        help="the released cortical-blueprint directory")
    parser.add_argument("--field", default="4_7_8", help="released field with spike trains")
    parser.add_argument("--loop-pairs", type=int, default=100,
                        help="random pairs the reference loop is timed on (then extrapolated)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ok = True
    spikes_path = args.data / "DATA" / "info" / args.field / f"spikes_{args.field}.npy"
    if spikes_path.is_file():
        released = load_numeric_object_array(spikes_path)
        ok &= run_case(f"released field {args.field}", released, loop_pairs=args.loop_pairs,
                       repeats=args.repeats, seed=args.seed)
    else:
        print(f"(skipping the released field: {spikes_path} not found)")
    synthetic = poisson(312, rate_hz=1.0, duration_s=6000.0, seed=args.seed)
    ok &= run_case("synthetic, Poisson 1 Hz, continuous times", synthetic,
                   loop_pairs=max(1, args.loop_pairs // 4), repeats=args.repeats, seed=args.seed)
    ok &= run_case("synthetic, Poisson 1 Hz, on the frame grid", on_grid(synthetic, FRAME_GRID_S),
                   loop_pairs=max(1, args.loop_pairs // 4), repeats=args.repeats, seed=args.seed)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
