"""Desired vs live without API calls: is what gitopsd applies still there?

The comparison is a *subset* test: every field of the desired object must be in the live
object with an equal value; fields only the server has (defaults, status, managedFields)
are ignored. Values are normalised first: quantities (``"500m" == "0.5"``,
``"1Gi" == "1024Mi"``, ``80 == "80"``), ``stringData`` of Secrets as base64 ``data``,
empty desired values as absent, and lists of named items (containers, ports, env) matched
by name.
"""

from __future__ import annotations

import base64
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from gitopsd.core.models import Manifest
from gitopsd.kube.ignore import without_managed

_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_META_COMPARED = ("name", "namespace", "labels", "annotations")
_IGNORED_TOP = frozenset({"apiVersion", "kind", "status"})


def quantity(value: Any) -> Decimal | None:
    """The numeric value of a Kubernetes quantity (or plain number), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if not match:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]
    except InvalidOperation:
        return None


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == [] or value == ""


def scalar_equal(desired: Any, live: Any) -> bool:
    if desired == live and type(desired) is type(live):
        return True
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired == live and isinstance(desired, bool) and isinstance(live, bool)
    a, b = quantity(desired), quantity(live)
    return a is not None and b is not None and a == b


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def differences(desired: Any, live: Any, path: str = "") -> list[str]:
    """Paths (``.spec.replicas``) where ``desired`` is not a subset of ``live``."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [] if _empty(desired) and live is None else [path or "."]
        out: list[str] = []
        for key, value in desired.items():
            sub = f"{path}.{key}"
            if key not in live or live[key] is None:
                if not _empty(value):
                    out.append(sub)
                continue
            out.extend(differences(value, live[key], sub))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list):
            return [] if _empty(desired) and live is None else [path]
        if len(desired) != len(live):
            return [path]
        if _named(desired) and _named(live):
            by_name = {i["name"]: i for i in live}
            out = []
            for item in desired:
                if item["name"] not in by_name:
                    out.append(f"{path}[name={item['name']}]")
                else:
                    out.extend(
                        differences(item, by_name[item["name"]], f"{path}[name={item['name']}]")
                    )
            return out
        out = []
        for i, (d, v) in enumerate(zip(desired, live, strict=True)):
            out.extend(differences(d, v, f"{path}[{i}]"))
        return out
    return [] if scalar_equal(desired, live) else [path]


def comparable(desired: Manifest) -> Manifest:
    """The part of a desired manifest that is compared with the live object."""
    out: Manifest = {k: v for k, v in desired.items() if k not in _IGNORED_TOP and k != "metadata"}
    meta = desired.get("metadata") or {}
    out["metadata"] = {k: meta[k] for k in _META_COMPARED if k in meta}
    if (
        desired.get("kind") == "Secret"
        and desired.get("apiVersion") == "v1"
        and isinstance(desired.get("stringData"), dict)
    ):
        data = dict(out.get("data") or {})
        for key, value in out.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        out["data"] = data
    return out


def drifted_fields(desired: Manifest, live: Manifest | None) -> list[str]:
    """Fields of ``desired`` that differ in ``live`` (``["<missing>"]`` when there is no live object)."""
    if live is None:
        return ["<missing>"]
    return differences(comparable(without_managed(desired, live)), live)


def matches(desired: Manifest, live: Manifest | None) -> bool:
    """True when every field gitopsd applies has its desired value in ``live``.

    Fields owned by the managers an app's ``ignore_differences`` names are not compared
    (:func:`gitopsd.kube.ignore.without_managed`).
    """
    return live is not None and not differences(comparable(without_managed(desired, live)), live)


def project(live: Any, desired: Any) -> Any:
    """``live`` restricted to the fields present in ``desired`` (what ``gitopsd diff`` shows)."""
    if isinstance(desired, dict) and isinstance(live, dict):
        return {k: project(live[k], v) for k, v in desired.items() if k in live}
    if isinstance(desired, list) and isinstance(live, list):
        if _named(desired) and _named(live):
            by_name = {i["name"]: i for i in live}
            order = [by_name[d["name"]] for d in desired if d["name"] in by_name]
            rest = [i for i in live if i["name"] not in {d["name"] for d in desired}]
            return [
                project(item, next(d for d in desired if d["name"] == item["name"]))
                for item in order
            ] + rest
        return [project(v, desired[i]) if i < len(desired) else v for i, v in enumerate(live)]
    return live
