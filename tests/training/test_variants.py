"""Tests of training/variants.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from connectome_priors.priors_store.derive import communicability as store_communicability
from connectome_priors.training.errors import UnknownVariantError
from connectome_priors.training.initializers import spectral_radius
from connectome_priors.training.regularizers import grid_distances, grid_distances_paper
from connectome_priors.training.variants import (CONNECTOME_VARIANTS, CONTROLS, VARIANTS, Variant,
                                                 build_variant, default_variants, missing_kinds,
                                                 parse_variant, required_kinds)


def test_eleven_canonical_variants_parse_as_in_method():
    table = {v: parse_variant(v) for v in VARIANTS}
    assert len(table) == 11
    assert table["W*D*C"] == Variant("W*D*C", "bio", "real", "WDC")
    assert table["WD*C"] == Variant("WD*C", "orthogonal", "real", "WDC")
    assert table["WDC"] == Variant("WDC", "orthogonal", "grid", "WDC")
    assert table["WD*"] == Variant("WD*", "orthogonal", "real", "WD")
    assert table["WD"] == Variant("WD", "orthogonal", "grid", "WD")
    assert table["W"] == Variant("W", "orthogonal", None, "L1")
    assert table["W*D*C*"] == Variant("W*D*C*", "bio", "real", "C*")
    assert table["WD*C*"] == Variant("WD*C*", "orthogonal", "real", "C*")
    assert table["W*DC*"] == Variant("W*DC*", "bio", "grid", "C*")
    assert table["W!D*C"] == Variant("W!D*C", "permuted", "real", "WDC")
    assert table["W!D*C*"] == Variant("W!D*C*", "permuted", "real", "C*")


@pytest.mark.parametrize("bad", ["", "X", "WC", "W*D*C**", "wdc", "W?D", "DW"])
def test_unknown_names_raise(bad):
    with pytest.raises(UnknownVariantError, match="unknown variant") as err:
        parse_variant(bad)
    assert err.value.known == VARIANTS + CONTROLS + CONNECTOME_VARIANTS


def test_connectome_variants_parse_and_read_only_wiring_kinds():
    assert parse_variant("Wc") == Variant("Wc", "connectome", None, "L1")
    assert parse_variant("WcD*C") == Variant("WcD*C", "connectome", "real", "WDC")
    assert parse_variant("Wc!") == Variant("Wc!", "connectome_permuted", None, "L1")
    assert required_kinds("WcD*") == {"cell_sign", "connectome_signed", "distance_um"}
    assert required_kinds("Wc!") == {"cell_sign", "connectome_signed"}
    assert "Wc" not in default_variants("corrected")  # opt-in: --variants all is the study's


def test_non_canonical_but_well_formed():
    with pytest.raises(UnknownVariantError, match="W\\*D"):
        parse_variant("W*D")
    assert parse_variant("W*D", canonical_only=False) == Variant("W*D", "bio", "grid", "WD")


def _prior(n=12, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random((n, n))
    wb = (a + a.T) / 2
    np.fill_diagonal(wb, 1.0)
    pos = rng.uniform(0, 100, (n, 3))
    dist = np.sqrt(((pos[:, None] - pos[None]) ** 2).sum(-1))
    return {"w_bio_modulation": wb, "distance_um": dist,
            "communicability_empirical": store_communicability(wb)}


def test_build_variant_corrected_and_paper():
    prior = _prior()
    w, reg = build_variant("W*D*C", **prior, runs=3, seed=0)
    assert w.shape == (3, 12, 12) and torch.all(w >= 0)
    assert np.allclose(spectral_radius(w), 0.95, atol=1e-5)
    assert reg.kind == "WDC" and np.allclose(reg.distance, prior["distance_um"]
                                             / prior["distance_um"].max())
    w_perm, _ = build_variant("W!D*C", **prior, runs=3, seed=0)
    assert torch.equal(torch.sort(w_perm[0].flatten()).values, torch.sort(w[0].flatten()).values)
    w_orth, reg = build_variant("W", **prior, runs=2, seed=0)
    assert torch.allclose(w_orth[0] @ w_orth[0].T, torch.eye(12), atol=1e-5)
    assert reg.kind == "L1" and not reg.paper_l1 and reg.distance is None
    _, paper = build_variant("W", **prior, runs=1, seed=0, protocol="paper")
    assert paper.paper_l1
    _, grid = build_variant("WD", **prior, runs=1, seed=0)
    _, grid_paper = build_variant("WD", **prior, runs=1, seed=0, protocol="paper")
    assert np.allclose(grid.distance, grid_distances(12))
    assert np.allclose(grid_paper.distance, grid_distances_paper(12))
    _, star = build_variant("W*DC*", **prior, runs=1, seed=0)
    assert star.kind == "C*" and star.empirical_communicability is not None


def test_build_variant_errors():
    prior = _prior()
    with pytest.raises(ValueError, match="unknown protocol"):
        build_variant("W", **prior, runs=1, seed=0, protocol="keras")
    with pytest.raises(UnknownVariantError):
        build_variant("W*D", **prior, runs=1, seed=0)
    with pytest.raises(ValueError, match="same square"):
        build_variant("W", **{**prior, "distance_um": np.ones((5, 5))}, runs=1, seed=0)


def test_controls_change_only_the_init_of_w_star_d_star_c():
    assert [parse_variant(c) for c in CONTROLS] == [
        Variant("WdiagD*C", "diagonal", "real", "WDC"),
        Variant("WoffD*C", "off_diagonal", "real", "WDC"),
        Variant("WrandD*C", "random_positive", "real", "WDC")]
    assert default_variants("paper") == VARIANTS
    assert default_variants("corrected") == VARIANTS + CONTROLS
    prior = _prior()
    bio, _ = build_variant("W*D*C", **prior, runs=2, seed=4)
    diag, reg = build_variant("WdiagD*C", **prior, runs=2, seed=4)
    off, _ = build_variant("WoffD*C", **prior, runs=2, seed=4)
    rand, _ = build_variant("WrandD*C", **prior, runs=2, seed=4)
    assert reg.kind == "WDC"
    eye = torch.eye(12, dtype=torch.bool)
    # the controls start from the same W* draws
    assert torch.all(diag[:, ~eye] == 0) and torch.all(diag[:, eye] > 0)
    ratio = diag[:, eye] / bio[:, eye]
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-5)
    assert torch.all(off[:, eye] == 0)
    assert torch.allclose(off[:, ~eye] / bio[:, ~eye], (off[:, ~eye] / bio[:, ~eye])[:, :1],
                          rtol=1e-5)
    for w in (diag, off):
        assert np.allclose(spectral_radius(w), 0.95, atol=1e-5)
    assert np.allclose(spectral_radius(rand), spectral_radius(bio), rtol=1e-5)
    # same values (up to the radius-matching scale) at other positions
    scale = torch.sort(rand.flatten(1)).values[:, -5:] / torch.sort(bio.flatten(1)).values[:, -5:]
    assert torch.allclose(scale, scale[:, :1].expand_as(scale), rtol=1e-5)
    assert (rand > 0).sum() == (bio > 0).sum()
    assert not torch.allclose(rand, bio * scale[:, :1, None], rtol=1e-3)  # moved, not rescaled


def test_paper_real_distances_reproduce_the_reshape_scramble():
    """Flaw 4 by hand: 3 units at voxel positions p; reshape(3, -1) gives unit i the
    coordinates (flat[i], flat[3 + i], flat[6 + i]) of the flattened array."""
    from connectome_priors.training.regularizers import scrambled_distances_paper

    p = np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0], [20.0, 21.0, 22.0]])
    coords = np.array([[0.0, 10.0, 20.0], [1.0, 11.0, 21.0], [2.0, 12.0, 22.0]])  # = p.T
    d = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(-1))
    np.testing.assert_allclose(scrambled_distances_paper(p), d / d.max())
    # on real-looking data the scrambled distances do not follow the somata
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 1, (300, 3)) * [80000.0, 80000.0, 2000.0]
    true = np.sqrt((((pos[:, None] - pos[None]) * [4, 4, 40]) ** 2).sum(-1))
    iu = np.triu_indices(300, 1)
    assert abs(np.corrcoef(scrambled_distances_paper(pos)[iu], true[iu])[0, 1]) < 0.1
    prior = {**_prior(), "positions_vox": rng.uniform(0, 1000, (12, 3))}
    _, paper = build_variant("WD*", **prior, runs=1, seed=0, protocol="paper")
    _, fixed = build_variant("WD*", **prior, runs=1, seed=0)
    np.testing.assert_allclose(paper.distance, scrambled_distances_paper(prior["positions_vox"]))
    np.testing.assert_allclose(fixed.distance, prior["distance_um"] / prior["distance_um"].max())
    with pytest.raises(ValueError, match="needs positions_vox"):
        build_variant("W*D*C", **_prior(), runs=1, seed=0, protocol="paper")


BIO, DIST, COMM = "w_bio_modulation", "distance_um", "communicability"


@pytest.mark.parametrize("name, corrected, paper", [
    ("W", set(), set()),                       # orthogonal init, L1: only N
    ("WD", set(), set()),                      # grid distances: only N
    ("WDC", set(), set()),                     # C of |W| itself, not the prior's
    ("WD*", {DIST}, set()),                    # paper's D* comes from neurons.parquet's voxels
    ("WD*C", {DIST}, set()),
    ("WD*C*", {DIST, COMM}, {COMM}),
    ("W*D*C", {BIO, DIST}, {BIO}),
    ("W*DC*", {BIO, COMM}, {BIO, COMM}),
    ("W!D*C*", {BIO, DIST, COMM}, {BIO, COMM}),
    ("WdiagD*C", {BIO, DIST}, {BIO}),
    ("WoffD*C", {BIO, DIST}, {BIO}),
    ("WrandD*C", {BIO, DIST}, {BIO}),
    ("W*", {BIO}, {BIO}),                      # well-formed, not canonical: still answered
    ("W!D", {BIO}, {BIO}),
])
def test_required_kinds_by_hand(name, corrected, paper):
    assert required_kinds(name) == corrected
    assert required_kinds(name, protocol="corrected") == corrected
    assert required_kinds(name, protocol="paper") == paper


def test_required_kinds_errors():
    with pytest.raises(UnknownVariantError, match="unknown variant 'W\\?'"):
        required_kinds("W?")
    with pytest.raises(ValueError, match="unknown protocol 'keras'"):
        required_kinds("W", protocol="keras")


def test_missing_kinds_by_hand():
    structure = ["communicability", "connectome", "distance_um", "modules_wiring"]
    assert missing_kinds(["W", "WD", "WDC", "WD*", "WD*C", "WD*C*"], structure) == {}
    assert missing_kinds(["W", "W*D*C", "WD*C*", "W!D*C"], structure) == {
        BIO: ("W*D*C", "W!D*C")}
    # a big prior without communicability (N > max_dense_n) and without functional kinds
    assert missing_kinds(["W*D*C*", "WD*C*", "W*D*C*", "W"], ["distance_um"]) == {
        COMM: ("W*D*C*", "WD*C*"), BIO: ("W*D*C*",)}
    assert list(missing_kinds(["W*D*C*"], [])) == [COMM, DIST, BIO]  # sorted by kind
    assert missing_kinds(["WD*"], [], protocol="paper") == {}
    # every canonical variant runs on a full prior; on a structure-only one exactly the W-inits
    full = structure + ["correlation", "sttc", BIO, "modules_functional"]
    assert missing_kinds(VARIANTS + CONTROLS, full) == {}
    assert missing_kinds(VARIANTS + CONTROLS, structure) == {
        BIO: ("W*D*C", "W*D*C*", "W*DC*", "W!D*C", "W!D*C*", "WdiagD*C", "WoffD*C", "WrandD*C")}


def test_build_variant_reads_only_the_kinds_of_the_variant():
    prior = _prior()
    w, reg = build_variant("W", runs=2, seed=0, n_units=12)  # no prior array at all
    w_full, _ = build_variant("W", **prior, runs=2, seed=0)
    assert torch.equal(w, w_full) and reg.kind == "L1"
    _, grid = build_variant("WDC", runs=1, seed=0, n_units=12)
    assert np.allclose(grid.distance, grid_distances(12))
    _, real = build_variant("WD*C", distance_um=prior["distance_um"], runs=1, seed=0)
    assert np.allclose(real.distance, prior["distance_um"] / prior["distance_um"].max())
    with pytest.raises(ValueError, match="variant 'W\\*D\\*C' reads the prior's "
                                         "'w_bio_modulation'; pass w_bio_modulation"):
        build_variant("W*D*C", distance_um=prior["distance_um"], runs=1, seed=0)
    with pytest.raises(ValueError, match="reads the prior's 'communicability', 'distance_um'; "
                                         "pass communicability_empirical, distance_um"):
        build_variant("WD*C*", runs=1, seed=0, n_units=12)
    with pytest.raises(ValueError, match="nothing sets N: pass n_units"):
        build_variant("W", runs=1, seed=0)
    with pytest.raises(ValueError, match="same square"):
        build_variant("WD", distance_um=prior["distance_um"], n_units=11, runs=1, seed=0)
