"""``kernel.settings``: argument > environment > config file > default, for every setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectome_priors.kernel.settings import SETTINGS, SettingsError, config_file, resolve


@pytest.fixture
def clean(monkeypatch, tmp_path):
    for spec in SETTINGS.values():
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CXP_CONFIG", str(tmp_path / "config.toml"))
    return tmp_path


def test_precedence_argument_environment_file_default(clean, monkeypatch):
    assert resolve("store") == clean / "data" / "connectome-priors" / "store"
    (clean / "config.toml").write_text('store = "/from/file"\n')
    assert resolve("store") == Path("/from/file")
    monkeypatch.setenv("CXP_STORE", "/from/env")
    assert resolve("store") == Path("/from/env")
    assert resolve("store", "/from/arg") == Path("/from/arg")
    assert resolve("store", Path("~/x")) == Path.home() / "x"


def test_defaults_follow_other_settings(clean, monkeypatch):
    monkeypatch.setenv("CXP_STORE", "/s")
    assert resolve("artifacts") == Path("/s/artifacts")
    assert resolve("nwb_cache") == clean / "cache" / "connectome-priors" / "dandi"
    monkeypatch.setenv("CXP_CACHE", "/c")
    assert resolve("nwb_cache") == Path("/c/dandi")
    assert resolve("dask_scheduler") is None
    assert resolve("cave_token_file") is None
    assert resolve("store_lock_timeout") == "300"
    (clean / "config.toml").write_text("store_lock_timeout = 5\n")
    assert resolve("store_lock_timeout") == "5"


def test_bad_config_file_is_a_clear_error(clean):
    (clean / "config.toml").write_text("store = \n")
    with pytest.raises(SettingsError, match="could not be read as UTF-8 TOML"):
        resolve("store")
    (clean / "config.toml").write_text('stor = "/x"\n')
    with pytest.raises(SettingsError, match=r"unknown setting\(s\) \['stor'\]"):
        resolve("store")
    (clean / "config.toml").write_text("store = 3\n")
    with pytest.raises(SettingsError, match="'store' must be a string; found int 3"):
        resolve("store")
    (clean / "config.toml").write_text("store_lock_timeout = true\n")
    with pytest.raises(SettingsError, match="'store_lock_timeout' must be a string or number"):
        resolve("store_lock_timeout")
    with pytest.raises(SettingsError, match="unknown setting 'nope'"):
        resolve("nope")


def test_config_file_location(monkeypatch, tmp_path):
    monkeypatch.delenv("CXP_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_file() == tmp_path / "connectome-priors" / "config.toml"
