"""Wall time, peak memory and the split of ``cxp etl --source files --connections-only`` on the
seeded stand-in of minnie65's static release (one gzip synapse view, issue 22); ``--synapses``:
``--stream``, the synapses among the cells stored too.

For each ``--rows`` size: writes the stand-in (``connectome_priors.testing.release_synth``; reused
when present), then loads it into a fresh store in a child process (so its peak RSS is its own)
and prints one JSON line: wall seconds of extraction and of the store's load, CPU seconds (user +
system, all threads: what the run costs on a machine shared with other work), peak RSS, the
stream's split (decompress / parse / map / aggregate / write / combine), rows per second, and a
point query's share of the stored ``connections`` (row groups whose pre_nucleus_id statistics
admit one cell, their bytes, and ``cxp sql``'s time for that cell's partners).

    nice -n 10 .venv/bin/python bench/stream_release.py --rows 1000000 10000000 --data /tmp/release
    nice -n 10 .venv/bin/python bench/stream_release.py --write-only --rows 337312429 --data /big

``--compare-decoders`` times each gzip reader (CPU seconds) on the first size's file and stops.
``--write-only`` writes the stand-in(s) and stops (``--rows 337312429`` is the full volume: about
17 GB of gzip, 50 GB of text).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from connectome_priors.testing.release_synth import release_config, write_release

_CHILD = """
import json, resource, sys, time
from connectome_priors.etl.sources.files import read_files
from connectome_priors.etl import Store
t0 = time.perf_counter()
st = read_files(sys.argv[1], neurons="all", synapses=sys.argv[3] == "1", stream=True,
                work_dir=sys.argv[2] + "-work")
t1 = time.perf_counter()
snap = Store(sys.argv[2]).load(st)
t2 = time.perf_counter()
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"extract_s": round(t1 - t0, 2), "store_load_s": round(t2 - t1, 2),
                  "cpu_s": round(use.ru_utime + use.ru_stime, 2),
                  "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                  "stream": st.report["files_stream"], "rows": st.report["files"][-1]["rows"],
                  "connections": st.streamed["connections"].num_rows,
                  "synapses": st.streamed["synapses"].num_rows if "synapses" in st.streamed else None,
                  "synapses_in_connections": st.report["synapses_in_connections"],
                  "snapshot": snap["snapshot_id"]}))
"""


def _point_query(store: Path, snapshot: str) -> dict:
    """Row groups and bytes a query for one pre cell's partners reads (by row-group statistics)."""
    path = store / "raw" / snapshot / "connections.parquet"
    meta = pq.ParquetFile(path).metadata
    col = meta.schema.to_arrow_schema().get_field_index("pre_nucleus_id")
    middle = meta.row_group(meta.num_row_groups // 2).column(col).statistics.min
    hit = [i for i in range(meta.num_row_groups)
           if meta.row_group(i).column(col).statistics.min <= middle
           <= meta.row_group(i).column(col).statistics.max]
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "connectome_priors.cli", "sql", "--store", str(store),
                          f"SELECT count(*) FROM connections WHERE pre_nucleus_id = {middle}"],
                         capture_output=True, text=True, check=True)
    pre_s = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    post = subprocess.run([sys.executable, "-m", "connectome_priors.cli", "sql", "--store", str(store),
                           f"SELECT count(*) FROM connections WHERE post_nucleus_id = {middle}"],
                          capture_output=True, text=True, check=True)
    post_s = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "connectome_priors.cli", "sql", "--store", str(store),
                    "SELECT 1"], capture_output=True, text=True, check=True)
    pcol = meta.schema.to_arrow_schema().get_field_index("post_nucleus_id")
    return {"row_groups": meta.num_row_groups, "row_groups_read": len(hit),
            "bytes_read": sum(meta.row_group(i).total_byte_size for i in hit),
            "file_bytes": path.stat().st_size, "cxp_sql_s": pre_s,
            "cxp_sql_out": out.stdout.strip().splitlines()[-1],
            # a cell's inputs: every row group's post_nucleus_id column is scanned
            "post_cxp_sql_s": post_s, "post_cxp_sql_out": post.stdout.strip().splitlines()[-1],
            "post_column_bytes": sum(meta.row_group(i).column(pcol).total_compressed_size
                                     for i in range(meta.num_row_groups)),
            "cxp_sql_select_1_s": round(time.perf_counter() - t, 2)}


def independent_count(release: Path, store: Path, snapshot: str, every: int) -> dict:
    """Connections of every ``every``-th stored cell (as pre or as post) counted by DuckDB straight
    from the gzip (its own reader and joins, none of the stream's code), compared with the stored
    ``connections``: both directions of EXCEPT must be empty."""
    import duckdb

    from connectome_priors.testing.release_synth import VIEW_COLUMNS, VIEW_TABLE

    raw = store / "raw" / snapshot
    names = ", ".join(f"'{c}': '{'BIGINT' if t == 'bigint' else 'INTEGER'}'" for c, t in VIEW_COLUMNS)
    t = time.perf_counter()
    con = duckdb.connect(config={"memory_limit": "4GB", "temp_directory": str(store.parent / "spill")})
    con.execute(f"""CREATE TABLE cells AS SELECT nucleus_id, root_id
                    FROM read_parquet('{raw / "neurons.parquet"}')""")
    con.execute(f"""CREATE TABLE sample AS SELECT nucleus_id FROM
                    (SELECT nucleus_id, row_number() OVER (ORDER BY nucleus_id) AS i FROM cells)
                    WHERE i % {every} = 0""")
    con.execute(f"""CREATE TABLE expect AS
        SELECT a.nucleus_id AS pre, b.nucleus_id AS post, count(*) AS n, sum(s.size) AS sz
        FROM read_csv('{release / f"{VIEW_TABLE}.csv.gz"}', header=false, columns={{{names}}}) s
        JOIN cells a ON s.pre_pt_root_id = a.root_id JOIN cells b ON s.post_pt_root_id = b.root_id
        WHERE a.nucleus_id <> b.nucleus_id
          AND (a.nucleus_id IN (SELECT * FROM sample) OR b.nucleus_id IN (SELECT * FROM sample))
        GROUP BY pre, post""")
    con.execute(f"""CREATE TABLE got AS SELECT pre_nucleus_id AS pre, post_nucleus_id AS post,
                    n_synapses AS n, sum_size AS sz FROM read_parquet('{raw / "connections.parquet"}')
                    WHERE pre IN (SELECT * FROM sample) OR post IN (SELECT * FROM sample)""")
    count = lambda q: con.execute(q).fetchall()[0][0]  # noqa: E731  (five one-line counts)
    return {"every": every, "cells_sampled": count("SELECT count(*) FROM sample"),
            "pairs_expected": count("SELECT count(*) FROM expect"),
            "pairs_stored": count("SELECT count(*) FROM got"),
            "missing": count("SELECT count(*) FROM (SELECT * FROM expect EXCEPT SELECT * FROM got)"),
            "extra": count("SELECT count(*) FROM (SELECT * FROM got EXCEPT SELECT * FROM expect)"),
            "check_s": round(time.perf_counter() - t, 1)}


def engines_agree(release: Path, store: Path, snapshot: str, engines: list[str]) -> dict:
    """``cxp aggregate``'s ``engines`` over the same gzip (each its own reader: the Dask engine one
    task for the one file, streamed in batches) against the stored ``connections``."""
    from connectome_priors.etl.aggregate import synapses_to_connections
    from connectome_priors.testing.release_synth import VIEW_TABLE

    raw = store / "raw" / snapshot
    cells = pq.read_table(raw / "neurons.parquet", columns=["nucleus_id", "root_id"])
    stored = pq.read_table(raw / "connections.parquet").drop_columns(["snapshot_id"])
    out = {}
    for engine in engines:
        t = time.perf_counter()
        # one task holds the one file's pair sums: at full size (42M pairs) far past Dask's
        # default 2 GiB worker budget, where the nanny restarts the worker in a loop
        got = synapses_to_connections([release / f"{VIEW_TABLE}.csv.gz"], cells, engine=engine,
                                      n_workers=1, memory_limit="16GiB" if engine == "dask" else None)
        out[engine] = {"rows": got.num_rows, "equal_to_stored": got.equals(stored.cast(got.schema)),
                       "seconds": round(time.perf_counter() - t, 1)}
        del got
    return out


def killed_and_resumed(release: Path, store: Path, synapses: bool, within: float, seed: int) -> dict:
    """SIGKILL the load at a seeded random time in [1, ``within``] s, look at what a reader sees,
    then run the same load again: it resumes from the last checkpoint."""
    import random
    import signal

    from connectome_priors.etl import Store

    at = random.Random(seed).uniform(1.0, within)
    argv = [sys.executable, "-c", _CHILD, str(release), str(store), "1" if synapses else "0"]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        child.wait(timeout=at)
        return {"killed_at_s": round(at, 1), "note": "the load finished before the kill"}
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
    state = Path(f"{store}-work").glob("*/state.json")
    done = [json.loads(p.read_text())["done"] for p in state]
    visible = (Store(store).snapshots().snapshot_id.tolist()
               if (store / "store.duckdb").exists() else "no store yet")
    t = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    again = json.loads(out.stdout.strip().splitlines()[-1])
    return {"killed_at_s": round(at, 1), "chunks_checkpointed_at_kill": done,
            "snapshots_a_reader_saw_after_kill": visible,
            "resumed_chunks": again["stream"]["resumed_chunks"], "chunks": again["stream"]["chunks"],
            "resume_wall_s": round(time.perf_counter() - t, 2), "snapshot": again["snapshot"]}


def compare_decoders(path: Path) -> None:
    """CPU seconds (this process, all threads) to decompress ``path`` with each candidate reader;
    ``rapidgzip`` only where installed (it is not a dependency)."""
    import gzip

    from isal import igzip, igzip_threaded

    readers = {"gzip (zlib)": lambda: gzip.open(path, "rb"), "isal.igzip": lambda: igzip.open(path, "rb"),
               "isal.igzip_threaded": lambda: igzip_threaded.open(path, "rb", threads=1)}
    try:
        import rapidgzip

        readers["rapidgzip p=1"] = lambda: rapidgzip.open(str(path), parallelization=1)
        readers["rapidgzip p=2"] = lambda: rapidgzip.open(str(path), parallelization=2)
    except ImportError:
        pass
    for name, opener in readers.items():
        t, c, n = time.perf_counter(), time.process_time(), 0
        with opener() as fh:
            while block := fh.read(16 << 20):
                n += len(block)
        cpu = time.process_time() - c
        print(json.dumps({"reader": name, "text_bytes": n, "cpu_s": round(cpu, 2),
                          "cpu_mb_per_s": round(n / cpu / 1e6), "wall_s": round(time.perf_counter() - t, 2)}),
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "cxp-release")
    parser.add_argument("--neurons", type=int, default=144_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-only", action="store_true")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes formatting the stand-in's text (its bytes do not depend on it)")
    parser.add_argument("--compare-decoders", action="store_true",
                        help="only time each gzip reader on the first --rows size's file")
    parser.add_argument("--check-every", type=int, default=0, metavar="K",
                        help="after each load, count every K-th cell's connections straight from "
                             "the gzip with DuckDB and compare (0: no check)")
    parser.add_argument("--check-engines", nargs="*", choices=["duckdb", "dask"], metavar="ENGINE",
                        help="after each load, aggregate the gzip with cxp aggregate's engines "
                             "(default both: duckdb dask) and compare with the stored connections")
    parser.add_argument("--kill-within", type=float, default=0, metavar="S",
                        help="also kill a second load at a random time (--seed) within S seconds "
                             "and resume it; its snapshot must be the uninterrupted one's")
    parser.add_argument("--synapses", action="store_true",
                        help="also store the synapses among the cells (cxp etl --stream)")
    args = parser.parse_args()
    for rows in args.rows:
        release = args.data / f"rows-{rows}"
        if not (release / "synapses_pni_2_v1_filtered_view_header.csv").is_file():
            t = time.perf_counter()
            write_release(release, release_config(rows, seed=args.seed, n_neurons=args.neurons),
                          workers=args.workers, progress=True)
            print(json.dumps({"rows": rows, "written_s": round(time.perf_counter() - t, 1)}),
                  flush=True)
        if args.compare_decoders:
            compare_decoders(release / "synapses_pni_2_v1_filtered_view.csv.gz")
            return
        if args.write_only:
            continue
        with tempfile.TemporaryDirectory(dir=args.data) as tmp:
            store = Path(tmp) / "store"
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", _CHILD, str(release), str(store),
                                  "1" if args.synapses else "0"],
                                 capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result.update({"wall_s": round(wall, 2), "rows_per_s": round(rows / wall),
                           "gzip_bytes": (release / "synapses_pni_2_v1_filtered_view.csv.gz")
                           .stat().st_size, "point_query": _point_query(store, result["snapshot"])})
            print(json.dumps(result), flush=True)
            if args.check_every:
                print(json.dumps({"rows": rows, "independent_count": independent_count(
                    release, store, result["snapshot"], args.check_every)}), flush=True)
            if args.check_engines is not None:
                print(json.dumps({"rows": rows, "engines": engines_agree(
                    release, store, result["snapshot"], args.check_engines or ["duckdb", "dask"])}),
                    flush=True)
        if args.kill_within:
            with tempfile.TemporaryDirectory(dir=args.data) as tmp:
                killed = killed_and_resumed(release, Path(tmp) / "store", args.synapses,
                                            args.kill_within, args.seed)
                killed["same_snapshot_as_uninterrupted"] = killed.get("snapshot") == result["snapshot"]
                print(json.dumps({"rows": rows, "killed": killed}), flush=True)


if __name__ == "__main__":
    main()
