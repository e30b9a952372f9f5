"""Deterministic fault injection: error rates, latency, dropped connections, stalls.

A spec is a JSON object (or a path to a JSON/YAML file, prefixed with ``@``)::

    {"rules": [
        {"verb": "patch", "resource": "deployments.apps", "error_rate": 0.2, "code": 503},
        {"verb": "*", "resource": "*", "latency_ms": 20},
        {"verb": "list", "resource": "configmaps", "error_rate": 0.1, "code": 429, "retry_after": 2},
        {"verb": "get", "resource": "*", "drop_rate": 0.05},
        {"verb": "watch", "resource": "*", "stall_rate": 0.5, "stall_seconds": 30}
    ]}

or the compact form ``verb:resource:key=value,key=value;...``, e.g.
``patch:deployments.apps:error_rate=0.2,code=503;*:*:latency_ms=5``.

Verbs are the counted ones (get, list, watch, create, update, patch, apply,
delete, deletecollection) or ``*``; ``write`` matches every mutating verb.
Resources are ``plural.group`` (``plural`` for the core group), optionally with
``/subresource``, or ``*``. Each rule draws from its own random stream seeded
with ``(seed, rule index)``, so the same sequence of requests gets the same faults.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

WRITE_VERBS = {"create", "update", "patch", "apply", "delete", "deletecollection"}


@dataclass
class FaultRule:
    """One rule; every rate is a probability in [0, 1]."""

    verb: str = "*"
    resource: str = "*"
    error_rate: float = 0.0
    code: int | list[int] = 500
    retry_after: int = 1
    latency_ms: float = 0.0
    drop_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 3600.0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def matches(self, verb: str, resource: str) -> bool:
        verb_ok = self.verb in ("*", verb) or (self.verb == "write" and verb in WRITE_VERBS)
        base = resource.split("/", 1)[0]
        res_ok = self.resource in ("*", resource, base) or base.split(".", 1)[0] == self.resource
        return verb_ok and res_ok


@dataclass
class Decision:
    """What to do to one request."""

    latency: float = 0.0
    code: int = 0
    retry_after: int = 0
    drop: bool = False
    stall: float = 0.0


_FIELDS = {"verb", "resource", "error_rate", "code", "retry_after", "latency_ms", "drop_rate",
           "stall_rate", "stall_seconds"}


def parse_spec(spec: Any) -> list[dict[str, Any]]:
    """Rules (plain dicts) from a dict, a JSON/compact string, or ``@path``."""
    if spec is None or spec == "":
        return []
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
            spec = yaml.safe_load(text)
        elif text.startswith(("{", "[")):
            spec = json.loads(text)
        else:
            spec = {"rules": [_compact(part) for part in text.split(";") if part.strip()]}
    if isinstance(spec, list):
        spec = {"rules": spec}
    if not isinstance(spec, dict):
        raise ValueError("a fault spec is an object with a 'rules' list")
    rules = spec.get("rules") or []
    for rule in rules:
        unknown = set(rule) - _FIELDS
        if unknown:
            raise ValueError(f"unknown fault rule field(s): {', '.join(sorted(unknown))}")
    return [dict(r) for r in rules]


def _compact(part: str) -> dict[str, Any]:
    pieces = part.strip().split(":", 2)
    if len(pieces) != 3:
        raise ValueError(f"fault rule {part!r} is not verb:resource:key=value,...")
    verb, resource, opts = pieces
    rule: dict[str, Any] = {"verb": verb or "*", "resource": resource or "*"}
    for opt in opts.split(","):
        if not opt.strip():
            continue
        k, _, v = opt.partition("=")
        k = k.strip()
        if k == "code" and "|" in v:
            rule[k] = [int(x) for x in v.split("|")]
        elif k in ("code", "retry_after"):
            rule[k] = int(v)
        else:
            rule[k] = float(v)
    return rule


class Faults:
    """The active rules of one sandbox."""

    def __init__(self, spec: Any = None, seed: int = 0) -> None:
        self.seed = seed
        self.rules: list[FaultRule] = []
        self.raw: list[dict[str, Any]] = []
        self.injected: dict[str, int] = {}
        self.set(spec)

    def set(self, spec: Any) -> None:
        """Replace every rule (an empty spec clears them)."""
        raw = parse_spec(spec)
        rules = []
        for i, r in enumerate(raw):
            rules.append(FaultRule(**r, rng=random.Random(f"{self.seed}:{i}")))
        self.raw, self.rules = raw, rules

    def decide(self, verb: str, resource: str) -> Decision:
        """The combined decision of every matching rule."""
        d = Decision()
        for rule in self.rules:
            if not rule.matches(verb, resource):
                continue
            d.latency += rule.latency_ms / 1000.0
            if rule.drop_rate and rule.rng.random() < rule.drop_rate:
                d.drop = True
            if rule.stall_rate and rule.rng.random() < rule.stall_rate:
                d.stall = max(d.stall, rule.stall_seconds)
            if rule.error_rate and not d.code and rule.rng.random() < rule.error_rate:
                codes = rule.code if isinstance(rule.code, list) else [rule.code]
                d.code = codes[rule.rng.randrange(len(codes))]
                d.retry_after = rule.retry_after
        for name, hit in (("drop", d.drop), ("stall", bool(d.stall)), (str(d.code), bool(d.code))):
            if hit:
                self.injected[name] = self.injected.get(name, 0) + 1
        return d
