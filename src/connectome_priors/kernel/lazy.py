"""Lazy package exports (PEP 562): a package lists its public names and the modules that hold
them, and a name's module is imported on first use. Importing a package then loads none of its
modules, so ``import connectome_priors.priors_store.derive`` loads no store and ``cxp`` commands
that do not train never import torch.

Examples
--------
>>> __getattr__, __dir__, __all__ = lazy_exports(__name__, {"store": ("Store",)})  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, whose ``exports`` map a relative
    module name (``"store"``, ``"kernel.errors"``) to the public names it defines.

    Raises
    ------
    ValueError
        An exported name equals the name of a module in ``exports`` (``"load"`` from
        ``load.py``; for ``"kernel.errors"``, ``"kernel"``): once that module is imported, Python
        binds the package attribute to the module, and ``package.load`` would no longer be the
        function.
    """
    submodules = {module.split(".")[0] for module in exports}  # what importing them binds
    clashing = sorted(name for group in exports.values() for name in group if name in submodules)
    if clashing:
        raise ValueError(f"{package}: exported name(s) {', '.join(map(repr, clashing))} equal the "
                         f"name of a module it exports from ({', '.join(sorted(exports))}): "
                         "importing that module binds the package attribute to the module, so "
                         f"{package}.{clashing[0]} would stop being the exported object; rename the "
                         "module (e.g. load.py -> reader.py)")
    module_of = {name: module for module, names in exports.items() for name in names}
    names = [name for group in exports.values() for name in group]

    def __getattr__(name: str) -> object:
        if name in module_of:
            value = getattr(importlib.import_module(f".{module_of[name]}", package), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__, names
