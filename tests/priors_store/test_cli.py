"""``cxp priors ...`` from the command line, on a small synthetic store."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from connectome_priors.cli import main


@pytest.fixture(scope="module")
def published(small_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-artifacts")
    args = ["--store", str(small_store), "--artifacts", str(root)]
    assert main(["priors", "build", "f662", "--fields", "6_6_2", "--no-precision", "--no-progress",
                 *args]) == 0
    return root, args


def test_build_list_show(published, capsys):
    root, args = published
    capsys.readouterr()
    assert main(["priors", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "f662" in out and "True" in out and "fields" in out
    assert main(["priors", "show", "f662", *args]) == 0
    out = capsys.readouterr().out
    assert "(source synthetic, SYNTHETIC data)" in out
    assert "modules_wiring" in out and "modularity_q" in out


def test_show_plot_writes_pngs(published, tmp_path, capsys):
    root, args = published
    assert main(["priors", "show", "f662", "--plot", str(tmp_path / "png"), *args]) == 0
    pngs = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert pngs == ["connection_probability.png", "matrices_by_module.png", "neurons_3d.png"]
    for p in (tmp_path / "png").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_verify_names_the_changed_file(published, tmp_path, capsys):
    root, args = published
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    cargs = ["--store", args[1], "--artifacts", str(copy)]
    assert main(["priors", "verify", "f662", *cargs]) == 0
    assert "files match their sha256" in capsys.readouterr().out
    version = (copy / "f662" / "latest").read_text().strip()
    target = copy / "f662" / version / "correlation.npy"
    raw = bytearray(target.read_bytes())
    raw[200] ^= 0xFF
    target.write_bytes(bytes(raw))
    assert main(["priors", "verify", "f662@" + version[:6], *cargs]) == 2
    assert "correlation.npy: sha256" in capsys.readouterr().err


def test_export_and_diff(published, tmp_path, capsys):
    root, args = published
    out = tmp_path / "prior.npz"
    assert main(["priors", "export", "f662", "--format", "npz", "--out", str(out), *args]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert "distance_um" in z.files and "nucleus_id" in z.files
    version = (root / "f662" / "latest").read_text().strip()
    capsys.readouterr()
    assert main(["priors", "diff", f"f662@{version}", version, *args]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parameters"] == {} and set(report["kinds"].values()) == {"identical"}


def test_per_field_build(small_store, tmp_path, capsys):
    args = ["--store", str(small_store), "--artifacts", str(tmp_path)]
    assert main(["priors", "build", "syn", "--fields", "all", "--per-field", "--no-precision",
                 "--no-progress", "--jobs", "2", *args]) == 0
    out = capsys.readouterr().out
    assert "8 artifacts in" in out
    assert sorted(p.name for p in tmp_path.iterdir())[:2] == ["syn_5_6_2", "syn_5_6_4"]


def test_bad_requests_exit_2(published, capsys):
    root, args = published
    assert main(["priors", "show", "missing", *args]) == 2
    assert "no artifact named 'missing'" in capsys.readouterr().err
    assert main(["priors", "build", "x", "--fields", "6-6-2", *args]) == 2
    assert "fields must look like '6_6_2'" in capsys.readouterr().err
    assert main(["priors", "build", "x", "--fields", "all", *args]) == 2


# --- issue 20: bad names refused up front; a full disk is one line, exit 2, nothing published -----

import errno  # noqa: E402
import os  # noqa: E402

LONG = "a" * 300


@pytest.mark.parametrize("argv", [
    ["build", LONG, "--fields", "6_6_2"],
    ["build", "x*", "--pooled"],
    ["build", "f662\n", "--pooled"],
    ["build", "p", "--per-field", "--fields", "6_6_2,../../x"],
    ["build", "b" * 97, "--per-field", "--fields", "all"],
    ["show", LONG], ["show", "f662@*"], ["verify", "f662@[0-9]*"], ["verify", "../f662"],
    ["export", "x?", "--out", "o.npz"], ["diff", "f662@abc", "*"],
])
def test_bad_names_are_refused_before_the_store_is_opened(argv, tmp_path, capsys):
    missing = tmp_path / "no-store"  # today's code reached the store first: "no neuron store"
    assert main(["priors", *argv, "--store", str(missing), "--artifacts", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not allowed" in err and "no neuron store" not in err
    assert LONG not in err and len(err) < 400
    assert not (tmp_path / "a").exists() and not missing.exists()


def test_disk_full_during_build_is_one_line_exit_2_and_publishes_nothing(small_store, tmp_path,
                                                                         monkeypatch, capsys):
    def full(target, *args, **kwargs):
        with open(target, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", full)
    root = tmp_path / "artifacts"
    assert main(["priors", "build", "full", "--fields", "6_6_2", "--no-precision", "--no-progress",
                 "--store", str(small_store), "--artifacts", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "No space left on device (errno 28)" in err and "cell_sign.npy" in err  # the first .npy a build writes
    assert list((root / "full").iterdir()) == []  # no version, no temporary folder, no latest
