"""``ignore_differences``: fields of the desired state that gitopsd neither compares nor applies.

An app's ``ignore_differences = [{ kind, group?, name?, namespace?, json_pointers }]`` names
fields (RFC 6901 pointers such as ``/spec/replicas``) of matching objects. They are removed
from the object as soon as it is prepared, so:

- they are not compared with the live object (no drift, no OutOfSync, no self-heal), and
- they are not in the server-side apply body, so gitopsd's field manager gives up
  ownership of them and leaves their value to whoever else sets it (an HPA through the
  scale subresource, a mutating webhook, an operator). Server-side apply removes a field
  that its last applier drops only when no other manager owns it; once an HPA has set
  ``replicas``, gitopsd no longer touches it.
"""

from __future__ import annotations

from typing import Any

from gitopsd.core.models import Manifest
from gitopsd.plugin.config import AppConfig, IgnoreDifference


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def pointer_tokens(pointer: str) -> list[str]:
    """``/metadata/annotations/a~1b`` -> ``["metadata", "annotations", "a/b"]``."""
    return [_unescape(t) for t in pointer.split("/")[1:]]


def rule_matches(rule: IgnoreDifference, obj: Manifest) -> bool:
    """Whether ``rule`` applies to ``obj`` (kind, and group/name/namespace when given)."""
    if obj.get("kind") != rule.kind:
        return False
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    meta = obj.get("metadata") or {}
    return (
        (rule.group is None or rule.group == group)
        and (rule.name is None or rule.name == meta.get("name"))
        and (rule.namespace is None or rule.namespace == (meta.get("namespace") or ""))
    )


def _without(value: Any, tokens: list[str]) -> Any:
    """``value`` without the field at ``tokens`` (copies only along the path; unchanged if absent)."""
    if not tokens:
        return value
    head, rest = tokens[0], tokens[1:]
    if isinstance(value, dict):
        if head not in value:
            return value
        if not rest:
            return {k: v for k, v in value.items() if k != head}
        return {**value, head: _without(value[head], rest)}
    if isinstance(value, list) and head.isdigit() and int(head) < len(value):
        index = int(head)
        if not rest:
            return value  # removing a list item would shift the others: not supported
        return [*value[:index], _without(value[index], rest), *value[index + 1 :]]
    return value


def without_ignored(app: AppConfig, obj: Manifest) -> Manifest:
    """``obj`` without the fields ``app.ignore_differences`` names for it (``obj`` itself when none)."""
    for rule in app.ignore_differences:
        if rule.json_pointers and rule_matches(rule, obj):
            for pointer in rule.json_pointers:
                obj = _without(obj, pointer_tokens(pointer))
    return obj
