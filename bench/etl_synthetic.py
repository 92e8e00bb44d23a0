"""Wall time and peak memory of `cxp etl --source synthetic` at the full default size.

Runs the real console command in a child process, into a fresh temporary store, and prints
its wall time and peak resident memory (the child's ru_maxrss). Target: < 120 s, < 4 GiB.

    .venv/bin/python bench/etl_synthetic.py [--seed N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", default=None, help="store directory to keep (default: a temp dir)")
    args = parser.parse_args()
    cxp = Path(sys.executable).parent / "cxp"
    store = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cxp-bench-"))
    try:
        start = time.perf_counter()
        proc = subprocess.run([str(cxp), "etl", "--source", "synthetic", "--seed", str(args.seed),
                               "--store", str(store), "--no-progress"], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        counts = subprocess.run([str(cxp), "status", "--store", str(store), "--format", "json"],
                                capture_output=True, text=True, check=True).stdout
        row = json.loads(counts)[0]
        print(f"cxp etl --source synthetic (seed {args.seed}), full default size")
        print(f"  wall time  {wall:8.1f} s   (target < 120 s)")
        print(f"  peak RSS   {peak_gib:8.2f} GiB (target < 4 GiB)")
        print("  rows       " + ", ".join(f"{k} {row[k]:,}" for k in
                                         ("neurons", "functional_units", "connections", "spikes",
                                          "tuning")))
        size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 2**20
        print(f"  store size {size:8.1f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
