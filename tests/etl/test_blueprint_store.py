"""The released study data end to end: all 54 fields into a store, queried with SQL."""

from __future__ import annotations

import pytest

from connectome_priors.cli import main
from connectome_priors.etl.store import Store

pytestmark = pytest.mark.needs_shared_data

# Mean distance (um) of connected pairs vs all pairs of field 6_6_2, among that field's units.
DISTANCES_6_6_2 = """
WITH f AS (
    SELECT u.nucleus_id, n.x_nm / 1000 AS x, n.y_nm / 1000 AS y, n.z_nm / 1000 AS z
    FROM functional_units u JOIN neurons n USING (nucleus_id)
    WHERE u.session = 6 AND u.scan_idx = 6 AND u.field = 2
),
pairs AS (
    SELECT a.nucleus_id AS pre, b.nucleus_id AS post,
           sqrt((a.x - b.x)^2 + (a.y - b.y)^2 + (a.z - b.z)^2) AS d_um
    FROM f a JOIN f b ON a.nucleus_id <> b.nucleus_id
)
SELECT
    avg(d_um) FILTER (WHERE c.n_synapses IS NOT NULL) AS connected_um,
    avg(d_um) AS all_pairs_um,
    count(c.n_synapses) AS n_connected
FROM pairs p LEFT JOIN connections c ON c.pre_nucleus_id = p.pre AND c.post_nucleus_id = p.post
"""


def test_all_fields_into_the_store_and_sql(tmp_path, blueprint_root, capsys):
    store_dir = str(tmp_path / "store")
    assert main(["etl", "--source", "blueprint", str(blueprint_root), "--store", store_dir,
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sql", "select count(*) from functional_units", "--store", store_dir,
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "18834"
    d = Store(store_dir).sql(DISTANCES_6_6_2).iloc[0]
    # 6_6_2 has 316 connected ordered pairs; aligned, they lie ~91 um apart against ~318 um
    assert d.n_connected == 316
    assert d.connected_um == pytest.approx(91, abs=3)
    assert d.all_pairs_um == pytest.approx(318, abs=3)
