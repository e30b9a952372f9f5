"""The daemon layer: assembles the engine, the Kubernetes layer and the server into a process.

:mod:`~gitopsd.daemon.supervisor` runs the daemon (``gitopsd run``);
:mod:`~gitopsd.daemon.wiring` builds Reconcilers for it, for the CLI's one-shot commands
and for the testing kit.
"""
