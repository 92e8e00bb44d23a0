"""``cxp etl``, ``cxp status``, ``cxp sql``, ``cxp refresh`` and ``cxp aggregate``: the ETL stage's
commands (a thin layer over the library), registered by :mod:`connectome_priors.cli`.

``cxp refresh --rebuild`` rebuilds the declared priors after a refresh that stored a new snapshot.
Building priors is a later stage, which this one does not import (layers: priors_store > etl):
the priors stage's CLI sets ``rebuild_hook`` on the refresh parser (``set_defaults``), and
:func:`run_refresh` calls it. ``rebuild_hook(args)`` runs before the pull (it reads and checks the
recipe file, so a broken one fails first) and returns ``after(snapshot_row)``, called only when
the refresh stored a new snapshot.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from connectome_priors.kernel.errors import CxpError
from connectome_priors.kernel.files import atomic_path, atomic_write_text

from .aggregate import cli as aggregate_cli
from .errors import EtlError
from .pipeline import run_etl
from .refresh import refresh
from .sources.cave import cli as cave_cli
from .sources.nwb.cli import add_arguments as add_nwb_arguments
from .sources.nwb.cli import describe as describe_nwb
from .sources.nwb.cli import resolve_arguments as resolve_nwb_arguments
from .store import Store
from .summary import describe_exclusions, describe_files

__all__ = ["register", "run_refresh"]


def register(sub: argparse._SubParsersAction, add_store) -> None:
    """Add the ETL stage's commands to the ``cxp`` parser."""
    etl = sub.add_parser("etl", help="extract a source into the neuron store (one snapshot)")
    etl.add_argument("--source", choices=["synthetic", "blueprint", "cave", "files", "nwb"],
                     default="synthetic",
                     help="synthetic (embedded default, generated), blueprint (the study's arrays), "
                          "cave (a CAVE server through caveclient), files (static CAVE table "
                          "exports) or nwb (DANDI 000402 scan files)")
    etl.add_argument("path", nargs="?", default=None,
                     help="source path (blueprint: the release root; files: a folder of CAVE "
                          "table exports; nwb: .nwb files or folders)")
    etl.add_argument("--seed", type=int, default=0, help="synthetic: generator seed (default 0)")
    etl.add_argument("--mode", choices=["strict", "lenient"], default="strict",
                     help="blueprint: abort on a failing field (strict) or skip and report it")
    etl.add_argument("--fields", default=None, help="blueprint: comma-separated fields, e.g. 6_6_2,5_6_8")
    etl.add_argument("--stream", action="store_true",
                     help="files: stream the synapse export (one .csv.gz, as the static release "
                          "publishes it) in checkpointed chunks with bounded memory; an interrupted "
                          "load resumes from its last chunk")
    etl.add_argument("--connections-only", action="store_true",
                     help="files: store connections among the selected cells, not their synapses "
                          "(implies --stream)")
    etl.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_store(etl)
    add_nwb_arguments(etl)
    cave_cli.add_arguments(etl)
    etl.set_defaults(handler=_cmd_etl)
    _register_refresh(sub, add_store)

    status = sub.add_parser("status", help="list snapshots with row counts; --verify, --repair")
    status.add_argument("--format", choices=["table", "csv", "json"], default="table")
    status.add_argument("--verify", action="store_true",
                        help="hash every file of every snapshot again and compare with the sha256 "
                             "recorded at commit; exit 2 naming each damaged or missing file")
    status.add_argument("--repair", action="store_true",
                        help="rebuild a missing or damaged catalog (store.duckdb) from raw/, record "
                             "the hashes of snapshots stored by an earlier version, then verify")
    add_store(status)
    status.set_defaults(handler=_cmd_status)

    sql = sub.add_parser("sql", help="run a read-only SQL query over the store")
    sql.add_argument("query", help='e.g. "SELECT count(*) FROM functional_units"')
    sql.add_argument("--snapshot", default=None,
                     help="snapshot id the tables refer to; 'all' for every snapshot (default: latest)")
    sql.add_argument("--format", choices=["table", "csv", "parquet"], default="table")
    sql.add_argument("--out", default=None, help="write the result here (required for parquet)")
    add_store(sql)
    sql.set_defaults(handler=_cmd_sql)

    aggregate_cli.register(sub, add_store)


def _register_refresh(sub: argparse._SubParsersAction,
                      add_store: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("refresh", help="pull the newest CAVE materialization if the store lacks it "
                                       "(for cron / systemd timers)")
    cave_cli.add_arguments(p, with_version=False)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--rebuild", action="store_true",
                   help="after storing a new snapshot, build every recipe of the recipe file on it "
                        "(as `cxp priors rebuild`); nothing when the store was up to date")
    add_store(p)
    p.set_defaults(handler=run_refresh)


def run_refresh(args: argparse.Namespace) -> None:
    """``cxp refresh``: exit 0 and say so when the newest version is already stored."""
    after = None
    if getattr(args, "rebuild", False):
        hook = getattr(args, "rebuild_hook", None)
        if hook is None:
            raise EtlError("--rebuild needs the priors stage's command line (run `cxp refresh "
                           "--rebuild`, which registers it); nothing was refreshed")
        after = hook(args)
    config = cave_cli.config_from_args(args)
    out = refresh(config, store=args.store, progress=not args.no_progress,
                  on_pull=lambda v: print(f"pulling {config.datastack} materialization v{v} ...",
                                          file=sys.stderr, flush=True))
    if not out["pulled"]:
        print(f"up to date: {config.datastack} materialization v{out['version']} is already stored "
              f"in {out['store']}; nothing to do" + ("; no rebuild" if after else ""))
        return
    verb = "stored" if out["created"] else "already stored (same content hash), nothing written:"
    counts = json.loads(out["row_counts"])
    print(f"{verb} snapshot {out['snapshot_id']} ({config.datastack} v{out['version']}) in {out['store']}")
    print("  " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(cave_cli.describe(out))
    if after is not None:
        if out["created"]:
            sys.stdout.flush()
            after(out)
        else:
            print("no new snapshot; no rebuild")


def _emit(df: pd.DataFrame, fmt: str, out: str | None) -> None:
    if out and Path(out).is_dir():
        raise CxpError(f"--out {out} is a directory; give a file path")
    if fmt == "parquet":
        if not out:
            raise CxpError("--format parquet needs --out PATH")
        with atomic_path(out) as tmp:
            df.to_parquet(tmp, index=False)
        print(f"wrote {len(df)} rows to {out}", file=sys.stderr)
        return
    if fmt == "csv":
        text = df.to_csv(index=False)
    elif fmt == "json":
        text = df.to_json(orient="records", date_format="iso", indent=2) + "\n"
    else:
        with pd.option_context("display.max_columns", None, "display.width", 200,
                               "display.max_colwidth", 60):
            text = df.to_string(index=False) + "\n"
    if out:
        atomic_write_text(out, text)
    else:
        sys.stdout.write(text)


def _cmd_etl(args: argparse.Namespace) -> None:
    if args.source not in ("files", "cave") and args.profile is not None:
        raise CxpError(f"--profile is read by --source files and cave only; found --source "
                       f"{args.source}")
    nwb_paths, events = resolve_nwb_arguments(args, progress=not args.no_progress)
    version = getattr(args, "cave_version", "latest")
    options = {"synthetic": {"seed": args.seed},
               "blueprint": {"mode": args.mode,
                             "fields": args.fields.split(",") if args.fields is not None else None},
               "cave": {"cave": cave_cli.config_from_args(args) if args.source == "cave" else None},
               "files": {"neurons": args.neurons, "datastack": args.datastack, "profile": args.profile,
                         "synapses": not args.connections_only, "stream": args.stream,
                         "materialization_version": version if isinstance(version, int) else None},
               "nwb": {"events": events}}
    snap = run_etl(args.source, nwb_paths if args.source == "nwb" else args.path, store=args.store,
                   progress=not args.no_progress, **options[args.source])
    verb = ("stored" if snap["created"] else
            f"repaired ({len(snap['repaired'])} damaged or missing file(s) rewritten)"
            if snap.get("repaired") else "already stored (same content hash), nothing written:")
    counts = json.loads(snap["row_counts"])
    print(f"{verb} snapshot {snap['snapshot_id']} from source {snap['source']!r} in {snap['store']}")
    print("  " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    report = json.loads(snap["report"])
    if report.get("fields_skipped"):
        print(f"  skipped fields: {', '.join(report['fields_skipped'])} (see `cxp sql \"SELECT report "
              "FROM snapshots\"`)")
    if snap["source"] == "cave":
        print(cave_cli.describe(snap))
    if snap["source"] == "files":
        params = json.loads(snap["parameters"])
        version = snap.get("materialization_version")
        print(f"  datastack {snap.get('datastack') or 'not given (--datastack)'}, materialization "
              f"{'v' + str(version) if version is not None else 'version unknown'}; "
              f"neurons: {params.get('neurons')}")
    for line in (describe_files(report) if snap["source"] == "files" else []) + describe_exclusions(report):
        print(line)
    if snap["source"] == "nwb":
        lines = describe_nwb(snap)
        if lines:
            print(lines)
    if snap["source"] == "synthetic":
        print("  note: this snapshot is SYNTHETIC (generated, not measured data)")


def _cmd_status(args: argparse.Namespace) -> None:
    from time import perf_counter

    store = Store(args.store)
    t0 = perf_counter()
    checked = None
    if args.repair:  # raises (exit 2) naming what is still damaged afterwards
        repaired = store.repair()
        print(f"store {store.directory}: {repaired.summary() or 'nothing to repair'}",
              file=sys.stdout if args.format == "table" else sys.stderr)
        checked = repaired.verified
    elif args.verify:  # raises (exit 2) naming each damaged or missing file
        checked = store.verify()
    table = store.status()
    if table.empty:
        print(f"store {store.directory}: no snapshots yet")
    else:
        if args.format == "table":
            print(f"store {store.directory}: {len(table)} snapshot(s); latest "
                  f"{table.snapshot_id.iloc[-1]}")
        _emit(table, args.format, None)
    if checked is not None:
        print(f"all {checked.files} files of {len(checked.snapshots)} snapshot(s) verified (sha256 "
              f"of {checked.bytes / 1e6:,.1f} MB, {perf_counter() - t0:.2f} s)",
              file=sys.stdout if args.format == "table" else sys.stderr)


def _cmd_sql(args: argparse.Namespace) -> None:
    store = Store(args.store)
    if args.format == "parquet" and not args.out:
        raise CxpError("--format parquet needs --out PATH")
    if args.out:
        store.check_output(args.out)  # never into the store (its catalog, raw files, lock)
    if args.out and args.format in ("csv", "parquet"):  # streamed: never the whole result in memory
        n = store.sql_to_file(args.query, args.out, format=args.format, snapshot=args.snapshot)
        print(f"wrote {n} rows to {args.out}", file=sys.stderr)
        return
    _emit(store.sql(args.query, snapshot=args.snapshot), args.format, args.out)
