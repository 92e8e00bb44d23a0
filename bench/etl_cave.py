"""Rows per second ingested by `cxp etl --source cave` from a local stand-in CAVE server.

Starts the stand-in (``python -m connectome_priors.testing.cave_standin``, synthetic minnie65-shaped data, the
real engine's 200,000-row cap) in its own process, then runs the real console command against it
over loopback into a fresh temporary store, with the unmodified caveclient. The synapse pull is
over 1M rows among the selected neurons, so capped chunks are split on the way. Prints wall time,
rows ingested, rows/s, queries and capped results.

    .venv/bin/python bench/etl_cave.py [--cells 3000] [--synapses 1400000] [--chunk-size 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=3000)
    parser.add_argument("--synapses", type=int, default=1_400_000)
    parser.add_argument("--chunk-size", type=int, default=500)
    args = parser.parse_args()
    cxp = Path(sys.executable).parent / "cxp"
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="cxp-bench-cave-"))
    env = {**os.environ, "HOME": str(work / "home"), "PYTHONPATH": str(REPO)}
    env.pop("CXP_CAVE_TOKEN", None)
    server = subprocess.Popen([sys.executable, "-m", "connectome_priors.testing.cave_standin", "--port", str(port),
                               "--cells", str(args.cells), "--synapses", str(args.synapses)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        line = server.stdout.readline()
        if "stand-in CAVE" not in line:
            sys.stderr.write(line + server.stdout.read())
            return 1
        url = f"http://127.0.0.1:{port}"
        store = work / "store"
        start = time.perf_counter()
        proc = subprocess.run([str(cxp), "etl", "--source", "cave", "--server", url, "--datastack",
                               "minnie65_public", "--version", "latest", "--chunk-size",
                               str(args.chunk_size), "--store", str(store), "--no-progress"],
                              capture_output=True, text=True, env=env, cwd=REPO)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            return proc.returncode
        import duckdb

        con = duckdb.connect(str(store / "store.duckdb"), read_only=True)
        counts_json, report_json = con.execute("SELECT row_counts, report FROM snapshots").fetchone()
        con.close()
        counts, report = json.loads(counts_json), json.loads(report_json)
        queries = report["queries"]
        pulled = sum(q["rows"] for q in queries.values())
        syn = queries["synapses_pni_2"]
        print(f"cxp etl --source cave from a local stand-in ({args.cells} cells, "
              f"{args.synapses:,} synapses in the table, row cap 200,000), loopback")
        print(f"  wall time        {wall:8.1f} s (child process: connect, pull, transform, validate, store)")
        print(f"  synapses pulled  {syn['rows']:>12,} in {syn['queries']} queries "
              f"({syn['capped']} capped and split)")
        print(f"  all rows pulled  {pulled:>12,}")
        print(f"  ingest rate      {pulled / wall:>12,.0f} rows/s (all rows / wall time)")
        print(f"  synapse rate     {syn['rows'] / wall:>12,.0f} rows/s (synapse rows / wall time)")
        pull = report["pull_seconds"]
        print(f"  pull phase       {pull:8.1f} s: {pulled / pull:,.0f} rows/s (connect + chunked "
              "queries + checkpoints + transform, before validation and the store load)")
        print("  stored           " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
