"""``python -m connectome_priors.testing.cave_standin``: serve a stand-in until interrupted."""

from __future__ import annotations

import argparse
import time

from .deployment import DATASTACK, DEFAULT_ROW_CAP
from .fixture import minnie_fixture
from .server import StandinCave

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Serve a stand-in CAVE until interrupted (offline demos)."""
    p = argparse.ArgumentParser(prog="python -m connectome_priors.testing.cave_standin",
                                description="Serve a synthetic minnie65-shaped CAVE stand-in.")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--cells", type=int, default=400)
    p.add_argument("--synapses", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--row-cap", type=int, default=DEFAULT_ROW_CAP)
    p.add_argument("--coregistration", choices=["reference", "bound_point"], default="reference",
                   help="serve co-registration as a reference table (as MICrONS) or a bound point table")
    p.add_argument("--split-frozen", action="store_true",
                   help="serve frozen tables split (annotation + segmentation) instead of merged")
    args = p.parse_args(argv)
    fixture = minnie_fixture(n_cells=args.cells, n_synapses=args.synapses, seed=args.seed,
                             coregistration=args.coregistration)
    server = StandinCave(fixture, row_cap=args.row_cap, port=args.port,
                         split_frozen=args.split_frozen).start()
    print(f"stand-in CAVE (synthetic data) at {server.url}, datastack {DATASTACK}, versions "
          f"{sorted(server.state.versions)}; Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0
