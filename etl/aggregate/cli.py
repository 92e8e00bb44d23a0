"""``cxp aggregate``: the aggregation engines from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from connectome_priors.kernel.files import atomic_path
from connectome_priors.kernel.settings import env_name

from ..errors import SourceError

__all__ = ["register", "run_aggregate"]


def register(sub: argparse._SubParsersAction, add_store) -> None:
    """Add the ``aggregate`` subcommand."""
    agg = sub.add_parser("aggregate", help="aggregate raw synapses (Parquet / CSV.gz partitions) "
                         "into a connections table, on duckdb or dask")
    agg.add_argument("synapses", nargs="+", help="synapse files or directories of partitions "
                     "(Parquet, CSV, or a static export's *_merged.csv.gz with its _header.csv)")
    agg.add_argument("--neurons", default=None, metavar="FILE",
                     help="Parquet/CSV with nucleus_id, root_id (default: the store's neurons)")
    agg.add_argument("--snapshot", default=None,
                     help="store snapshot whose neurons to use (default: latest)")
    agg.add_argument("--engine", choices=["duckdb", "dask"], default="duckdb",
                     help="duckdb (one process, default) or dask (a cluster)")
    agg.add_argument("--dask-scheduler", default=None, metavar="ADDR",
                     help=f"dask: 'local' or tcp://HOST:PORT of an existing scheduler (default "
                          f"${env_name('dask_scheduler')}, else a LocalCluster)")
    agg.add_argument("--workers", type=int, default=2, help="dask LocalCluster: worker processes")
    agg.add_argument("--memory-limit", default=None,
                     help="duckdb: process limit (default 4GB); dask LocalCluster: per worker "
                          "(default 2GiB)")
    agg.add_argument("--keep-self", action="store_true", help="count autapses (pre = post cell)")
    agg.add_argument("--out", required=True, help="connections Parquet file to write")
    agg.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_store(agg)
    agg.set_defaults(handler=run_aggregate)



def _neurons(args: argparse.Namespace) -> pa.Table:
    if args.neurons:
        path = Path(args.neurons)
        if not path.is_file():
            raise SourceError(f"--neurons {path} does not exist", path=str(path))
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        else:
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
                column_types={"nucleus_id": pa.int64(), "root_id": pa.int64()}))
        return table
    from ..store import Store

    df = Store(args.store).sql("SELECT nucleus_id, coalesce(root_id, 0) AS root_id FROM neurons",
                               snapshot=args.snapshot)
    return pa.Table.from_pandas(df, preserve_index=False)


def run_aggregate(args: argparse.Namespace) -> None:
    """Handler of ``cxp aggregate``."""
    from . import synapses_to_connections

    report: dict = {}
    table = synapses_to_connections(args.synapses, _neurons(args), engine=args.engine,
                                    scheduler=args.dask_scheduler, keep_self=args.keep_self,
                                    memory_limit=args.memory_limit, n_workers=args.workers,
                                    progress=not args.no_progress, report=report)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    print(f"wrote {table.num_rows:,} connections ({report['n_synapses_counted']:,} synapses "
          f"between {report['neurons_mapped']:,} cells) to {out} in {report['seconds']:.1f} s "
          f"[engine {args.engine}]")
    if report["ambiguous_root_ids"]:
        print(f"  skipped {report['ambiguous_root_ids']} root id(s) carried by several nuclei")
