"""What an extraction read and left out, in words: the lines ``cxp etl`` prints from a snapshot's
report (every file with its role and rows, files not used or not recognized, every exclusion
with its count and reason)."""

from __future__ import annotations

import re

__all__ = ["describe_files", "describe_exclusions"]

#: Report key (a regular expression; group 1 names the table) -> what the count means.
_REASONS: tuple[tuple[str, str], ...] = (
    (r"excluded_root_id_zero", "nuclei with root id 0 (no segment)"),
    (r"excluded_multi_nucleus_nuclei", "nuclei sharing a root id with another nucleus (a merge; "
                                       "{excluded_multi_nucleus_roots} root ids)"),
    (r"nucleus_duplicate_ids_dropped", "repeated nucleus ids"),
    (r"glia", "glia (never neurons of a prior)"),
    (r"celltype_duplicates_dropped", "further cell-type rows of a nucleus (the first is used)"),
    (r"units_ambiguous_dropped", "functional units co-registered to several cells"),
    (r"synapse_duplicate_ids_dropped", "repeated synapse ids"),
    (r"autapses_not_counted", "autapses (pre = post cell), not counted in connections"),
    (r"(.+)_invalid_rows", "rows of {0} marked invalid"),
    (r"(.+)_unmatched_rows", "rows of {0} naming no valid nucleus"),
    (r"(.+)_ambiguous_rows", "rows of {0} whose root id carries several nuclei"),
    (r"(.+)_rows_not_between_selected_cells", "{0} rows not between two selected cells"),
    (r"(.+)_rows_of_no_selected_unit", "rows of {0} naming no unit of a selected cell"),
    (r"(.+)_rows_summed_into_one_pair", "rows of {0} summed into a pair another row also names"),
)


def describe_files(report: dict) -> list[str]:
    """One line per file of a ``files`` extraction: read (role, rows), not used, not recognized."""
    lines = []
    for f in report.get("files", []):
        rows = f"{f['rows']:,} rows"
        if "kept" in f:
            rows += f", {f['kept']:,} between selected cells"
        lines.append(f"  read {f['file']}: {f['role']}, {rows}")
    for f in report.get("files_not_used", []):
        lines.append(f"  not used {f['file']}: {f['why']}")
    if report.get("files_not_recognized"):
        lines.append("  not recognized (not read): " + ", ".join(report["files_not_recognized"]))
    return lines


def describe_exclusions(report: dict) -> list[str]:
    """One line per nonzero exclusion count of a report, with its reason."""
    lines = []
    for key, value in sorted(report.items()):
        if not isinstance(value, int) or isinstance(value, bool) or value == 0:
            continue
        for pattern, reason in _REASONS:
            m = re.fullmatch(pattern, key)
            if m:
                lines.append(f"  left out: {value:,} " + reason.format(*m.groups(), **report))
                break
    return lines
