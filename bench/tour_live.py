"""Re-record the README's live-source tour: CAVE (the stand-in server, synthetic data) and NWB.

Starts ``python -m connectome_priors.testing.cave_standin --port 8765`` in its own process, runs
the tour's commands against it into ``/tmp/tour-live`` (removed first), writes a SYNTHETIC scan file
of scan 4-7 in the DANDI 000402 layout whose fields hold as many ROIs as the stand-in's fields, and
prints each command and its output as the README shows them.

    .venv/bin/python bench/tour_live.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

PORT = 8765
URL = f"http://127.0.0.1:{PORT}"
BASE = Path("/tmp/tour-live")
CXP = str(Path(sys.executable).with_name("cxp"))


def show(*argv: str, env: dict) -> str:
    print("$ cxp " + " ".join(argv[1:]).replace(str(BASE) + "/", ""), flush=True)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    out = (done.stdout + done.stderr).rstrip()
    print(out, flush=True)
    if done.returncode != 0:
        raise SystemExit(f"{argv} exited {done.returncode}")
    return out


def scan_file(store: Path, snapshot: str, path: Path) -> Path:
    """A scan file of 4-7 whose fields hold the stand-in's ROI counts (its unit numbering)."""
    from connectome_priors.etl.store import Store
    from connectome_priors.testing.nwb_writer import SynthField, write_scan_file

    units = Store(store).sql("SELECT field, unit_id FROM functional_units WHERE session = 4 AND "
                             "scan_idx = 7", snapshot=snapshot)
    per_field = next(p for p in range(1, int(units.unit_id.max()) + 1)
                     if (((units.unit_id - 1) // p + 1) == units.field).all())
    rng = np.random.default_rng(0)
    fields = [SynthField(k, [np.sort(rng.choice(np.arange(2, 598), int(rng.integers(15, 40)),
                                                replace=False)) for _ in range(per_field)])
              for k in range(1, int(units.field.max()) + 1)]
    return write_scan_file(path, fields, session=4, scan_idx=7, n_frames=600, frame_rate_hz=6.3009)


def main() -> None:
    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    env = {**os.environ, "CXP_STORE": str(BASE / "store"), "HOME": str(BASE / "home")}
    env.pop("CXP_CAVE_TOKEN", None)
    server = subprocess.Popen([sys.executable, "-m", "connectome_priors.testing.cave_standin",
                               "--port", str(PORT)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(URL, timeout=1)
                break
            except OSError as err:
                if getattr(err, "code", None):  # an HTTP answer: the server is up
                    break
                time.sleep(0.1)
        print("## Live CAVE data\n")
        show(CXP, "etl", "--source", "cave", "--server", URL, "--datastack", "minnie65_public",
             "--version", "1", "--no-progress", env=env)
        show(CXP, "refresh", "--server", URL, "--no-progress", env=env)
        show(CXP, "refresh", "--server", URL, "--no-progress", env=env)
    finally:
        server.terminate()
        server.wait(timeout=30)
    from connectome_priors.etl.store import Store

    snaps = Store(BASE / "store").snapshots()
    cave_v2 = snaps[snaps.source == "cave"].snapshot_id.iloc[-1]
    path = scan_file(BASE / "store", cave_v2, BASE / "sub-17797_ses-4-scan-7_behavior+image+ophys.nwb")
    print("\n## Activity from NWB\n")
    out = show(CXP, "etl", "--source", "nwb", str(path), "--no-progress", env=env)
    nwb = out.split("stored snapshot ")[1].split()[0]
    units = Store(BASE / "store").sql("SELECT field, count(*) AS n FROM functional_units WHERE "
                                      "session = 4 AND scan_idx = 7 GROUP BY field ORDER BY n DESC",
                                      snapshot=cave_v2)
    field = int(units.field.iloc[0])
    show(CXP, "priors", "build", f"cave_4_7_{field}", "--fields", f"4_7_{field}", "--snapshot",
         cave_v2, "--activity-snapshot", nwb, "--no-progress", env=env)


if __name__ == "__main__":
    main()
