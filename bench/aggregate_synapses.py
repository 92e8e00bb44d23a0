"""Rows/s of synapse -> connections aggregation: duckdb and dask engines vs a plain pandas baseline.

Generates (or reuses) a seeded SYNTHETIC full-volume-like synapse table as partitioned Parquet and
header-less CSV.gz (like the static export), then, in one run and on the same files:

* ``duckdb`` engine (one process; peak RSS of this process sampled every 50 ms),
* ``dask`` engine on a fresh distributed LocalCluster per format (peak RSS of every worker,
  sampled every 50 ms in the worker itself via ``client.run``; cluster start-up timed apart),
* a plain pandas baseline: read the files' three columns into one DataFrame, merge with the
  root -> nucleus map and ``groupby().agg`` (on the first ``--baseline-rows`` rows only; it holds
  everything in memory),

and checks that every engine/format gives the identical connections table. Target: dask worker
peak < 4 GiB.

    .venv/bin/python bench/aggregate_synapses.py --rows 50000000 [--data DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq

from connectome_priors.etl.aggregate import synapses_to_connections
from connectome_priors.etl.formats.export_header import read_header
from connectome_priors.testing.synapse_synth import SynapseSynthConfig, write_synthetic_synapses


class PeakRSS:
    """Sample this process's resident memory in a thread; ``peak`` in bytes."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()
        self._proc = psutil.Process()

    def __enter__(self) -> PeakRSS:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.every_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker_sampler_start(dask_worker) -> int:
    """On a worker: sample its RSS every 50 ms (ru_maxrss would include the RSS of the client
    process that forked it). Returns the RSS now."""
    proc, state = psutil.Process(), {"peak": 0, "stop": threading.Event()}

    def run() -> None:
        while not state["stop"].is_set():
            state["peak"] = max(state["peak"], proc.memory_info().rss)
            state["stop"].wait(0.05)

    threading.Thread(target=run, daemon=True).start()
    dask_worker._cxp_rss = state
    return proc.memory_info().rss


def _worker_sampler_stop(dask_worker) -> int:
    state = dask_worker._cxp_rss
    state["stop"].set()
    return max(state["peak"], psutil.Process().memory_info().rss)


def _data(args) -> dict:
    cfg = SynapseSynthConfig(rows=args.rows, rows_per_file=args.rows_per_file, n_neurons=args.cells,
                             seed=args.seed)
    root = Path(args.data)
    stamp = root / "bench-config.json"
    want = json.dumps(cfg.__dict__, sort_keys=True)
    paths = {"neurons": root / "neurons.parquet", "parquet": root / "synapses_pni_2",
             "csv.gz": root / "synapses_pni_2_merged"}
    if stamp.is_file() and stamp.read_text() == want:
        print(f"reusing {cfg.rows:,} synthetic synapses in {root}")
        return paths
    t0 = time.perf_counter()
    paths = write_synthetic_synapses(root, cfg, progress=not args.no_progress)
    stamp.write_text(want)
    size = {k: sum(p.stat().st_size for p in paths[k].glob("*")) / 2**30 for k in ("parquet", "csv.gz")}
    print(f"generated {cfg.rows:,} SYNTHETIC synapses ({cfg.n_files} files per format; Parquet "
          f"{size['parquet']:.2f} GiB, CSV.gz {size['csv.gz']:.2f} GiB) in "
          f"{time.perf_counter() - t0:.0f} s")
    return paths


def _pandas_baseline(paths: dict, fmt: str, neurons: pd.DataFrame, max_rows: int) -> tuple[int, float]:
    cols = ["pre_pt_root_id", "post_pt_root_id", "size"]
    files = sorted(paths[fmt].glob("*.parquet" if fmt == "parquet" else "*.csv.gz"))
    header = read_header(paths["csv.gz"].parent / "synapses_pni_2_merged_header.csv")
    t0 = time.perf_counter()
    frames, n = [], 0
    for f in files:
        if n >= max_rows:
            break
        if fmt == "parquet":
            df = pd.read_parquet(f, columns=cols)
        else:
            df = pd.read_csv(f, header=None, names=list(header.columns), usecols=cols)
        frames.append(df)
        n += len(df)
    syn = pd.concat(frames, ignore_index=True)
    m = neurons[neurons.root_id.map(neurons.root_id.value_counts()) == 1]
    df = (syn.merge(m.rename(columns={"root_id": "pre_pt_root_id", "nucleus_id": "pre"}))
          .merge(m.rename(columns={"root_id": "post_pt_root_id", "nucleus_id": "post"})))
    df = df[df.pre != df.post]
    out = df.groupby(["pre", "post"]).agg(n_synapses=("size", "size"), sum_size=("size", "sum"))
    seconds = time.perf_counter() - t0
    assert len(out) > 0
    return n, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rows-per-file", type=int, default=1_000_000)
    parser.add_argument("--cells", type=int, default=80_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="/tmp/cxp-bench-synapses",
                        help="where the synthetic table lives (reused when its config matches)")
    parser.add_argument("--formats", default="parquet,csv.gz")
    parser.add_argument("--workers", type=int, default=2, help="dask LocalCluster workers")
    parser.add_argument("--worker-memory", default="2GiB", help="dask per-worker memory limit")
    parser.add_argument("--duckdb-memory", default="4GB", help="duckdb memory limit")
    parser.add_argument("--baseline-rows", type=int, default=10_000_000,
                        help="rows the in-memory pandas baseline reads (default 10M)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    paths = _data(args)
    neurons = pq.read_table(paths["neurons"])
    print(f"machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"{args.rows:,} rows, {len(neurons):,} cells")
    results = {}
    for fmt in args.formats.split(","):
        with PeakRSS() as peak:
            rep: dict = {}
            t0 = time.perf_counter()
            results[fmt, "duckdb"] = synapses_to_connections(
                paths[fmt], neurons, engine="duckdb", memory_limit=args.duckdb_memory, report=rep)
            sec = time.perf_counter() - t0
        print(f"{fmt:8s} duckdb  {sec:7.1f} s  {args.rows / sec / 1e6:6.2f} M rows/s  "
              f"process peak RSS {peak.peak / 2**30:.2f} GiB (limit {args.duckdb_memory})  "
              f"-> {rep['n_connections']:,} connections")
        t0 = time.perf_counter()
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          memory_limit=args.worker_memory, dashboard_address=":0") as lc, \
                Client(lc) as client:
            start = time.perf_counter() - t0
            idle = client.run(_worker_sampler_start)
            t0 = time.perf_counter()
            results[fmt, "dask"] = synapses_to_connections(paths[fmt], neurons, engine="dask",
                                                           scheduler=client)
            sec = time.perf_counter() - t0
            peaks = client.run(_worker_sampler_stop)
        worst = max(peaks.values()) / 2**30
        print(f"{fmt:8s} dask    {sec:7.1f} s  {args.rows / sec / 1e6:6.2f} M rows/s  "
              f"worker peak RSS max {worst:.2f} GiB over {len(peaks)} workers (idle "
              f"{max(idle.values()) / 2**30:.2f} GiB) "
              f"(limit {args.worker_memory}; target < 4 GiB: {'OK' if worst < 4 else 'FAIL'}); "
              f"cluster start {start:.1f} s not included")
        n, sec = _pandas_baseline(paths, fmt, neurons.to_pandas(), args.baseline_rows)
        print(f"{fmt:8s} pandas  {sec:7.1f} s  {n / sec / 1e6:6.2f} M rows/s  "
              f"(read {n:,} rows into one DataFrame + merge + groupby; this process's peak RSS "
              f"{_maxrss() / 2**30:.2f} GiB so far)")
    first = next(iter(results.values()))
    same = all(t.equals(first) for t in results.values())
    print(f"identical connections across {', '.join('/'.join(k) for k in results)}: "
          f"{'yes' if same else 'NO'} ({first.num_rows:,} rows, "
          f"{int(np.asarray(first['n_synapses']).sum()):,} synapses)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
