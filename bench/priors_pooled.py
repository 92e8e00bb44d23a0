"""The pooled ~15k-neuron population of the synthetic default: build and load.

Runs in a child process each (so peak RSS is per step): synthetic ETL at the full default size,
then `cxp priors build pooled --pooled` (distance, connectome, module artifacts; functional kinds
need one scan and communicability <= 5000 neurons, so they are skipped and recorded), then
loading the 15k x 15k distance matrix (manifest check + sha256 of that file + memory map).
Targets: build < 180 s and < 6 GiB; load < 1 s.

    .venv/bin/python bench/priors_pooled.py
"""

from __future__ import annotations

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
from priors_store import load
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


def main() -> int:
    cxp = str(Path(sys.executable).parent / "cxp")
    tmp = Path(tempfile.mkdtemp(prefix="cxp-bench-pooled-"))
    store, root = str(tmp / "store"), str(tmp / "artifacts")
    try:
        wall, _, _ = child([cxp, "etl", "--source", "synthetic", "--store", store, "--no-progress"])
        print(f"synthetic ETL: {wall:.1f} s")
        wall, peak, out = child([cxp, "priors", "build", "pooled", "--pooled", "--store", store,
                                 "--artifacts", root, "--no-progress"])
        print(f"pooled priors build: {wall:.1f} s, peak RSS {peak:.2f} GiB (targets < 180 s, < 6 GiB)")
        print("  " + out.strip().replace("\n", "\n  "))
        _, _, out = child([sys.executable, "-c", LOAD, root])
        seconds, n, dtype, imported = out.split()
        print(f"load + first access of the {n} x {n} {dtype} distance matrix: {float(seconds):.2f} s "
              f"(target < 1 s; includes its sha256 check; `import priors_store` took {imported} s "
              "more, once per process)")
        size = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file()) / 2**30
        print(f"  artifact size on disk: {size:.2f} GiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
