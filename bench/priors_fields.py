"""Priors for all 54 released fields: wall time on this machine.

Loads the study's release into a fresh temporary store (timed separately), then builds one
artifact per field with every kind the field's data allows (`cxp priors build bp --fields all
--per-field`), serially and/or with worker processes. Target: all fields in < 120 s on 2 cores.

    .venv/bin/python bench/priors_fields.py [--release ../shared/data/cortical-blueprint] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from connectome_priors.etl.pipeline import run_etl
from connectome_priors.priors_store import DeriveParams, build_per_field

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default=str(REPO.parent / "shared" / "data" / "cortical-blueprint"))
    parser.add_argument("--jobs", type=int, nargs="+", default=[2], help="worker counts to time")
    parser.add_argument("--no-precision", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxp-bench-priors-"))
    try:
        t = time.perf_counter()
        snap = run_etl("blueprint", args.release, store=tmp / "store")
        print(f"blueprint ETL (54 fields): {time.perf_counter() - t:.1f} s")
        params = DeriveParams(precision=not args.no_precision)
        for jobs in args.jobs:
            root = tmp / f"artifacts-{jobs}"
            t = time.perf_counter()
            manifests = build_per_field("bp", store=tmp / "store", root=root, params=params, jobs=jobs)
            wall = time.perf_counter() - t
            kinds = Counter(k for m in manifests for k in m["kinds"])
            print(f"priors for {len(manifests)} fields, {jobs} worker(s): {wall:.1f} s "
                  f"(target < 120 s); precision {'on' if params.precision else 'off'}")
            print("  artifacts per kind: " + json.dumps(dict(sorted(kinds.items()))))
        print(f"  snapshot {snap['snapshot_id']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
