"""Tests of src/connectome_priors/kernel/lazy.py: PEP 562 exports, and the module/name clash it
refuses."""

from __future__ import annotations

import sys
import types

import pytest

from connectome_priors.kernel.lazy import lazy_exports


def _package(tmp_path, monkeypatch, name: str, files: dict[str, str]) -> types.ModuleType:
    """A real package ``name`` on disk (``files``: module file name -> source), imported."""
    folder = tmp_path / name
    folder.mkdir()
    for file, text in files.items():
        (folder / file).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return __import__(name)


def test_a_name_loads_its_module_on_first_use(tmp_path, monkeypatch):
    pkg = _package(tmp_path, monkeypatch, "lazy_ok", {
        "__init__.py": "from connectome_priors.kernel.lazy import lazy_exports\n"
                       "__getattr__, __dir__, __all__ = lazy_exports(__name__, {'reader': ('load',)})\n",
        "reader.py": "def load():\n    return 42\n",
    })
    assert "lazy_ok.reader" not in sys.modules
    assert pkg.__all__ == ["load"] and "load" in dir(pkg)
    assert pkg.load() == 42
    assert "lazy_ok.reader" in sys.modules
    import lazy_ok.reader  # noqa: F401 (binds lazy_ok.reader, not lazy_ok.load)
    assert pkg.load() == 42
    with pytest.raises(AttributeError, match="module 'lazy_ok' has no attribute 'missing'"):
        pkg.missing  # noqa: B018


def test_a_name_equal_to_its_module_is_refused():
    with pytest.raises(ValueError, match=r"pkg: exported name\(s\) 'load' equal the name of a "
                                         r"module it exports from \(load\).*rename the module"):
        lazy_exports("pkg", {"load": ("Prior", "load")})


def test_a_name_equal_to_another_exported_module_is_refused():
    """Importing ``errors`` for ``PriorsError`` would rebind ``pkg.errors`` from the function."""
    with pytest.raises(ValueError, match=r"'errors' equal the name of a module"):
        lazy_exports("pkg", {"reader": ("errors",), "errors": ("PriorsError",)})


def test_a_dotted_module_clashes_on_its_first_part():
    with pytest.raises(ValueError, match=r"'kernel'"):
        lazy_exports("pkg", {"kernel.errors": ("kernel", "CxpError")})
    lazy_exports("pkg", {"kernel.errors": ("errors", "CxpError")})  # binds pkg.kernel only


def test_the_real_packages_export_their_functions():
    """``priors_store.load`` and ``derive.communicability`` are the functions, also after their
    modules were imported."""
    import connectome_priors.priors_store as ps
    import connectome_priors.priors_store.derive as derive
    import connectome_priors.priors_store.derive.communication
    import connectome_priors.priors_store.reader  # noqa: F401

    assert callable(ps.load) and ps.load.__module__ == "connectome_priors.priors_store.reader"
    assert callable(derive.communicability)
    assert derive.communicability.__module__ == "connectome_priors.priors_store.derive.communication"
