"""``kernel.files``: atomic writes leave the old file or the new one, never a half one."""

from __future__ import annotations

import hashlib

import pytest

from connectome_priors.kernel.files import atomic_path, atomic_write_text, sha256_file


def test_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_error_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_folders_are_renamed_whole(tmp_path):
    with atomic_path(tmp_path / "d") as tmp:
        tmp.mkdir()
        (tmp / "f").write_text("x")
    assert (tmp_path / "d" / "f").read_text() == "x"


def test_sha256_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 9000  # more than one 1 MiB block
    (tmp_path / "b").write_bytes(data)
    assert sha256_file(tmp_path / "b") == hashlib.sha256(data).hexdigest()
