"""Exact request counters by verb, resource and code (the benchmarks' "0 writes")."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from .faults import WRITE_VERBS

_WRITE_FIELDS = ("time", "client", "verb", "resource", "namespace", "name")


class Counters:
    """Counts API requests by ``(verb, resource, code, dryRun)`` and discovery requests by path.

    ``snapshot()`` returns::

        {"requests": [{"verb", "resource", "code", "dryRun", "count"}, ...],
         "by_verb": {"get": n, ...},       # every request of the verb, any code
         "writes": n,                      # create/update/patch/apply/delete/deletecollection, not dry-run
         "dry_run_writes": n,
         "discovery": n,                   # /api, /apis, /api/v1, /apis/g, /apis/g/v
         "discovery_paths": {"/api": n, ...},
         "other": n,                       # /version, /healthz, /openapi, ... (admin endpoints are not counted)
         "write_log": [{"time", "client", "verb", "resource", "namespace", "name"}, ...]}

    ``write_log`` holds every successful, non-dry-run write in order (``time`` is the
    server's ``time.monotonic()``; ``client`` the User-Agent): tests tell the members of a
    coordination group apart by it (``gitopsd/<version> (member NAME)``).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero everything."""
        self._requests: Counter[tuple[str, str, int, bool]] = Counter()
        self._discovery: Counter[str] = Counter()
        self._other = 0
        self._writes: list[tuple[float, str, str, str, str, str]] = []

    def request(self, verb: str, resource: str, code: int, dry_run: bool) -> None:
        """Count one API request."""
        self._requests[(verb, resource, code, dry_run)] += 1

    def write(self, client: str, verb: str, resource: str, namespace: str, name: str, code: int, dry_run: bool) -> None:
        """Log one request if it is a successful write (see ``write_log``)."""
        if verb in WRITE_VERBS and not dry_run and 200 <= code < 300:
            self._writes.append((time.monotonic(), client, verb, resource, namespace, name))  # tuples: a third of the memory of dicts

    def discovery(self, path: str) -> None:
        """Count one discovery request."""
        self._discovery[path] += 1

    def other(self) -> None:
        """Count one non-API, non-admin request."""
        self._other += 1

    def snapshot(self) -> dict[str, Any]:
        """The documented dict (see the class docstring)."""
        rows = [
            {"verb": v, "resource": r, "code": c, "dryRun": d, "count": n}
            for (v, r, c, d), n in sorted(self._requests.items())
        ]
        by_verb: Counter[str] = Counter()
        writes = dry = 0
        for (v, _, _, d), n in self._requests.items():
            by_verb[v] += n
            if v in WRITE_VERBS:
                if d:
                    dry += n
                else:
                    writes += n
        return {
            "requests": rows,
            "by_verb": dict(by_verb),
            "writes": writes,
            "dry_run_writes": dry,
            "discovery": sum(self._discovery.values()),
            "discovery_paths": dict(self._discovery),
            "other": self._other,
            "write_log": [dict(zip(_WRITE_FIELDS, w, strict=True)) for w in self._writes],
        }
