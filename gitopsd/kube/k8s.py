"""kubernetes-asyncio without its generated API classes and models.

gitopsd uses kubernetes-asyncio for what is hard to get right: kubeconfig loading,
authentication (tokens, client certificates, exec plugins, OIDC) and TLS. It sends raw
paths and reads the JSON itself (``kube/client.py``), so it never needs the library's
generated ``client.api``/``client.models`` modules, which cost about a third of a second
and 30 MiB to import. Importing ``kubernetes_asyncio.config`` the normal way loads them all,
because the package ``__init__`` files import everything.

:func:`load` imports just ``Configuration``, ``ApiClient`` and the kubeconfig loader. The
packages ``kubernetes_asyncio``, ``kubernetes_asyncio.client`` and
``kubernetes_asyncio.client.models`` are registered as *lazy* packages: their submodules
import normally, and the first access to any other attribute (``client.V1Pod``,
``kubernetes_asyncio.watch``) runs the real ``__init__``, so code in the same process that
uses the whole library still gets all of it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Any

_lock = threading.Lock()
_loaded: tuple[Any, Any, Any] | None = None


class _LazyPackage(types.ModuleType):
    """A package whose ``__init__`` runs on the first attribute it does not have yet.

    A submodule of that name is imported instead, without running ``__init__``
    (``from kubernetes_asyncio.client import rest`` stays cheap).
    """

    def __getattr__(self, name: str) -> Any:
        if "_lazy_init" in self.__dict__ and importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            return importlib.import_module(f"{self.__name__}.{name}")
        init = self.__dict__.get("_lazy_init")
        if init is not None:
            del self.__dict__["_lazy_init"]
            init(self)
            return getattr(self, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def _lazy_package(name: str, parent: types.ModuleType) -> types.ModuleType:
    """Register ``name`` (not yet imported; a child of ``parent``) as a lazy package; return it."""
    child = name.rpartition(".")[2]
    spec = importlib.machinery.PathFinder.find_spec(name, parent.__path__)
    if spec is None or spec.origin is None or spec.loader is None:
        raise ImportError(f"cannot find {name}")
    module = _LazyPackage(name)
    module.__spec__ = spec
    module.__file__ = spec.origin
    module.__path__ = list(spec.submodule_search_locations or [])
    module.__package__ = name
    module.__loader__ = spec.loader
    loader = spec.loader

    def init(mod: types.ModuleType) -> None:
        loader.exec_module(mod)  # type: ignore[attr-defined]

    module.__dict__["_lazy_init"] = init
    sys.modules[name] = module
    setattr(parent, child, module)
    return module


def load() -> tuple[Any, Any, Any]:
    """``(Configuration, ApiClient, load_kube_config)`` of kubernetes-asyncio, without the models."""
    global _loaded
    with _lock:
        if _loaded is None:
            if "kubernetes_asyncio" not in sys.modules:
                # The top-level package imports only cheap modules once its client is lazy.
                top = importlib.util.find_spec("kubernetes_asyncio")
                if top is None:
                    raise ImportError("kubernetes_asyncio is not installed")
                parent = types.ModuleType("kubernetes_asyncio")
                parent.__path__ = list(top.submodule_search_locations or [])
                sys.modules["kubernetes_asyncio"] = parent
                try:
                    client = _lazy_package("kubernetes_asyncio.client", parent)
                    _lazy_package("kubernetes_asyncio.client.models", client)
                    configuration = importlib.import_module("kubernetes_asyncio.client.configuration")
                    api_client = importlib.import_module("kubernetes_asyncio.client.api_client")
                    # What the rest of the library imports from the client package at import time.
                    client.Configuration = configuration.Configuration  # type: ignore[attr-defined]
                    client.ApiClient = api_client.ApiClient  # type: ignore[attr-defined]
                finally:
                    del sys.modules["kubernetes_asyncio"]
                importlib.import_module("kubernetes_asyncio")
            configuration = importlib.import_module("kubernetes_asyncio.client.configuration")
            api_client = importlib.import_module("kubernetes_asyncio.client.api_client")
            kube_config = importlib.import_module("kubernetes_asyncio.config.kube_config")
            _loaded = (configuration.Configuration, api_client.ApiClient, kube_config.load_kube_config)
        return _loaded
