"""YAML in and out: the C loader/dumper when available, and a budget for hostile input.

:func:`load_all` hands a text to :mod:`gitopsd.core.yamlfast` first: yaml-rs reads the YAML
in which YAML 1.1 (PyYAML's rules, and kubectl's) and 1.2 agree on every scalar, quicker;
PyYAML reads the rest, with the same result.

A :class:`YamlBudget` bounds one whole render (every file of a plain render, a program's
whole output): total bytes, documents, nesting depth and alias expansions. Per-document
limits alone let 16 small alias bombs of 307 bytes cost 266 MiB; the budget fails the
render as soon as any total is exceeded, naming the budget. Depth is checked before the
parser builds anything (older libyaml crashed on deep nesting; the pure-Python loader
recurses).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from types import GeneratorType
from typing import Any

import yaml

from gitopsd.core import yamlfast
from gitopsd.core.errors import RenderError

SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SafeDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

MAX_EXPANDED_NODES = 1_000_000
"""Documents whose aliases expand to more nodes than this are refused (billion laughs)."""

INTERN_MAX = 64
"""String values up to this length are interned (bench manifests: 13.0 -> 10.2 KiB per app)."""

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_STR = "tag:yaml.org,2002:str"
_SPECIAL_KEYS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")


_TAGS: dict[str, str] = {}
"""Plain scalar text -> its resolved tag (see :meth:`_Loader.resolve`)."""
_MAX_TAGS = 16_384
_MAX_REMEMBERED = 64
_BUILT: dict[tuple[str, str], Any] = {}
"""(tag, short scalar text) -> the int, float, bool or None PyYAML's constructor made of it (``replicas: 2``,
``port: 8080``): immutable, so shared (bounded as :data:`_TAGS`)."""
_REMEMBERED_TYPES = frozenset({int, float, bool, type(None)})


class _Slow(Exception):
    """The document needs PyYAML's own constructor (aliased collections, merge keys, tags...)."""


class _Loader(SafeLoader):  # type: ignore[misc,valid-type]
    """The safe loader with a quicker constructor for plain documents.

    Kubernetes manifests are mappings, sequences and scalars with the standard tags. For
    such a document the node graph is a tree, built here in one pass with every mapping
    key and short string interned (see :func:`compact`) and the nodes counted (``nodes``). Anything else
    (a collection reached twice through an alias, a merge key, another tag) goes to
    PyYAML's constructor and ``nodes`` is None: the caller then runs the alias checks.
    """

    nodes: int | None = None

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        if not self.yaml_path_resolvers:
            # The composer calls these two for every node. Without path resolvers (the safe
            # loader has none) PyYAML's own return at once, yet each is a Python call: two C
            # callables with no effect take their place (they build a slice, return ()).
            self.descend_resolver = slice
            self.ascend_resolver = tuple
            # And the tag of every scalar: a plain function in the instance's dict answers the
            # remembered ones (no bound method made per ask, no attribute lookups).
            known, ask = _TAGS.get, self.resolve
            scalar, mapping, sequence = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode

            def resolve(kind: Any, value: Any, implicit: Any) -> Any:
                if kind is scalar:
                    if not implicit[0]:
                        return _STR
                    tag = known(value)
                    if tag is not None:
                        return tag
                elif kind is mapping:
                    return _MAP
                elif kind is sequence:
                    return _SEQ
                return ask(kind, value, implicit)

            self.resolve = resolve  # type: ignore[method-assign]

    def dispose(self) -> None:
        # The instance's resolve closes over the instance (ask): drop it, or every loader
        # (its text and parser state) stays a cycle for the collector to find.
        self.__dict__.pop("resolve", None)
        super().dispose()

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        """PyYAML's tag resolution, with the tags of short plain scalars remembered.

        The C composer asks for every scalar; a manifest repeats the same keys and values
        (``apiVersion``, ``name``, ``v1``...), and each ask runs a few regular expressions
        in Python. Without path resolvers (the safe loader has none) a plain scalar's tag
        depends on its text alone, and a quoted one's is always ``str``.
        """
        if self.yaml_path_resolvers:
            return super().resolve(kind, value, implicit)
        if kind is not yaml.ScalarNode:
            return _MAP if kind is yaml.MappingNode else _SEQ if kind is yaml.SequenceNode else super().resolve(kind, value, implicit)
        if not implicit[0]:
            return _STR
        if len(value) > _MAX_REMEMBERED:
            return super().resolve(kind, value, implicit)
        tag = _TAGS.get(value)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_TAGS) >= _MAX_TAGS:
                _TAGS.clear()  # bounded; hostile input only costs the regular expressions again
            _TAGS[value] = tag
        return tag

    def construct_document(self, node: Any) -> Any:
        seen: set[int] = set()
        count = [0]
        constructors = self.yaml_constructors
        intern = sys.intern

        built = _BUILT

        def scalar(node: Any, tag: str) -> Any:
            """A scalar that is not a plain string (int, bool, null, float...)."""
            text = node.value
            value = built.get((tag, text), built)
            if value is not built:
                return value
            construct = constructors.get(tag)
            if construct is None:
                raise _Slow
            value = construct(self, node)
            if isinstance(value, GeneratorType):
                value.close()
                raise _Slow
            if type(value) in _REMEMBERED_TYPES and len(text) <= _MAX_REMEMBERED:
                if len(built) >= _MAX_TAGS:
                    built.clear()
                built[tag, text] = value
            return value

        def build(node: Any) -> Any:
            count[0] += 1
            tag = node.tag
            if node.id == "scalar":
                if tag == _STR:
                    # Short strings repeat across objects and apps (API versions, kinds, label
                    # values, ports' names): one copy each for as long as renders keep them.
                    value = node.value
                    return intern(value) if len(value) <= INTERN_MAX else value
                return scalar(node, tag)
            if id(node) in seen or count[0] > MAX_EXPANDED_NODES:
                raise _Slow  # an alias to a collection (or a huge document): the caller checks the expansion
            seen.add(id(node))
            if node.id == "mapping" and tag == _MAP:
                out: dict[Any, Any] = {}
                for key_node, value_node in node.value:
                    # Keys, and most values, are strings: taken here rather than by a call each.
                    key_tag = key_node.tag
                    if key_node.id != "scalar" or key_tag in _SPECIAL_KEYS:
                        raise _Slow
                    count[0] += 1
                    if key_tag == _STR:
                        key = intern(key_node.value)
                    else:
                        key = scalar(key_node, key_tag)
                        if type(key) is str:
                            key = intern(key)
                    if value_node.id == "scalar":
                        count[0] += 1
                        value_tag = value_node.tag
                        value = value_node.value
                        if value_tag == _STR:
                            out[key] = intern(value) if len(value) <= INTERN_MAX else value
                        else:
                            value = built.get((value_tag, value), built)
                            out[key] = value if value is not built else scalar(value_node, value_tag)
                    else:
                        out[key] = build(value_node)
                return out
            if node.id == "sequence" and tag == _SEQ:
                return [build(item) for item in node.value]
            raise _Slow

        try:
            data = build(node)
        except (_Slow, TypeError):  # TypeError: an unhashable key, which PyYAML's constructor names
            self.nodes = None
            return super().construct_document(node)
        finally:
            # build calls itself through its closure cell: emptying the cell frees it (and the
            # loader its scalar closure holds) at once, not at the next cyclic collection.
            build = None  # type: ignore[assignment]
        self.nodes = count[0]
        return data


@dataclass
class YamlBudget:
    """What one render may parse in all; counters grow as documents are loaded.

    Exceeding a limit raises RenderError naming it (``YAML budget max_bytes``, ...).
    """

    max_bytes: int = 64 * 1024 * 1024
    max_documents: int = 20_000
    max_depth: int = 100
    max_alias_expansions: int = 1_000_000
    bytes: int = 0
    documents: int = 0
    alias_expansions: int = 0

    def exceeded(self, where: str, name: str, limit: int, detail: str) -> RenderError:
        return RenderError(f"{where}: YAML budget {name} exceeded: {detail} (limit {limit:,} for the whole render)")

    def add_bytes(self, size: int, where: str) -> None:
        self.bytes += size
        if self.bytes > self.max_bytes:
            raise self.exceeded(where, "max_bytes", self.max_bytes, f"{self.bytes:,} bytes of YAML")

    def add_document(self, where: str) -> None:
        self.documents += 1
        if self.documents > self.max_documents:
            raise self.exceeded(where, "max_documents", self.max_documents, f"more than {self.max_documents:,} documents")


_LEADING = re.compile(r"(?:^|(?<=[\r\x85\u2028\u2029]))[ \t?:-]+", re.M)
"""The leading run of each line: libyaml breaks lines at CR, NEL, LS and PS too, not only LF."""
_BRACKETS = re.compile(r"[\[\]{}]")
_SHAPE = bytes(ord(" ") if chr(c) in " \t?:-" else ord("\n") if chr(c) in "\r\n" else ord("x") for c in range(256))
"""An ASCII text's shape: the characters of a leading run as spaces, line breaks as LF, anything else as x."""


def _depth_bound(text: str, limit: int) -> int:
    """A cheap upper bound of the nesting depth of ``text`` (block indentation plus flow brackets).

    Flow nesting is at most the number of opening brackets: counted in C, and the brackets
    walked only when that count alone would reach ``limit``.
    """
    block = 2 * max(map(len, _LEADING.findall(text)), default=0) + 2
    opening = text.count("[") + text.count("{")
    if block + opening <= limit:
        return block + opening
    flow = deepest = 0
    for m in _BRACKETS.finditer(text):
        if m.group() in "[{":
            flow += 1
            deepest = max(deepest, flow)
        elif flow:
            flow -= 1
    return block + deepest


def _surely_within(text: str, limit: int) -> bool:
    """Whether :func:`_depth_bound` is within ``limit``, decided for most manifests without it.

    The bound stays within ``limit`` when the opening brackets leave room for the longest
    leading run. For ASCII text that is one search of the text's shape (a C table lookup per
    character): no line starts with a longer run. A tenth of the cost of finding every run.
    """
    opening = text.count("[") + text.count("{")
    longest = (limit - 2 - opening) // 2  # the longest leading run that keeps the bound within limit
    if longest >= 0 and text.isascii():
        return b"\n" + b" " * (longest + 1) not in b"\n" + text.encode().translate(_SHAPE)
    return False


def check_depth(text: str, where: str, limit: int) -> None:
    """Refuse ``text`` nested deeper than ``limit``, without building any object.

    The bound above settles nearly every input; otherwise the parser's event stream (no
    recursion, no objects) measures the real depth.
    """
    if _surely_within(text, limit) or _depth_bound(text, limit) <= limit:
        return
    depth = 0
    starts = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
    ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    document = 0
    try:
        for event in yaml.parse(text, Loader=SafeLoader):
            if isinstance(event, starts):
                depth += 1
                if depth > limit:
                    line = event.start_mark.line + 1 if event.start_mark is not None else 0
                    raise RenderError(
                        f"{where}: document {document} line {line}: YAML budget max_depth exceeded: "
                        f"nested deeper than {limit} levels"
                    )
            elif isinstance(event, ends):
                depth -= 1
            elif isinstance(event, yaml.DocumentEndEvent):
                document += 1
    except yaml.YAMLError as exc:
        if "nesting depth" not in str(exc):  # libyaml's own limit (1000), met while scanning ahead
            return  # the loader reports it with its position
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise RenderError(
            f"{where}: document {document} line {line}: YAML budget max_depth exceeded: nested deeper than {limit} levels"
        ) from None


def _expanded_size(value: Any, memo: dict[int, int], shared: list[int]) -> int:
    """Node count with aliases expanded; memoised so a bomb costs only its distinct nodes.

    ``shared[0]`` counts the nodes that aliases add (each repeat of a subtree adds its size).
    """
    key = id(value)
    if key in memo:
        shared[0] += memo[key]
        return memo[key]
    if isinstance(value, dict):
        size = 1 + sum(_expanded_size(k, memo, shared) + _expanded_size(v, memo, shared) for k, v in value.items())
    elif isinstance(value, list):
        size = 1 + sum(_expanded_size(v, memo, shared) for v in value)
    else:
        return 1
    memo[key] = size
    return size


def compact(value: Any) -> Any:
    """``value`` with every mapping key, and every mapping value up to :data:`INTERN_MAX` characters, interned.

    Thousands of manifests and live objects repeat the same few hundred keys; sharing one
    string per key cuts their memory by about a third (bench 1000x5).
    """
    if isinstance(value, dict):
        return _compact_dict(value)
    if isinstance(value, list):
        return _compact_list(value)
    return value


# compact() runs on every live object the kube cache keeps: scalars (most values) are
# passed over inline rather than by a call each.


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _compact_dict(value: dict[Any, Any]) -> dict[Any, Any]:
    intern = sys.intern
    out = {}
    for k, v in value.items():
        if type(v) is str:
            if len(v) <= INTERN_MAX:
                v = intern(v)
        elif type(v) not in _SCALARS:
            v = compact(v)
        out[intern(k) if isinstance(k, str) else k] = v
    return out


def _compact_list(value: list[Any]) -> list[Any]:
    return [v if type(v) in _SCALARS else compact(v) for v in value]


def _unshare(value: Any) -> Any:
    """A copy in which no container appears twice (copy.deepcopy would keep the sharing)."""
    if isinstance(value, dict):
        return {k: _unshare(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshare(v) for v in value]
    return value


def load_all(text: str, where: str, budget: YamlBudget | None = None) -> list[tuple[int, Any]]:
    """Parse a multi-document YAML stream; return ``(document index, value)`` pairs, empties skipped.

    Raises RenderError naming ``where`` (a file) and the document index on bad YAML, on an
    alias expansion beyond :data:`MAX_EXPANDED_NODES`, or when ``budget`` (shared by a whole
    render; a fresh one by default) runs out.
    """
    budget = budget if budget is not None else YamlBudget()
    budget.add_bytes(len(text), where)
    check_depth(text, where, budget.max_depth)
    docs: list[tuple[int, Any]] = []
    # None: PyYAML reads it (and counts nodes: a node takes a byte at least, so a shorter text
    # cannot hold more than MAX_EXPANDED_NODES).
    quick = yamlfast.load_documents(text, MAX_EXPANDED_NODES // 2)
    if quick is not None:
        for index, doc in enumerate(quick):
            budget.add_document(where)
            if doc is not None:
                docs.append((index, compact(doc)))
        return docs
    loader = _Loader(text)
    index = 0
    try:
        while True:
            try:
                if not loader.check_data():
                    break
                doc = loader.get_data()
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = f" line {mark.line + 1}" if mark is not None else ""
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise RenderError(f"{where}: document {index}{line}: invalid YAML: {problem}") from None
            except RecursionError:
                raise RenderError(f"{where}: document {index}: nested too deeply") from None
            budget.add_document(where)
            if doc is not None:
                docs.append((index, _checked(doc, loader.nodes, where, index, budget)))
            index += 1
    finally:
        loader.dispose()
    return docs


def _checked(doc: Any, nodes: int | None, where: str, index: int, budget: YamlBudget) -> Any:
    """``doc`` once its alias expansion is within the limits, unshared and compact."""
    if nodes is not None:  # built as a tree by _Loader: no alias, keys interned
        if nodes > MAX_EXPANDED_NODES:
            raise RenderError(f"{where}: document {index}: YAML aliases expand to more than {MAX_EXPANDED_NODES:,} nodes")
        return doc
    shared = [0]
    try:
        size = _expanded_size(doc, {}, shared)
    except RecursionError:
        raise RenderError(f"{where}: document {index}: nested too deeply") from None
    if size > MAX_EXPANDED_NODES:
        raise RenderError(f"{where}: document {index}: YAML aliases expand to more than {MAX_EXPANDED_NODES:,} nodes")
    budget.alias_expansions += shared[0]
    if budget.alias_expansions > budget.max_alias_expansions:
        raise budget.exceeded(
            f"{where}: document {index}", "max_alias_expansions", budget.max_alias_expansions,
            f"aliases expand to {budget.alias_expansions:,} more nodes",
        )
    if shared[0]:
        doc = _unshare(doc)  # aliases share objects; give each place its own copy
    return compact(doc)


def flatten(doc: Any, where: str) -> list[dict[str, Any]]:
    """One object, or the items of a ``*List`` (recursively); anything else is a RenderError naming ``where``."""
    if not isinstance(doc, dict):
        raise RenderError(f"{where}: expected a Kubernetes object (a mapping), got {type(doc).__name__}")
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise RenderError(f"{where}: {kind}.items must be a list")
        out: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            out.extend(flatten(item, f"{where} item {i}"))
        return out
    if not kind or not doc.get("apiVersion"):
        raise RenderError(f"{where}: object has no kind or apiVersion")
    return [doc]


def manifests_from_yaml(text: str, where: str, budget: YamlBudget | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object in a YAML stream: documents split, Lists flattened, empties skipped.

    Errors name ``where`` (a file or a program's output) and the document index. Pass one
    ``budget`` for every stream of a render.
    """
    manifests: list[dict[str, Any]] = []
    for index, doc in load_all(text, where, budget):
        manifests.extend(flatten(doc, f"{where}: document {index}"))
    return manifests


def dump_all(docs: Iterable[Any]) -> str:
    """A YAML stream of ``docs``, keys in their given order."""
    return yaml.dump_all(list(docs), Dumper=SafeDumper, sort_keys=False, default_flow_style=False, explicit_start=True)
