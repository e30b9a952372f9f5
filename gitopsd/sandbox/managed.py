"""Server-side apply: field sets (fieldsV1), ownership per manager, conflicts, merging.

A field set is a ``set`` of paths; a path is a tuple of fieldsV1 elements
(``"f:spec"``, ``'k:{"name":"app"}'``, ``'v:"x"'``). A list item owned as a whole
is a member itself (rendered with ``"."`` when it also has children). Maps are
not members, only their leaves (an empty map is a leaf).
"""

from __future__ import annotations

import json
from typing import Any

from .lists import list_type
from .status import ApiError

Path = tuple[str, ...]
FieldSet = set[Path]

_META_SKIP = {
    "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
    "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "generateName",
}


def _key_elem(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    return "k:" + json.dumps({k: item[k] for k in sorted(keys) if k in item}, separators=(",", ":"))


def _is_map_list(value: list[Any], keys: tuple[str, ...]) -> bool:
    return all(isinstance(i, dict) and all(k in i for k in keys) for i in value)


def _walk(value: Any, path: Path, names: tuple[str, ...], crd: bool, out: FieldSet) -> None:
    if isinstance(value, dict):
        if not value:
            out.add(path)
        for k, v in value.items():
            if isinstance(v, dict | list):
                _walk(v, (*path, "f:" + k), (*names, k), crd, out)
            else:  # a leaf (what _walk would add for it, without the call)
                out.add((*path, "f:" + k))
    elif isinstance(value, list):
        lt = list_type(names, crd)
        if isinstance(lt, tuple) and value and _is_map_list(value, lt):
            for item in value:
                p = (*path, _key_elem(item, lt))
                out.add(p)
                for k, v in item.items():
                    _walk(v, (*p, "f:" + k), (*names, k), crd, out)
        elif lt == "set" and value and all(not isinstance(v, dict | list) for v in value):
            for v in value:
                out.add((*path, "v:" + json.dumps(v, separators=(",", ":"))))
        else:
            out.add(path)
    else:
        out.add(path)


def field_set(obj: dict[str, Any], scope: str, has_status: bool, crd: bool) -> FieldSet:
    """Fields of an object that managers can own.

    ``scope`` is ``"main"`` (everything but ``status`` when the type has a status
    subresource) or ``"status"`` (only ``status``).
    """
    out: FieldSet = set()
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "status" and scope == "main" and has_status:
            continue
        if scope == "status" and key != "status":
            continue
        if key == "metadata" and isinstance(value, dict):
            for mk, mv in value.items():
                if mk not in _META_SKIP:
                    _walk(mv, ("f:metadata", "f:" + mk), ("metadata", mk), crd, out)
            continue
        _walk(value, ("f:" + key,), (key,), crd, out)
    return out


def to_fields_v1(fields: FieldSet) -> dict[str, Any]:
    """Render a field set as the nested fieldsV1 dict."""
    root: dict[str, Any] = {}
    for path in sorted(fields):
        node = root
        for elem in path:
            node = node.setdefault(elem, {})
    # A member that is also a parent carries a "." marker.
    for path in fields:
        node = root
        for elem in path:
            node = node[elem]
        if node:
            node["."] = {}
    return root


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> FieldSet:
    """Parse a nested fieldsV1 dict into a field set."""
    out: FieldSet = set()
    for elem, child in tree.items():
        if elem == ".":
            out.add(prefix)
            continue
        p = (*prefix, elem)
        if not child:
            out.add(p)
        else:
            out |= from_fields_v1(child, p)
    return out


# -- navigation -----------------------------------------------------------------


_MISSING = object()


def _step(node: Any, elem: str) -> Any:
    kind, _, rest = elem.partition(":")
    if kind == "f":
        return node.get(rest, _MISSING) if isinstance(node, dict) else _MISSING
    if kind == "k" and isinstance(node, list):
        want = json.loads(rest)
        for item in node:
            if isinstance(item, dict) and all(item.get(k) == v for k, v in want.items()):
                return item
        return _MISSING
    if kind == "v" and isinstance(node, list):
        value = json.loads(rest)
        return value if value in node else _MISSING
    return _MISSING


def get_path(obj: Any, path: Path) -> Any:
    """The value at a path, or the sentinel ``_MISSING``."""
    node = obj
    for elem in path:
        node = _step(node, elem)
        if node is _MISSING:
            return _MISSING
    return node


def remove_path(obj: dict[str, Any], path: Path) -> None:
    """Remove the field, list item or set value at a path.

    ``obj`` itself changes; the containers on the way are replaced by changed copies, never
    changed in place: below the top level they may be shared with the stored object.
    """
    if get_path(obj, path) is _MISSING:
        return
    node: Any = obj
    for elem in path[:-1]:
        kind, _, rest = elem.partition(":")
        if kind == "f":
            child = node[rest]
            copy: Any = dict(child) if isinstance(child, dict) else list(child)
            node[rest] = copy
        else:  # "k": a list item (the list is a copy already)
            item = _step(node, elem)
            copy = dict(item)
            node[next(i for i, x in enumerate(node) if x is item)] = copy
        node = copy
    kind, _, rest = path[-1].partition(":")
    if kind == "f" and isinstance(node, dict):
        node.pop(rest, None)
    elif kind == "k" and isinstance(node, list):
        item = _step(node, path[-1])
        node[:] = [i for i in node if i is not item]
    elif kind == "v" and isinstance(node, list):
        value = json.loads(rest)
        node[:] = [v for v in node if v != value]


def path_string(path: Path) -> str:
    """A path as the API server prints it: ``.spec.containers[name="app"].image``."""
    out = []
    for elem in path:
        kind, _, rest = elem.partition(":")
        if kind == "f":
            out.append("." + rest)
        elif kind == "k":
            keys = json.loads(rest)
            out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]")
        elif kind == "v":
            out.append(f"[={rest}]")
    return "".join(out)


# -- merging an applied configuration ------------------------------------------------


def merge_applied(live: Any, applied: Any, names: tuple[str, ...], crd: bool) -> Any:
    """Merge an applied configuration into the live value (SSA structural merge)."""
    if isinstance(applied, dict) and isinstance(live, dict):
        result = dict(live)
        for k, v in applied.items():
            if v is None:
                result.pop(k, None)
            else:
                result[k] = merge_applied(live.get(k), v, (*names, k), crd)
        return result
    if isinstance(applied, list) and isinstance(live, list):
        lt = list_type(names, crd)
        if isinstance(lt, tuple) and _is_map_list(applied, lt) and _is_map_list(live, lt):
            keys = lt
            by_key = {tuple(i.get(k) for k in keys): i for i in applied}
            out = []
            seen = set()
            for item in live:
                k = tuple(item.get(x) for x in keys)
                if k in by_key:
                    out.append(merge_applied(item, by_key[k], names, crd))
                    seen.add(k)
                else:
                    out.append(item)
            out += [i for i in applied if tuple(i.get(x) for x in keys) not in seen]
            return out
        if lt == "set":
            return list(live) + [v for v in applied if v not in live]
    return applied


def _drop_nulls(value: Any) -> None:
    """Remove null map values at every level, in place (list items stay)."""
    if isinstance(value, dict):
        nulls = [k for k, v in value.items() if v is None]
        for k in nulls:
            del value[k]
        for v in value.values():
            if isinstance(v, dict | list):
                _drop_nulls(v)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict | list):
                _drop_nulls(v)


# -- managedFields entries ----------------------------------------------------------


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def _entry_scope(entry: dict[str, Any]) -> str:
    return "status" if entry.get("subresource") == "status" else "main"


def _manager_label(entry: dict[str, Any]) -> str:
    label = json.dumps(entry["manager"])
    if entry.get("subresource"):
        label += f' with subresource "{entry["subresource"]}"'
    if entry.get("operation") == "Update":
        label += f" using {entry.get('apiVersion', '')}"
    return label


def _make_entry(
    manager: str, operation: str, api_version: str, fields: FieldSet, now: str, subresource: str
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(fields),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    force: bool,
    api_version: str,
    has_status: bool,
    crd: bool,
    now: str,
    subresource: str = "",
) -> dict[str, Any]:
    """Server-side apply of ``applied`` by ``manager`` onto ``live`` (None: create).

    Returns the new object with ``metadata.managedFields`` updated. Raises a 409
    Conflict with FieldManagerConflict causes when another manager owns a field
    whose value would change and ``force`` is false. ``applied`` is the caller's to give
    away (it loses its nulls in place and its containers become the new object's); ``live``
    is not changed below its top level: the result shares what the apply left alone with
    it, and copies what it changed.
    """
    scope = "status" if subresource == "status" else "main"
    _drop_nulls(applied)
    new_fields = field_set(applied, scope, has_status, crd)
    if live is None:
        obj = applied
        meta = obj.setdefault("metadata", {})
        meta["managedFields"] = [_make_entry(manager, "Apply", api_version, new_fields, now, subresource)]
        return obj

    entries = _entries(live)
    parsed = [(e, from_fields_v1(e.get("fieldsV1") or {})) for e in entries]
    mine_prev: FieldSet = set()
    conflicts: dict[str, list[Path]] = {}
    conflicting: set[Path] = set()
    others: list[tuple[dict[str, Any], FieldSet]] = []
    for entry, fields in parsed:
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and _entry_scope(entry) == scope:
            mine_prev = fields
            continue
        others.append((entry, fields))
        if _entry_scope(entry) != scope:
            continue
        for path in new_fields & fields:
            if path[-1].startswith("k:"):
                continue
            current = get_path(live, path)
            if current is _MISSING:
                continue
            if current != get_path(applied, path):
                conflicts.setdefault(_manager_label(entry), []).append(path)
                conflicting.add(path)
    if conflicts and not force:
        raise _conflict_error(conflicts)

    merged = merge_applied(live, applied, (), crd)
    merged["metadata"] = dict(merged.get("metadata") or {})
    kept_others: list[tuple[dict[str, Any], FieldSet, FieldSet]] = []  # entry, kept fields, its fields before
    for entry, fields in others:
        kept = fields - conflicting if force and _entry_scope(entry) == scope else fields
        kept_others.append((entry, kept, fields))
    owned_by_others: FieldSet = set()
    for _, fields, _ in kept_others:
        owned_by_others |= fields
    for path in sorted(mine_prev - new_fields, key=len):  # an item before its fields: the fields go with it
        if path in owned_by_others:
            continue
        if any(o[: len(path)] == path for o in owned_by_others):
            continue  # someone owns a field inside this item: keep the item
        remove_path(merged, path)

    out_entries = []
    prev_entry = next(
        (e for e, _ in parsed if e.get("manager") == manager and e.get("operation") == "Apply"
         and _entry_scope(e) == scope),
        None,
    )
    for entry, fields, before in kept_others:
        if not fields:
            continue
        if fields != before:
            entry = dict(entry, fieldsV1=to_fields_v1(fields))
        out_entries.append(entry)
    if prev_entry is not None and mine_prev == new_fields:
        mine_entry = prev_entry
    else:
        mine_entry = _make_entry(manager, "Apply", api_version, new_fields, now, subresource)
    # Keep the manager's position in the list stable.
    position = entries.index(prev_entry) if prev_entry is not None else len(out_entries)
    out_entries.insert(min(position, len(out_entries)), mine_entry)
    merged["metadata"]["managedFields"] = out_entries
    return merged


def _conflict_error(conflicts: dict[str, list[Path]]) -> ApiError:
    total = sum(len(v) for v in conflicts.values())
    causes = []
    for label, paths in conflicts.items():
        for p in sorted(paths):
            causes.append({"reason": "FieldManagerConflict", "message": f"conflict with {label}", "field": path_string(p)})
    if total == 1:
        ((label, paths),) = conflicts.items()
        text = f"conflict with {label}: {path_string(paths[0])}"
    else:
        text = "\n".join(
            f"conflicts with {label}:\n" + "\n".join(f"- {path_string(p)}" for p in sorted(paths))
            for label, paths in conflicts.items()
        )
    plural = "" if total == 1 else "s"
    return ApiError(409, "Conflict", f"Apply failed with {total} conflict{plural}: {text}", {"causes": causes})


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    api_version: str,
    has_status: bool,
    crd: bool,
    now: str,
    subresource: str = "",
) -> None:
    """Record a non-apply write (create/update/patch) by ``manager`` in ``new``'s managedFields.

    The manager takes ownership of every field it changed; fields it removed leave
    every manager's set.
    """
    scope = "status" if subresource == "status" else "main"
    new_fields = field_set(new, scope, has_status, crd)
    old_fields = field_set(old, scope, has_status, crd) if old is not None else set()
    changed = {p for p in new_fields if p not in old_fields or get_path(new, p) != get_path(old, p)}
    removed = old_fields - new_fields
    entries = _entries(old) if old is not None else []
    out = []
    mine_found = False
    for entry in entries:
        fields = from_fields_v1(entry.get("fieldsV1") or {})
        is_mine = (entry.get("manager") == manager and entry.get("operation") == "Update"
                   and entry.get("subresource", "") == subresource)
        if _entry_scope(entry) == scope:
            updated = (fields | changed) - removed if is_mine else fields - changed - removed
        else:
            updated = fields
        if is_mine:
            mine_found = True
            if updated != fields or changed:
                entry = _make_entry(manager, "Update", api_version, updated, now, subresource)
        elif updated != fields:
            entry = dict(entry, fieldsV1=to_fields_v1(updated))
        if updated:
            out.append(entry)
    if not mine_found and changed:
        out.append(_make_entry(manager, "Update", api_version, changed, now, subresource))
    meta = new.setdefault("metadata", {})
    if out:
        meta["managedFields"] = out
    else:
        meta.pop("managedFields", None)
