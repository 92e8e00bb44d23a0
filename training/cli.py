"""``cxp train``: train task x variant x runs on a prior artifact and write a report."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
import time
from pathlib import Path

from connectome_priors.etl.store import Store

from .config import ExperimentConfig, FitConfig
from .errors import TrainingError
from .grammar import default_variants

#: Defaults come from the dataclasses.
_E = {f.name: f.default for f in fields(ExperimentConfig)}
_F = FitConfig()

__all__ = ["register", "run", "parse_variants"]


def register(sub: argparse._SubParsersAction, add_store) -> None:
    """Add the ``train`` command to the ``cxp`` parser."""
    t = sub.add_parser("train", help="train RNN variants on a prior artifact and report")
    t.add_argument("--prior", required=True, metavar="NAME[@VERSION]",
                   help="prior artifact, e.g. field_6_6_2 or field_6_6_2@93410880")
    t.add_argument("--tasks", default="T1,T2,T3", help="comma-separated tasks (default T1,T2,T3)")
    t.add_argument("--variants", default="all",
                   help="'all' (the eleven in canonical order, plus the controls WdiagD*C, "
                        "WoffD*C, WrandD*C under --protocol corrected) or a comma-separated "
                        "list, e.g. 'W*D*C,W'; the connectome-constrained Wc, WcD*, WcD*C and "
                        "their control Wc! (init from the signed wiring, Dale's law kept) are "
                        "named explicitly. On a prior without a kind some variants read "
                        "(a structure-only prior has no w_bio_modulation, which the W*, W!, "
                        "Wdiag, Woff and Wrand inits need), 'all' trains the variants it "
                        "supports and prints a note naming those left out; a list naming one "
                        "it cannot run is refused before anything is trained (exit 2)")
    t.add_argument("--runs", type=int, default=_E["runs"], help=f"runs per variant (default {_E['runs']})")
    t.add_argument("--protocol", choices=["corrected", "paper"], default=_E["protocol"])
    t.add_argument("--epochs", type=int, default=_F.epochs)
    t.add_argument("--n-train", type=int, default=_F.n_train)
    t.add_argument("--n-val", type=int, default=_F.n_val)
    t.add_argument("--n-test", type=int, default=_F.n_test)
    t.add_argument("--lr", type=float, default=_F.lr, help=f"Adam learning rate (default {_F.lr})")
    t.add_argument("--batch-size", type=int, default=_F.batch_size,
                   help=f"trials per update (default {_F.batch_size})")
    t.add_argument("--input-noise", type=float, default=_F.input_noise,
                   help=f"std of the noise on training inputs (default {_F.input_noise})")
    t.add_argument("--criterion", type=float, default=_F.criterion,
                   help=f"validation accuracy counted as learned (default {_F.criterion})")
    t.add_argument("--eval-batch", type=int, default=_F.eval_batch,
                   help=f"trials per evaluation pass, memory only (default {_F.eval_batch})")
    t.add_argument("--positive-only", action="store_true",
                   help="clip recurrent weights at >= 0 after every update")
    t.add_argument("--seed", type=int, default=_E["seed"], help=f"master seed (default {_E['seed']})")
    t.add_argument("--runs-per-batch", type=int, default=None, metavar="K",
                   help="runs trained together as one batched model (default: automatic, "
                        "5 at N=312; results do not depend on it)")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    t.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                   help="spread the task x variant cells over a Dask cluster: 'local' (a "
                        "LocalCluster, one single-threaded worker per core) or an address such "
                        "as tcp://127.0.0.1:8786 (default $CXP_DASK_SCHEDULER, else train here)")
    t.add_argument("--out", required=True, metavar="DIR",
                   help="output folder; rerunning the same command into it resumes: finished "
                        "task x variant cells are reused")
    t.add_argument("--artifacts", metavar="DIR", default=None,
                   help="artifact root (default: $CXP_ARTIFACTS, else <store>/artifacts)")
    t.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_store(t)
    t.set_defaults(handler=run)


def _is_all(text: str) -> bool:
    return text.strip().lower() == "all"


def parse_variants(text: str, protocol: str = "corrected") -> tuple[str, ...]:
    """``"all"`` or a comma-separated list of variant names (validated later)."""
    if _is_all(text):
        return default_variants(protocol)
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise TrainingError(f"--variants {text!r} names no variant; use 'all' or e.g. 'W*D*C,W'")
    return names


def run(args: argparse.Namespace) -> None:
    """Execute a parsed ``cxp train`` command."""
    import torch  # heavy imports only when training

    from connectome_priors.priors_store.config import artifact_root
    from connectome_priors.priors_store.names import parse_ref
    from connectome_priors.priors_store.reader import load

    from .experiment import check_kinds, run_experiment, supported_variants
    from .report import write_report
    from .stats import compare, summarize

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        fit = FitConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        input_noise=args.input_noise, n_train=args.n_train, n_val=args.n_val,
                        n_test=args.n_test, criterion=args.criterion,
                        positive_only=args.positive_only, eval_batch=args.eval_batch)
        config = ExperimentConfig(
            tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
            variants=parse_variants(args.variants, args.protocol), runs=args.runs,
            protocol=args.protocol, seed=args.seed, runs_per_batch=args.runs_per_batch, fit=fit)
    except TrainingError:
        raise
    except ValueError as err:
        raise TrainingError(str(err)) from err
    root = artifact_root(args.artifacts, store=Store(args.store).directory)
    prior = load(*parse_ref(args.prior), root=root)
    if _is_all(args.variants):  # 'all': what the prior supports, saying what it leaves out
        kept, note = supported_variants(prior, config.variants, protocol=config.protocol)
        if note:
            config = replace(config, variants=kept)
            print(f"note: --variants all {note}")
    check_kinds(prior, config.variants, protocol=config.protocol)  # a list: all or nothing
    snap = prior.manifest["source_snapshot"]
    print(f"training on {prior.name}@{prior.version} ({len(prior.neurons)} units, snapshot "
          f"{snap['snapshot_id']}{', SYNTHETIC' if snap.get('synthetic') else ''}): "
          f"{len(config.tasks)} task(s) x {len(config.variants)} variant(s) x {config.runs} runs, "
          f"protocol {config.protocol}")
    t0 = time.perf_counter()
    out = Path(args.out)
    runs = run_experiment(prior, config, out_dir=out, progress=not args.no_progress,
                          scheduler=args.dask_scheduler)
    stats = {m: compare(runs, m) for m in ("test_accuracy", "modularity_q", "small_world_sigma")}
    path = write_report(out, runs, summarize(runs), stats, prior.manifest, config)
    n_div = int(runs["diverged"].sum())
    print(f"trained {len(runs)} runs in {time.perf_counter() - t0:.1f} s"
          f"{f' ({n_div} diverged)' if n_div else ''}")
    print(f"report: {path}")
