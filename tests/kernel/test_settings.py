"""``kernel.settings``: argument > environment > config file > default, for every setting."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from connectome_priors.kernel.settings import SETTINGS, SettingsError, config_file, resolve


@pytest.fixture
def clean(monkeypatch, tmp_path):
    for spec in SETTINGS.values():
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "config.toml").write_text("")  # $CXP_CONFIG must name a file that exists
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


# --- issue 20: empty values, a missing $CXP_CONFIG, timeouts that wait forever ---------------------

@pytest.mark.parametrize("name", ["store", "artifacts", "cache", "nwb_cache", "cave_token_file"])
def test_an_empty_path_is_refused_from_every_source(clean, monkeypatch, name):
    env = SETTINGS[name].env
    with pytest.raises(SettingsError, match=rf"setting '{name}' is empty in the argument"):
        resolve(name, "")
    monkeypatch.setenv(env, "")
    with pytest.raises(SettingsError, match=rf"setting '{name}' is empty in \${env}"):
        resolve(name)
    monkeypatch.setenv(env, "   ")
    with pytest.raises(SettingsError, match=rf"setting '{name}' is empty in \${env}"):
        resolve(name)
    monkeypatch.delenv(env)
    (clean / "config.toml").write_text(f'{name} = ""\n')
    with pytest.raises(SettingsError, match=rf"setting '{name}' is empty in config file "
                                            rf".*config.toml.*not taken to mean the current folder"):
        resolve(name)


def test_an_empty_value_never_means_the_current_folder(clean, monkeypatch):
    """Before: ``store = ""`` in the config file resolved to ``Path('.')``."""
    (clean / "config.toml").write_text('artifacts = ""\n')
    monkeypatch.setenv("CXP_STORE", "/s")
    with pytest.raises(SettingsError, match="'artifacts' is empty"):
        resolve("artifacts")


def test_empty_environment_of_a_non_path_setting_still_counts_as_unset(clean, monkeypatch):
    monkeypatch.setenv("CXP_DASK_SCHEDULER", "")
    assert resolve("dask_scheduler") is None
    monkeypatch.setenv("CXP_DANDI_API", "")
    assert resolve("dandi_api") == "https://api.dandiarchive.org/api"


def test_a_missing_config_file_named_by_cxp_config_is_an_error(clean, monkeypatch, tmp_path):
    missing = tmp_path / "nope" / "config.toml"
    monkeypatch.setenv("CXP_CONFIG", str(missing))
    with pytest.raises(SettingsError, match=rf"\$CXP_CONFIG names {missing}, which does not exist"):
        resolve("store")
    monkeypatch.setenv("CXP_CONFIG", str(tmp_path))
    with pytest.raises(SettingsError, match="which is a folder"):
        resolve("store")
    monkeypatch.setenv("CXP_CONFIG", "")
    with pytest.raises(SettingsError, match=r"\$CXP_CONFIG is set but empty"):
        resolve("store")
    monkeypatch.setenv("CXP_CONFIG", "/dev/null")  # an empty config, as before
    assert resolve("store") == clean / "data" / "connectome-priors" / "store"


def test_the_default_config_location_may_be_absent(monkeypatch, tmp_path):
    monkeypatch.delenv("CXP_CONFIG", raising=False)
    monkeypatch.delenv("CXP_STORE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert resolve("store") == tmp_path / "connectome-priors" / "store"


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "-1", "1e400", "", "soon"])
def test_lock_timeout_must_be_finite_and_not_negative(clean, monkeypatch, text):
    monkeypatch.setenv("CXP_STORE_LOCK_TIMEOUT", text)
    with pytest.raises(SettingsError, match=r"'store_lock_timeout' from \$CXP_STORE_LOCK_TIMEOUT "
                                            r"must be a (finite )?number of seconds"):
        resolve("store_lock_timeout")


@pytest.mark.parametrize("value", ["nan", "inf", "-5", math.inf, -0.5])
def test_lock_timeout_in_the_config_file_is_checked_too(clean, value):
    text = f"store_lock_timeout = {value!r}\n" if isinstance(value, str) else \
        f"store_lock_timeout = {'inf' if value == math.inf else value}\n"
    (clean / "config.toml").write_text(text)
    with pytest.raises(SettingsError, match=r"'store_lock_timeout' from config file .* finite"):
        resolve("store_lock_timeout")


def test_lock_timeout_zero_and_fractions_are_fine(clean, monkeypatch):
    for text in ("0", "0.5", " 12 "):
        monkeypatch.setenv("CXP_STORE_LOCK_TIMEOUT", text)
        assert float(resolve("store_lock_timeout")) == float(text)


def test_settings_errors_are_one_line_exit_2_from_the_cli(clean, monkeypatch, capsys):
    from connectome_priors.cli import main

    monkeypatch.setenv("CXP_STORE_LOCK_TIMEOUT", "nan")
    monkeypatch.setenv("CXP_STORE", str(clean / "store"))
    assert main(["etl", "--source", "synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "store_lock_timeout" in err and "'nan'" in err
    monkeypatch.delenv("CXP_STORE_LOCK_TIMEOUT")
    monkeypatch.setenv("CXP_CONFIG", str(clean / "missing.toml"))
    assert main(["status", "--store", str(clean / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "missing.toml, which does not exist" in err
    monkeypatch.setenv("CXP_CONFIG", str(clean / "config.toml"))
    assert main(["status", "--store", ""]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'store' is empty in the argument" in err
