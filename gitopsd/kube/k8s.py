"""kubernetes-asyncio without its generated API classes and models.

gitopsd uses kubernetes-asyncio for what is hard to get right: kubeconfig loading,
authentication (tokens, client certificates, exec plugins, OIDC) and TLS. It sends raw
paths and reads the JSON itself (``kube/client.py``), so it never needs the library's
generated ``client.api``/``client.models`` modules, which cost about a third of a second
and 30 MiB to import. Importing ``kubernetes_asyncio.config`` the normal way loads them all,
because the package ``__init__`` files import everything.

:func:`load` imports just ``Configuration``, ``ApiClient`` and the kubeconfig loader. The
packages ``kubernetes_asyncio``, ``kubernetes_asyncio.client`` and
``kubernetes_asyncio.client.models`` are registered as *lazy* packages (:mod:`gitopsd.core.lazypkg`): their submodules
import normally, and the first access to any other attribute (``client.V1Pod``,
``kubernetes_asyncio.watch``) runs the real ``__init__``, so code in the same process that
uses the whole library still gets all of it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

from gitopsd.core.lazypkg import lazy_package

_lock = threading.Lock()
_loaded: tuple[Any, Any, Any] | None = None


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
                    for lazy in ("kubernetes_asyncio.client", "kubernetes_asyncio.client.models"):
                        if not lazy_package(lazy) and lazy not in sys.modules:
                            raise ImportError(f"cannot find {lazy}")
                    client = sys.modules["kubernetes_asyncio.client"]
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
