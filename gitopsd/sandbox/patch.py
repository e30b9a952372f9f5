"""Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch."""

from __future__ import annotations

from typing import Any

from .lists import list_type
from .status import ApiError, bad_request
from .store import clone


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch; returns a new value, the inputs are not modified."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- JSON patch --------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"json patch path {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: doc is missing path: /{'/'.join(parts)}")
    return cur, parts[-1]


def _get(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return doc
    parent, last = _parent(doc, parts)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: doc is missing path: /{'/'.join(parts)}")


def _remove(doc: Any, parts: list[str]) -> Any:
    parent, last = _parent(doc, parts)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: Unable to remove nonexistent key: {last}: missing value")


def _add(doc: Any, parts: list[str], value: Any, replace: bool = False) -> Any:
    if not parts:
        return value
    parent, last = _parent(doc, parts)
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: replace operation does not apply: doc is missing key: /{'/'.join(parts)}: missing value")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: index out of range: {last}")
    else:
        raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request: path does not point into a map or list")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch; returns a new document."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc = clone(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {op!r}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, clone(op.get("value")))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            doc = _add(doc, parts, clone(op.get("value")), replace=True)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = _remove(doc, source) if kind == "move" else clone(_get(doc, source))
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: testing value {op['path']} failed: test failed")
        else:
            raise bad_request(f"unexpected json patch operation {kind!r}")
    return doc


# -- strategic merge patch ----------------------------------------------------


def _strip(value: Any) -> Any:
    """Remove ``$patch``-style directives from a value added as a whole."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and v.get("$patch") == "delete")]
    return value


def strategic_merge(original: Any, patch: Any, names: tuple[str, ...] = (), crd: bool = False) -> Any:
    """Apply a strategic merge patch, merging known lists (containers, env, ports, ...) by key."""
    if not isinstance(patch, dict) or not isinstance(original, dict):
        return _strip(patch)
    if patch.get("$patch") == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    result = dict(original)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        if isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
            continue
        old = result.get(key)
        path = (*names, key)
        if isinstance(value, list) and isinstance(old, list):
            result[key] = _merge_list(old, value, path, crd)
        elif isinstance(value, dict) and isinstance(old, dict):
            result[key] = strategic_merge(old, value, path, crd)
        else:
            result[key] = _strip(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(old: list[Any], patch: list[Any], names: tuple[str, ...], crd: bool) -> list[Any]:
    if any(isinstance(v, dict) and v.get("$patch") == "replace" for v in patch):
        return [_strip(v) for v in patch if not (isinstance(v, dict) and v.get("$patch") == "replace")]
    lt = list_type(names, crd)
    if lt == "set":
        return list(old) + [v for v in patch if v not in old]
    if not isinstance(lt, tuple):
        return _strip(patch)
    keys = lt

    def key_of(item: Any) -> Any:
        return tuple(item.get(k) for k in keys) if isinstance(item, dict) else None

    result = list(old)
    index = {key_of(item): i for i, item in enumerate(result)}
    deleted: set[Any] = set()
    for item in patch:
        k = key_of(item)
        if isinstance(item, dict) and item.get("$patch") == "delete":
            deleted.add(k)
            continue
        if k in index and k not in deleted:
            result[index[k]] = strategic_merge(result[index[k]], item, names, crd)
        else:
            index[k] = len(result)
            result.append(_strip(item))
    return [item for item in result if key_of(item) not in deleted]
