"""The daemon's HTTP side: the API, push webhooks, metrics, the web page and sd_notify.

The server needs only ``aiohttp.web``; importing it the usual way runs ``aiohttp/__init__``,
which loads aiohttp's HTTP client and builds its TLS contexts. aiohttp is registered here as
a lazy package (:mod:`gitopsd.core.lazypkg`): the client is loaded by its first user (the
Kubernetes connection, after the daemon is ready), not by the server.
"""

from gitopsd.core.lazypkg import lazy_package

lazy_package("aiohttp", copy=("__version__",))
