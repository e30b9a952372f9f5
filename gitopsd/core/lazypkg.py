"""Import a package's submodules without running its ``__init__`` until something else is asked of it.

Some libraries' ``__init__`` imports everything they have: ``import aiohttp.web`` (the
daemon's HTTP server) runs ``aiohttp/__init__.py``, which imports aiohttp's HTTP client and
builds two TLS contexts (loading the system's CA bundle): a fifth of the daemon's import
time, for a client the daemon first needs after it is ready (the Kubernetes connection).
``kubernetes_asyncio.client`` imports hundreds of generated models gitopsd never uses
(:mod:`gitopsd.kube.k8s`).

:func:`lazy_package` registers such a package in ``sys.modules`` as a :class:`LazyPackage`:
its submodules import normally (``from aiohttp import web``), and the first access to any
other attribute (``aiohttp.ClientSession``, ``from aiohttp import TCPConnector``) runs the
real ``__init__`` in place, so every later user sees the whole package as usual. It changes
*when* the package's own code runs, never what it does.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import threading
import types
from typing import Any

_lock = threading.RLock()


class LazyPackage(types.ModuleType):
    """A package whose ``__init__`` runs on the first attribute it does not have yet (a submodule excepted)."""

    def __getattr__(self, name: str) -> Any:
        init = self.__dict__.get("_lazy_init")
        if init is not None and not name.startswith("__") and importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            return importlib.import_module(f"{self.__name__}.{name}")
        with _lock:
            init = self.__dict__.pop("_lazy_init", None)
            if init is not None:
                init(self)
                return getattr(self, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def is_lazy(name: str) -> bool:
    """True while ``name`` is a lazy package whose ``__init__`` has not run."""
    module = sys.modules.get(name)
    return module is not None and "_lazy_init" in module.__dict__


def lazy_package(name: str, *, copy: tuple[str, ...] = ()) -> bool:
    """Register the package ``name`` as a :class:`LazyPackage`, unless it is imported already.

    A subpackage (``kubernetes_asyncio.client``) is found on the ``__path__`` of its parent,
    which must be in ``sys.modules`` already (imported, lazy, or a stand-in that has only a
    ``__path__``); it becomes the parent's attribute, as an import makes it.

    ``copy`` names module-level string constants (``__version__``) that its submodules import
    from the package: they are read from the ``__init__`` source (``NAME = "..."``) and set at
    once. Returns False, and changes nothing, when the package is already imported, cannot
    be found, or a constant is not there to read (a later version of the library): the
    package then imports the usual way.
    """
    with _lock:
        if name in sys.modules:
            return False
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name) if parent_name else None
        if parent_name:
            if parent is None or not hasattr(parent, "__path__"):
                return False
            spec = importlib.machinery.PathFinder.find_spec(name, parent.__path__)
        else:
            spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or spec.loader is None or spec.submodule_search_locations is None:
            return False
        constants = {}
        if copy:
            try:
                with open(spec.origin, encoding="utf-8") as f:
                    source = f.read()
            except OSError:
                return False
            for constant in copy:
                m = re.search(rf"^{re.escape(constant)} = [\"']([^\"'\n]*)[\"']$", source, re.MULTILINE)
                if m is None:
                    return False
                constants[constant] = m[1]
        module = LazyPackage(name)
        module.__spec__ = spec
        module.__file__ = spec.origin
        module.__path__ = list(spec.submodule_search_locations)
        module.__package__ = name
        module.__loader__ = spec.loader
        module.__dict__.update(constants)
        loader = spec.loader

        def init(mod: types.ModuleType) -> None:
            try:
                loader.exec_module(mod)  # type: ignore[attr-defined]
            except BaseException:
                sys.modules.pop(name, None)  # as a failed import leaves it: the next import tries again
                raise

        module.__dict__["_lazy_init"] = init
        sys.modules[name] = module
        if parent is not None:
            setattr(parent, child, module)
        return True
