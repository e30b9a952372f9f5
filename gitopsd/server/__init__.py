"""The daemon's HTTP side: the API, push webhooks, metrics, the web page and sd_notify.

Two libraries are registered here as lazy packages (:mod:`gitopsd.core.lazypkg`), so the
server loads only the parts it uses before the daemon is ready:

- aiohttp: the server needs only ``aiohttp.web``; ``aiohttp/__init__`` loads aiohttp's HTTP
  client and builds its TLS contexts, which only a cluster behind a proxy needs
  (:mod:`gitopsd.kube.session`) and the Slack notifier's socket mode;
- prometheus_client: :mod:`gitopsd.server.metrics` needs its metric types and a registry of
  its own; ``prometheus_client/__init__`` imports the exposition servers (wsgiref,
  http.server) and registers process-wide collectors gitopsd never serves. The text format
  is imported at the first scrape.
"""

from gitopsd.core.lazypkg import lazy_package

lazy_package("aiohttp", copy=("__version__",))
lazy_package("prometheus_client")
