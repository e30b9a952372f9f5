"""gitopsd.sandbox: a Kubernetes API server simulator for tests, demos, benchmarks and plugin authors.

``Sandbox`` serves discovery, CRUD, list/watch, patches and server-side apply
over HTTPS with a bearer token; simulated controllers make workloads ready
after ``rollout_delay`` seconds (see :mod:`gitopsd.sandbox.controllers` for the
failure trigger); :mod:`gitopsd.sandbox.faults` injects errors deterministically.
Its token is an administrator that may impersonate anyone; impersonated requests are
authorized by the RBAC objects in the sandbox, and access reviews answer ``kubectl auth
can-i --as USER`` (:mod:`gitopsd.sandbox.rbac`).
"""

from .controllers import FAIL_ANNOTATION
from .sandbox import Sandbox

__all__ = ["FAIL_ANNOTATION", "Sandbox"]
