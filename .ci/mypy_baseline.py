"""`mypy -p connectome_priors` against a baseline that may only shrink: `make lint` runs this.

The baseline (.ci/mypy-baseline.json) holds the number of errors per module when type checking
started (issue 21). A module with more errors than its baseline, or a new module with any, fails
(exit 1, naming them and the errors); a module with fewer says so, and ``--update`` writes the
smaller counts back. Run from anywhere: mypy checks the installed package (every module of the
one physical tree).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / ".ci" / "mypy-baseline.json"
_ERROR = re.compile(r"^(?P<file>[^:]+\.py):\d+: error: ")


def current() -> tuple[Counter, list[str], str]:
    done = subprocess.run([sys.executable, "-m", "mypy", "-p", "connectome_priors",
                           "--ignore-missing-imports", "--no-error-summary",
                           "--cache-dir", str(ROOT / ".cxp" / "mypy-cache")],
                          cwd=ROOT / "src", capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if _ERROR.match(line)]
    counts = Counter(_ERROR.match(line)["file"] for line in lines)  # as mypy names them
    return counts, lines, done.stderr


def main(argv: list[str]) -> int:
    counts, lines, err = current()
    if err.strip() and not lines:
        print(err.strip())
        return 1
    base = json.loads(BASELINE.read_text()) if BASELINE.is_file() else {}
    worse = {f: (n, base.get(f, 0)) for f, n in counts.items() if n > base.get(f, 0)}
    better = {f: (counts.get(f, 0), n) for f, n in base.items() if counts.get(f, 0) < n}
    if "--update" in argv:
        BASELINE.write_text(json.dumps(dict(sorted(counts.items())), indent=1) + "\n")
        print(f"mypy baseline written: {sum(counts.values())} errors in {len(counts)} modules")
        return 0
    if worse:
        for f, (n, b) in sorted(worse.items()):
            print(f"{f}: {n} mypy errors, baseline {b}:")
            print("\n".join("  " + line for line in lines if line.startswith(f + ":")))
        return 1
    print(f"mypy: {sum(counts.values())} errors in {len(counts)} modules, none above the baseline"
          + (f"; {len(better)} module(s) below it (`python .ci/mypy_baseline.py --update`)"
             if better else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
