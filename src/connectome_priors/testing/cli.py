"""``cxp synth-synapses``: write a seeded SYNTHETIC full-volume synapse table (a test and bench
input, shaped like the static export)."""

from __future__ import annotations

import argparse
import time

from ..kernel.errors import CxpError

__all__ = ["register", "run_synth"]


def register(sub: argparse._SubParsersAction, add_store) -> None:  # no store
    """Add the ``synth-synapses`` subcommand."""
    syn = sub.add_parser("synth-synapses", help="write a seeded SYNTHETIC full-volume synapse "
                         "table (partitioned Parquet and/or CSV.gz like the static export)")
    syn.add_argument("--rows", type=int, required=True, help="synapses (the real table: 337312429)")
    syn.add_argument("--out", required=True, help="output directory")
    syn.add_argument("--format", choices=["parquet", "csv.gz", "both"], default="both")
    syn.add_argument("--rows-per-file", type=int, default=1_000_000)
    syn.add_argument("--cells", type=int, default=80_000, help="cells with a nucleus")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--no-progress", action="store_true", help="hide progress bars")
    syn.set_defaults(handler=run_synth)


def run_synth(args: argparse.Namespace) -> None:
    """Handler of ``cxp synth-synapses``."""
    from .synapse_synth import SynapseSynthConfig, write_synthetic_synapses

    if args.rows < 1:
        raise CxpError(f"--rows must be >= 1; found {args.rows}")
    cfg = SynapseSynthConfig(rows=args.rows, rows_per_file=args.rows_per_file,
                             n_neurons=args.cells, seed=args.seed)
    formats = ("parquet", "csv.gz") if args.format == "both" else (args.format,)
    t0 = time.perf_counter()
    paths = write_synthetic_synapses(args.out, cfg, formats=formats, progress=not args.no_progress)
    print(f"wrote {cfg.rows:,} SYNTHETIC synapses in {cfg.n_files} partition(s) per format in "
          f"{time.perf_counter() - t0:.1f} s:")
    for key, path in paths.items():
        print(f"  {key}: {path}")
