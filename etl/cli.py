"""``cxp``: the command-line face of connectome-priors (a thin layer over the library)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from .config import STORE_ENV
from .errors import CxpError
from .pipeline import run_etl
from .sources.cave import cli as cave_cli
from .sources.cave.client import CaveConfig
from .sources.nwb.cli import add_arguments as add_nwb_arguments
from .sources.nwb.cli import resolve_arguments as resolve_nwb_arguments
from .store import Store

__all__ = ["main", "build_parser"]


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="DIR", default=None,
                   help=f"store directory (default: ${STORE_ENV}, else "
                        "~/.local/share/connectome-priors/store)")


def build_parser() -> argparse.ArgumentParser:
    """The ``cxp`` argument parser."""
    parser = argparse.ArgumentParser(prog="cxp", description="Connectome priors: MICrONS structure "
                                     "and activity -> versioned prior artifacts.")
    sub = parser.add_subparsers(dest="command", required=True)

    etl = sub.add_parser("etl", help="extract a source into the neuron store (one snapshot)")
    etl.add_argument("--source", choices=["synthetic", "blueprint", "cave", "files", "nwb"],
                     default="synthetic",
                     help="synthetic (embedded default, generated), blueprint (the study's arrays), "
                          "cave (a CAVE server through caveclient), files (static CAVE table "
                          "exports) or nwb (DANDI 000402 scan files)")
    etl.add_argument("path", nargs="?", default=None,
                     help="source path (blueprint: the release root; files: a folder of CAVE "
                          "table exports, read with --neurons, --datastack (recorded; default "
                          "minnie65_public) and --version N (the version exported; default: a "
                          "v<N> folder name); nwb: .nwb files or folders)")
    etl.add_argument("--seed", type=int, default=0, help="synthetic: generator seed (default 0)")
    etl.add_argument("--mode", choices=["strict", "lenient"], default="strict",
                     help="blueprint: abort on a failing field (strict) or skip and report it")
    etl.add_argument("--fields", default=None, help="blueprint: comma-separated fields, e.g. 6_6_2,5_6_8")
    etl.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_store(etl)
    add_nwb_arguments(etl)
    cave_cli.add_arguments(etl)
    cave_cli.register_refresh(sub, _add_store)

    status = sub.add_parser("status", help="list snapshots with row counts")
    status.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _add_store(status)

    sql = sub.add_parser("sql", help="run a read-only SQL query over the store")
    sql.add_argument("query", help='e.g. "SELECT count(*) FROM functional_units"')
    sql.add_argument("--snapshot", default=None,
                     help="snapshot id the tables refer to; 'all' for every snapshot (default: latest)")
    sql.add_argument("--format", choices=["table", "csv", "parquet"], default="table")
    sql.add_argument("--out", default=None, help="write the result here (required for parquet)")
    _add_store(sql)

    from priors_store.cli import register  # noqa: PLC0415 (the next stage adds its own commands)

    register(sub, _add_store)
    from training.cli import register as register_train  # noqa: PLC0415

    register_train(sub, _add_store)
    from .aggregate.cli import register as register_aggregate  # noqa: PLC0415

    register_aggregate(sub, _add_store)
    return parser


def _emit(df: pd.DataFrame, fmt: str, out: str | None) -> None:
    if fmt == "parquet":
        if not out:
            raise CxpError("--format parquet needs --out PATH")
        df.to_parquet(out, index=False)
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
        Path(out).write_text(text)
    else:
        sys.stdout.write(text)


def _cave_config(args: argparse.Namespace) -> CaveConfig | None:
    """The CAVE options of ``cxp etl``: all of them for ``cave``; for ``files`` the ones that
    describe the data rather than the server (``--neurons``, ``--datastack``, ``--version``)."""
    if args.source == "files":
        return CaveConfig(datastack=args.datastack, version=args.cave_version, neurons=args.neurons)
    return cave_cli.config_from_args(args)


def _cmd_etl(args: argparse.Namespace) -> None:
    fields = args.fields.split(",") if args.fields else None
    nwb_paths, events = resolve_nwb_arguments(args, progress=not args.no_progress)
    snap = run_etl(args.source, nwb_paths if args.source == "nwb" else args.path, store=args.store,
                   mode=args.mode, seed=args.seed, fields=fields, progress=not args.no_progress,
                   events=events, cave=_cave_config(args))
    verb = "stored" if snap["created"] else "already stored (same content hash), nothing written:"
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
        print(f"  {snap.get('datastack')} materialization "
              f"{'v' + str(version) if version is not None else 'version unknown'}; "
              f"neurons: {params.get('neurons')}")
    if snap["source"] == "synthetic":
        print("  note: this snapshot is SYNTHETIC (generated, not measured data)")


def _cmd_status(args: argparse.Namespace) -> None:
    store = Store(args.store)
    table = store.status()
    if table.empty:
        print(f"store {store.directory}: no snapshots yet")
        return
    if args.format == "table":
        print(f"store {store.directory}: {len(table)} snapshot(s); latest {table.snapshot_id.iloc[-1]}")
    _emit(table, args.format, None)


def _cmd_sql(args: argparse.Namespace) -> None:
    _emit(Store(args.store).sql(args.query, snapshot=args.snapshot), args.format, args.out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cxp`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    from priors_store.cli import run as run_priors  # noqa: PLC0415
    from training.cli import run as run_train  # noqa: PLC0415

    handlers = {"etl": _cmd_etl, "status": _cmd_status, "sql": _cmd_sql,
                "refresh": cave_cli.run_refresh, "priors": run_priors,
                "train": run_train}
    from .aggregate.cli import run_aggregate, run_synth  # noqa: PLC0415

    handlers.update({"aggregate": run_aggregate, "synth-synapses": run_synth})
    try:
        handlers[args.command](args)
    except CxpError as err:
        print(f"cxp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cxp {args.command}: interrupted; the store is unchanged by the unfinished step",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
