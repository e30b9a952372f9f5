"""kubernetes-asyncio without its generated API classes and models.

gitopsd uses kubernetes-asyncio for what is hard to get right: kubeconfig loading,
authentication (tokens, client certificates, exec plugins, OIDC) and TLS. It sends raw
paths and reads the JSON itself (``kube/client.py``), so it never needs the library's
generated ``client.api``/``client.models`` modules, which cost about a third of a second
and 30 MiB to import. Importing ``kubernetes_asyncio.config`` the normal way loads them all,
because the package ``__init__`` files import everything.

:func:`load` imports just ``Configuration`` and the kubeconfig loader (``ApiClient`` at its
first use: only a cluster behind a proxy makes one; urllib3, which ``Configuration`` imports
but never uses, stays a lazy package). The
packages ``kubernetes_asyncio``, ``kubernetes_asyncio.client`` and
``kubernetes_asyncio.client.models`` are registered as *lazy* packages (:mod:`gitopsd.core.lazypkg`): their submodules
import normally, and the first access to any other attribute (``client.V1Pod``,
``kubernetes_asyncio.watch``) runs the real ``__init__``, so code in the same process that
uses the whole library still gets all of it.

Nor does a daemon import aiohttp's HTTP client for the library (its import builds two TLS
contexts from the system's CA bundle, ~85 ms of CPU): requests go on gitopsd's own
transport with the context :func:`tls_context` builds as the library would, and the
kubeconfig loader's OIDC requestor is imported when first used (:func:`_openid_deferred`).
Only a cluster behind a proxy uses the library's aiohttp session (:mod:`gitopsd.kube.session`).
"""

from __future__ import annotations

import importlib
import importlib.util
import ssl
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gitopsd.core.lazypkg import lazy_package

_lock = threading.Lock()
_loaded: tuple[Any, Any, Any] | None = None


def load() -> tuple[Any, Any, Any]:
    """``(Configuration, ApiClient, load_kube_config)`` of kubernetes-asyncio, without the models.

    ``ApiClient`` is a function that imports the library's class at its first call and
    returns a new instance: only a cluster behind a proxy makes one (:mod:`gitopsd.kube.session`),
    and its module imports dateutil's parser and multiprocessing (~20 ms of CPU).
    """
    global _loaded
    with _lock:
        if _loaded is None:
            # The library's Configuration module imports urllib3 and never uses it (~30 ms of
            # CPU): a lazy package until something asks it for more than its name.
            lazy_package("urllib3")
            with _openid_deferred():
                if "kubernetes_asyncio" not in sys.modules:
                    # The top-level package's __init__ would import all of the library (its
                    # websocket client imports aiohttp's client): it stays lazy too.
                    for lazy in ("kubernetes_asyncio", "kubernetes_asyncio.client", "kubernetes_asyncio.client.models"):
                        if not lazy_package(lazy) and lazy not in sys.modules:
                            raise ImportError(f"cannot find {lazy}")
                    client = sys.modules["kubernetes_asyncio.client"]
                    configuration = importlib.import_module("kubernetes_asyncio.client.configuration")
                    # What the rest of the library imports from the client package at import time.
                    client.Configuration = configuration.Configuration  # type: ignore[attr-defined]
                configuration = importlib.import_module("kubernetes_asyncio.client.configuration")
                with _api_client_deferred():
                    kube_config = importlib.import_module("kubernetes_asyncio.config.kube_config")
                _loaded = (configuration.Configuration, _new_api_client, kube_config.load_kube_config)
        return _loaded


def _new_api_client(*args: Any, **kwargs: Any) -> Any:
    """A new ``kubernetes_asyncio.client.ApiClient(*args, **kwargs)``; its module imported the first time."""
    return importlib.import_module("kubernetes_asyncio.client.api_client").ApiClient(*args, **kwargs)


@contextmanager
def _api_client_deferred() -> Iterator[None]:
    """While the kubeconfig loader imports, ``kubernetes_asyncio.client.ApiClient`` is
    :func:`_new_api_client` (the loader imports the name; only its ``new_client_from_config``
    calls it). When the client package is lazy, the name leaves it afterwards, so the
    package's first real use (``client.ApiClient``) runs its ``__init__`` and finds the class.
    """
    client = sys.modules.get("kubernetes_asyncio.client")
    if client is None or "ApiClient" in client.__dict__:
        yield
        return
    client.ApiClient = _new_api_client  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if client.__dict__.get("ApiClient") is _new_api_client:
            del client.ApiClient  # type: ignore[attr-defined]


_OPENID = "kubernetes_asyncio.config.openid"


@contextmanager
def _openid_deferred() -> Iterator[None]:
    """While the kubeconfig loader imports, its ``OpenIDRequestor`` (OIDC token refresh) is a
    stand-in that imports the real class at its first call.

    The real module's class body evaluates ``aiohttp.TCPConnector`` annotations, and importing
    aiohttp's client builds two TLS contexts from the system's CA bundle: ~85 ms of CPU at
    every start, for a class only a kubeconfig with an OIDC auth provider ever calls. Once the
    loader is imported the stand-in leaves ``sys.modules``, so any other import of
    ``kubernetes_asyncio.config.openid`` gets the real module.
    """
    if _OPENID in sys.modules:
        yield
        return
    stand_in = types.ModuleType(_OPENID)

    def OpenIDRequestor(*args: Any, **kwargs: Any) -> Any:
        return importlib.import_module(_OPENID).OpenIDRequestor(*args, **kwargs)

    stand_in.OpenIDRequestor = OpenIDRequestor  # type: ignore[attr-defined]
    sys.modules[_OPENID] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(_OPENID) is stand_in:
            del sys.modules[_OPENID]


def tls_context(configuration: Any) -> ssl.SSLContext:
    """The TLS context kubernetes-asyncio's REST client builds for ``configuration`` (its
    ``client/rest.py``, ``RESTClientObject.__init__``), without the aiohttp session around it.

    The kubeconfig's CA (or the system's CAs when it names none), client certificate and
    ``insecure-skip-tls-verify``, as the library reads them; the server name to check is
    ``configuration.tls_server_name`` when set. tests/integration/kube/test_client.py
    compares the two contexts for each kind of kubeconfig.
    """
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.disable_strict_ssl_verification:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context
