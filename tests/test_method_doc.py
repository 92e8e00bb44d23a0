"""docs/method.md: every section the code cites by anchor exists, and the anchors stay unique."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "method.md"
_CITATION = re.compile(r"docs/method\.md#([a-z0-9-]+)")
_ANCHOR = re.compile(r'<a id="([a-z0-9-]+)"></a>')
_SEARCHED = ("etl", "priors_store", "training", "schemas", "src", "bench", "tests")


def _anchors(text: str) -> list[str]:
    return _ANCHOR.findall(text)


def _citations() -> dict[str, set[str]]:
    """Anchor -> files citing it (Python and TOML sources, and the README)."""
    found: dict[str, set[str]] = {}
    files = [REPO / "README.md", REPO / "pyproject.toml"]
    for top in _SEARCHED:
        files += [p for p in (REPO / top).rglob("*") if p.suffix in (".py", ".toml")
                  and not p.is_symlink() and ".venv" not in p.parts]
    for path in files:
        if path.is_file():
            for anchor in _CITATION.findall(path.read_text(encoding="utf-8")):
                found.setdefault(anchor, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_cited_section_exists():
    anchors = set(_anchors(DOC.read_text(encoding="utf-8")))
    missing = {a: sorted(f) for a, f in _citations().items() if a not in anchors}
    assert not missing, f"docs/method.md lacks the anchors these files cite: {missing}"


def test_anchors_are_unique_and_the_sections_the_code_relies_on_are_there():
    anchors = _anchors(DOC.read_text(encoding="utf-8"))
    assert len(anchors) == len(set(anchors)), sorted(a for a in anchors if anchors.count(a) > 1)
    for needed in ("data", "verified-facts", "connectome-order", "priors", "protocol", "tasks",
                   "initializations", "regularizers", "variants", "metrics", "statistics",
                   "published-results", "flaws", "pitfalls", "speed", "sttc-speed",
                   "graph-libraries", *(f"flaw-{i}" for i in range(1, 10))):
        assert needed in anchors, needed


def test_a_citation_of_a_missing_section_is_caught():
    text = "see docs/method.md#" + "no-such-section"  # split: this file cites nothing itself
    assert set(_CITATION.findall(text)) - set(
        _anchors(DOC.read_text(encoding="utf-8"))) == {"no-such-section"}
