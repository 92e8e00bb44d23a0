"""The pooled ~15k-neuron population of the synthetic default: build and load.

Runs in a child process each (so peak RSS is per step): synthetic ETL at the full default size,
then `cxp priors build pooled --pooled` (distance, connectome, module artifacts; functional kinds
need one scan and communicability <= 5000 neurons, so they are skipped and recorded), then
loading the 15k x 15k distance matrix (manifest check + sha256 of that file + memory map).
Targets: build < 180 s and < 6 GiB; load < 1 s.

``--engine dask`` builds on a Dask ``LocalCluster`` started here (``--workers`` single-threaded
worker processes, ``--memory-limit`` each) through ``--dask-scheduler``, and prints the build
time, the build process's peak RSS and each worker's peak RSS (before and after the build);
``--engine both`` builds with both engines from the same store and checks the versions agree.

    .venv/bin/python bench/priors_pooled.py [--engine local|dask|both] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD = """
import sys, time
t = time.perf_counter()
from connectome_priors.priors_store import load
imported = time.perf_counter() - t
t = time.perf_counter()
prior = load("pooled", root=sys.argv[1])
d = prior["distance_um"]
s = float(d[123, 4567])
print(f"{time.perf_counter() - t:.3f} {d.shape[0]} {d.dtype} {imported:.2f}")
"""


def child(cmd: list[str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 2**20, proc.stdout


def _peak_rss_gib() -> float:
    """This process's peak RSS (GiB); run on each Dask worker."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build_dask(cxp: str, store: str, root: str, *, workers: int, memory_limit: str) -> str:
    """Build on a LocalCluster started here; print time and peak memory per worker."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      memory_limit=memory_limit, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        before = client.run(_peak_rss_gib)
        wall, peak, out = child([cxp, "priors", "build", "pooled", "--pooled", "--store", store,
                                 "--artifacts", root, "--no-progress", "--engine", "dask",
                                 "--dask-scheduler", cluster.scheduler_address])
        after = client.run(_peak_rss_gib)
    print(f"pooled priors build [engine dask, {workers} workers x {memory_limit}]: {wall:.1f} s, "
          f"build process peak RSS {peak:.2f} GiB (targets < 180 s, < 6 GiB)")
    for i, addr in enumerate(sorted(after)):
        print(f"  worker {i}: peak RSS {after[addr]:.2f} GiB (after start-up {before[addr]:.2f} GiB)")
    print("  " + out.strip().replace("\n", "\n  "))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["local", "dask", "both"], default="local")
    ap.add_argument("--workers", type=int, default=2, help="dask: LocalCluster worker processes")
    ap.add_argument("--memory-limit", default="2GiB", help="dask: per worker")
    args = ap.parse_args()
    cxp = str(Path(sys.executable).parent / "cxp")
    tmp = Path(tempfile.mkdtemp(prefix="cxp-bench-pooled-"))
    store, root = str(tmp / "store"), str(tmp / "artifacts")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)")
    try:
        wall, _, _ = child([cxp, "etl", "--source", "synthetic", "--store", store, "--no-progress"])
        print(f"synthetic ETL: {wall:.1f} s")
        versions = {}
        if args.engine in ("local", "both"):
            wall, peak, out = child([cxp, "priors", "build", "pooled", "--pooled", "--store", store,
                                     "--artifacts", root, "--no-progress"])
            print(f"pooled priors build [engine local]: {wall:.1f} s, peak RSS {peak:.2f} GiB "
                  "(targets < 180 s, < 6 GiB)")
            print("  " + out.strip().replace("\n", "\n  "))
            versions["local"] = out.split("@")[1].split()[0]
        if args.engine in ("dask", "both"):
            dask_root = root if args.engine == "dask" else str(tmp / "artifacts-dask")
            out = build_dask(cxp, store, dask_root, workers=args.workers,
                             memory_limit=args.memory_limit)
            versions["dask"] = out.split("@")[1].split()[0]
        if len(versions) == 2:
            print(f"same artifact version from both engines: {versions['local'] == versions['dask']} "
                  f"({versions['local']} / {versions['dask']})")
        _, _, out = child([sys.executable, "-c", LOAD, root])
        seconds, n, dtype, imported = out.split()
        print(f"load + first access of the {n} x {n} {dtype} distance matrix: {float(seconds):.2f} s "
              f"(target < 1 s; includes its sha256 check; `import priors_store` took {imported} s "
              "more, once per process)")
        size = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file()) / 2**30
        print(f"  artifact size on disk: {size:.2f} GiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
