"""Label and field selectors as the API server parses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .status import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_SET_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


def _label_test(key: str, op: str, values: set[str]) -> Callable[[dict[str, str]], bool]:
    def test(labels: dict[str, str]) -> bool:
        if op == "=":
            return labels.get(key) in values
        if op == "!=":
            return labels.get(key) not in values
        if op == "in":
            return key in labels and labels[key] in values
        if op == "notin":
            return labels.get(key) not in values
        if op == "exists":
            return key in labels
        return key not in labels

    return test


def parse_label_selector(text: str | None) -> Predicate | None:
    """A predicate over an object's labels; supports =, ==, !=, in, notin, exists, !exists."""
    if not text:
        return None
    tests: list[Callable[[dict[str, str]], bool]] = []
    for req in _split_top(text):
        if "!=" in req:
            k, v = (s.strip() for s in req.split("!=", 1))
            tests.append(_label_test(k, "!=", {v}))
            continue
        if "==" in req or ("=" in req and " in " not in req and "notin" not in req):
            k, v = (s.strip() for s in re.split(r"==?", req, maxsplit=1))
            tests.append(_label_test(k, "=", {v}))
            continue
        m = _SET_RE.match(req)
        if not m:
            raise bad_request(f"unable to parse requirement: invalid label selector {text!r}")
        neg, key, op, values = m.groups()
        if op:
            if neg:
                raise bad_request(f"unable to parse requirement: invalid label selector {text!r}")
            vals = {s.strip() for s in values.split(",") if s.strip()}
            tests.append(_label_test(key, op, vals))
        else:
            tests.append(_label_test(key, "!exists" if neg else "exists", set()))

    def predicate(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(t(labels) for t in tests)

    return predicate


_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
}
_EXTRA_FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    "pods": {
        "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", ""),
        "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
    },
    "secrets": {"type": lambda o: o.get("type", "")},
    "events": {
        "involvedObject.name": lambda o: (o.get("involvedObject") or {}).get("name", ""),
        "involvedObject.kind": lambda o: (o.get("involvedObject") or {}).get("kind", ""),
        "involvedObject.uid": lambda o: (o.get("involvedObject") or {}).get("uid", ""),
        "involvedObject.namespace": lambda o: (o.get("involvedObject") or {}).get("namespace", ""),
        "involvedObject.apiVersion": lambda o: (o.get("involvedObject") or {}).get("apiVersion", ""),
        "involvedObject.fieldPath": lambda o: (o.get("involvedObject") or {}).get("fieldPath", ""),
        "reason": lambda o: o.get("reason", ""),
        "type": lambda o: o.get("type", ""),
        "source": lambda o: (o.get("source") or {}).get("component", ""),
    },
}


def _field_test(getter: Callable[[dict[str, Any]], str], value: str, neg: bool) -> Predicate:
    def test(obj: dict[str, Any]) -> bool:
        return (getter(obj) != value) if neg else (getter(obj) == value)

    return test


def parse_field_selector(text: str | None, plural: str) -> tuple[Predicate | None, str | None]:
    """A predicate over fields, and the exact name required (``metadata.name=x``) if any."""
    if not text:
        return None, None
    getters = dict(_FIELDS, **_EXTRA_FIELDS.get(plural, {}))
    tests: list[Predicate] = []
    exact_name: str | None = None
    for req in _split_top(text):
        neg = "!=" in req
        k, v = (s.strip() for s in re.split(r"!=|==?", req, maxsplit=1)) if re.search(r"!=|=", req) else (req, "")
        getter = getters.get(k)
        if getter is None:
            raise bad_request(f'"{k}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        tests.append(_field_test(getter, v, neg))
        if not neg and k == "metadata.name":
            exact_name = v

    def predicate(obj: dict[str, Any]) -> bool:
        return all(t(obj) for t in tests)

    return predicate, exact_name
