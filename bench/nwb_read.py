"""Peak memory and wall time of reading a ~1 GB NWB scan file with the ``nwb`` source.

Writes (once, then reuses) a SYNTHETIC scan file in the DANDI 000402 layout, by default 8 fields x
1,600 ROIs x 20,000 frames of float32 traces (1.02 GB of traces), into ``--dir`` (default
``$CXP_NWB_CACHE/bench``, else ``~/.cache/connectome-priors/bench``; never the repository). Then,
each in a fresh child process whose own peak RSS is measured (``os.wait4``):

1. ``read_nwb`` alone (the source: lazy, block-wise reading and event detection);
2. the whole ``cxp etl --source nwb FILE`` into a temporary store (read, validate, store).

Target: peak RSS < 1 GiB for reading the 1 GB file.

    .venv/bin/python bench/nwb_read.py [--dir DIR] [--frames N] [--rois N] [--fields N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

READ = """
import sys, time
from connectome_priors.etl.sources.nwb import read_nwb
t = time.perf_counter()
out = read_nwb(sys.argv[1])
print(f"{time.perf_counter() - t:.2f} {out.tables['spikes'].num_rows} {out.report['events']}")
"""


def measured(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` as a child and return (wall s, its own peak RSS in GiB, stdout)."""
    start = time.perf_counter()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: stdout to the pipe, then exec
        os.close(r)
        os.dup2(w, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.execv(cmd[0], cmd)
    os.close(w)
    with os.fdopen(r) as fh:
        out = fh.read()
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_maxrss / 2**20, out


def ensure_file(folder: Path, *, fields: int, rois: int, frames: int) -> Path:
    from connectome_priors.testing.nwb_writer import SynthField, dandi_name, write_scan_file

    path = folder / f"f{fields}_r{rois}_t{frames}" / dandi_name(9, 9, subject="bench")
    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    specs = []
    for k in range(1, fields + 1):
        ids = np.arange(1, rois + 1) + 10_000 * k
        events = [np.flatnonzero(rng.random(frames) < 0.01) for _ in range(rois)]
        specs.append(SynthField(k, events, pt_root_id=864691135000000000 + ids,
                                pt_position=np.tile([200000, 100000, 20000], (rois, 1))))
    start = time.perf_counter()
    write_scan_file(path, specs, session=9, scan_idx=9, n_frames=frames, noise=0.002, seed=0,
                    progress=True)
    print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cache = os.environ.get("CXP_NWB_CACHE")
    default = Path(cache) / "bench" if cache else Path.home() / ".cache" / "connectome-priors" / "bench"
    parser.add_argument("--dir", type=Path, default=default, help=f"where the big file lives (default {default})")
    parser.add_argument("--fields", type=int, default=8)
    parser.add_argument("--rois", type=int, default=1600)
    parser.add_argument("--frames", type=int, default=20_000)
    args = parser.parse_args()
    path = ensure_file(args.dir, fields=args.fields, rois=args.rois, frames=args.frames)
    traces_gb = args.fields * args.rois * args.frames * 4 / 1e9
    py = sys.executable
    wall, peak, out = measured([py, "-c", READ, str(path)])
    read_s, units, events = out.split()
    store = Path(tempfile.mkdtemp(prefix="cxp-bench-nwb-"))
    try:
        etl_wall, etl_peak, _ = measured([str(Path(py).parent / "cxp"), "etl", "--source", "nwb", str(path),
                                          "--store", str(store), "--no-progress"])
    finally:
        shutil.rmtree(store, ignore_errors=True)
    print(f"NWB scan file {path.name}: {path.stat().st_size / 1e9:.2f} GB on disk, {traces_gb:.2f} GB of "
          f"traces ({args.fields} fields x {args.rois} ROIs x {args.frames} frames)")
    print(f"  read_nwb            {float(read_s):7.1f} s  (process {wall:.1f} s)  peak RSS {peak:5.2f} GiB "
          f"(target < 1 GiB)   {int(units):,} units, {int(events):,} events")
    print(f"  cxp etl --source nwb{etl_wall:7.1f} s                     peak RSS {etl_peak:5.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
