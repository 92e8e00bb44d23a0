"""Every module of the package tree is in the wheel, and nothing else: `make lint` runs this.

Builds a wheel of the working tree (no dependencies, no build isolation) and compares its ``.py``
files with those under ``src/connectome_priors`` (symbolic links to the stage folders followed).
A hand-kept package list, an ``exclude`` or a build backend change that leaves a module out of
the wheel is what this catches (it once shipped without the NWB source). Exit 1 naming what
differs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "connectome_priors"


def tree_modules() -> set[str]:
    out = set()
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):  # the links to the stages
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py") and name != "_version.py":
                out.add((Path(folder) / name).relative_to(PACKAGE.parent).as_posix())
    return out


def wheel_modules(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return {n for n in z.namelist() if n.endswith(".py") and not n.endswith("/_version.py")}


def main(argv: list[str]) -> int:
    """``check_wheel.py`` builds a wheel of the tree; ``check_wheel.py WHEEL`` checks that one."""
    with tempfile.TemporaryDirectory() as tmp:
        if argv:
            wheel = Path(argv[0])
        else:
            shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools reuses a stale one
            try:
                subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                                "--no-build-isolation", "-w", tmp, str(ROOT)], check=True)
            finally:
                shutil.rmtree(ROOT / "build", ignore_errors=True)
            wheel = next(Path(tmp).glob("connectome_priors-*.whl"))
        shipped = wheel_modules(wheel)
    tree = tree_modules()
    missing, extra = sorted(tree - shipped), sorted(shipped - tree)
    if missing or extra:
        print(f"wheel {wheel.name}: {len(missing)} module(s) of the tree missing "
              f"({', '.join(missing) or 'none'}); {len(extra)} not in the tree "
              f"({', '.join(extra) or 'none'}). Packages are found (pyproject "
              "[tool.setuptools.packages.find]); a module left out means the packaging changed.")
        return 1
    print(f"wheel {wheel.name}: all {len(tree)} modules of src/connectome_priors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
