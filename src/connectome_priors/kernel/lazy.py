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
import types
from collections.abc import Callable, Mapping, Sequence

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, whose ``exports`` map a relative
    module name (``"store"``, ``"kernel.errors"``) to the public names it defines."""
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

    clashing = {name for name, module in module_of.items() if module == name}
    if clashing:  # e.g. priors_store.load (the function) in priors_store/load.py (the module)
        sys.modules[package].__class__ = _module_class(frozenset(clashing))
    return __getattr__, __dir__, names


def _module_class(clashing: frozenset[str]) -> type[types.ModuleType]:
    """A module type on which importing submodule ``X`` binds the package attribute ``X`` to the
    submodule's own ``X`` (the exported function), as an eager ``from .X import X`` would."""

    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: object) -> None:
            if name in clashing and isinstance(value, types.ModuleType) \
                    and value.__name__ == f"{self.__name__}.{name}":
                value = getattr(value, name)
            super().__setattr__(name, value)

    return _Package
