"""``cxp``: the command line, a thin layer over the library.

The parser is assembled here from the stages, each registering its own subcommands
(``register(subparsers, add_store)`` in ``etl.cli``, ``priors_store.cli``, ``training.cli`` and
``testing.cli``); every subcommand sets ``handler``. Any :class:`~connectome_priors.kernel.errors.CxpError`
becomes its message and exit status 2 (``cxp --debug ...`` shows the traceback instead); Ctrl-C
exits 130; output closed early by its reader (``cxp status | head -1``) is a one-line error, exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..kernel.errors import CxpError
from ..kernel.settings import env_name

__all__ = ["build_parser", "main"]


def add_store(p: argparse.ArgumentParser) -> None:
    """The ``--store`` option shared by the commands that read or write a neuron store."""
    p.add_argument("--store", metavar="DIR", default=None,
                   help=f"neuron store directory (default: ${env_name('store')}, else the config "
                        "file, else ~/.local/share/connectome-priors/store)")


def build_parser() -> argparse.ArgumentParser:
    """The ``cxp`` argument parser, with every stage's subcommands."""
    from ..etl import cli as etl_cli  # stages load only when the CLI is built
    from ..priors_store import cli as priors_cli
    from ..testing import cli as testing_cli
    from ..training import cli as training_cli

    parser = argparse.ArgumentParser(prog="cxp", description="Connectome priors: MICrONS structure "
                                     "and activity -> versioned prior artifacts.")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of the one-line message")
    sub = parser.add_subparsers(dest="command", required=True)
    for stage in (etl_cli, priors_cli, training_cli, testing_cli):
        stage.register(sub, add_store)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cxp`` console script; returns the exit status.

    A :class:`CxpError` prints ``cxp <command>: error: <message>`` and returns 2 (``cxp --debug``
    re-raises it, traceback and all); Ctrl-C returns 130; a reader that closes the pipe early
    (``cxp status | head -1``) ends the command with a one-line message and 2, no traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except CxpError as err:
        if args.debug:
            raise
        print(f"cxp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        print(f"cxp {args.command}: error: the output was closed before all of it was written "
              "(broken pipe, e.g. `| head`); nothing else was affected", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"cxp {args.command}: interrupted; the store is unchanged by the unfinished step",
              file=sys.stderr)
        return 130
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit-time flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests) or already closed
        pass
