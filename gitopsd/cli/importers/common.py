"""What both importers share: reading manifests, the translation being built, and TOML out.

A translation is a set of entries (``[clusters.*]`` stubs, ``[policies.*]``, ``[apps.*]``,
``[appsets.*]``), each a table plus notes. A note is a TOML comment written at the top
of its table: ``not translated: ...`` for what was dropped (the command then exits 1),
``note: ...`` for a difference in behaviour worth knowing. Secrets are never read: a
``Secret`` document is skipped before anything looks at its data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
import yaml
from tomlkit.items import Table

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
IN_CLUSTER = "in-cluster"
_SLUG = re.compile(r"[^a-z0-9]+")


class ManifestError(Exception):
    """The input cannot be read at all (missing file, invalid YAML)."""


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document of the input, with where it came from."""

    where: str  # file:index
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.obj.get("metadata") or {}).get("namespace", "") or "")

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.obj.get("spec")
        return spec if isinstance(spec, dict) else {}


def read_documents(paths: Iterable[Path]) -> Iterator[Document]:
    """Every mapping document of the files (directories: their manifests, recursively, sorted).

    ``Secret`` documents are dropped here, unread; so are ``List`` wrappers' non-mapping items.
    """
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        elif path.is_file() or str(path) == "-":
            files = [path]
        else:
            raise ManifestError(f"{path}: no such file or directory")
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
                docs = list(yaml.safe_load_all(text))
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"{file}: cannot read: {exc}") from None
            except yaml.YAMLError as exc:
                raise ManifestError(f"{file}: invalid YAML: {exc}") from None
            for index, doc in enumerate(docs):
                items = doc.get("items") if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") else [doc]
                for item in items or []:
                    if isinstance(item, dict) and item.get("kind") != "Secret":
                        yield Document(f"{file}, document {index + 1}", item)


def slug(text: str, fallback: str = "x") -> str:
    """A valid gitopsd name (DNS label, at most 53 characters) from any text."""
    value = _SLUG.sub("-", text.lower()).strip("-")[:53].strip("-")
    return value or fallback


@dataclass
class Entry:
    """One table of the output with its notes."""

    table: dict[str, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    origin: str = ""

    def drop(self, what: str) -> None:
        self.dropped.append(what)

    def note(self, what: str) -> None:
        self.notes.append(what)


@dataclass
class Translation:
    """The config being written."""

    tool: str
    clusters: dict[str, Entry] = field(default_factory=dict)
    policies: dict[str, Entry] = field(default_factory=dict)
    apps: dict[str, Entry] = field(default_factory=dict)
    appsets: dict[str, Entry] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # whole documents left out, with why
    secrets_seen: bool = False

    @property
    def dropped(self) -> int:
        entries = [*self.clusters.values(), *self.policies.values(), *self.apps.values(), *self.appsets.values()]
        return sum(len(e.dropped) for e in entries) + len(self.skipped)

    def cluster(self, server: str = "", name: str = "") -> str:
        """The ``[clusters.*]`` stub for an Argo CD destination (server URL or cluster name)."""
        if name in ("", IN_CLUSTER) and server in ("", "https://kubernetes.default.svc"):
            key, what = IN_CLUSTER, "the cluster Argo CD / Flux runs in"
        elif name:
            key, what = slug(name), f"cluster {name!r}" + (f" ({server})" if server else "")
        else:
            host = re.sub(r"^[a-z]+://", "", server).split("/")[0]
            key, what = slug(host.split(":")[0]), f"API server {server}"
        if key not in self.clusters:
            entry = Entry({"kubeconfig": f"kubeconfigs/{key}.yaml"})
            entry.note(f"fill in: a kubeconfig for {what}")
            self.clusters[key] = entry
        return key

    def add(self, section: dict[str, Entry], name: str, entry: Entry, origin: str, alternative: str = "") -> str:
        """Add ``entry`` under a unique name (``name``, else ``alternative``, else ``name-2``...); returns it."""
        base = slug(name)
        final, n = base, 1
        if final in section and alternative and slug(alternative) not in section:
            final = slug(alternative)
        while final in section:
            n += 1
            final = f"{base[:50]}-{n}"
        if final != base:
            entry.note(f"renamed from {name!r}: the name was taken")
        entry.origin = origin
        section[final] = entry
        return final

    def to_toml(self) -> str:
        doc = tomlkit.document()
        doc.add(tomlkit.comment(f"gitopsd config imported from {self.tool} by `gitopsd import {self.tool}`."))
        doc.add(tomlkit.comment("Check it with `gitopsd check -c FILE`; lines starting 'not translated' name what was left out."))
        if self.secrets_seen:
            doc.add(tomlkit.comment("Secrets in the input were not read: put credentials in files and point the *_file options at them."))
        for item in self.skipped:
            doc.add(tomlkit.comment(f"not translated: {item}"))
        for section_name, section in (
            ("clusters", self.clusters), ("policies", self.policies), ("apps", self.apps), ("appsets", self.appsets)
        ):
            if not section:
                continue
            super_table = tomlkit.table(is_super_table=True)
            for name, entry in section.items():
                super_table.add(name, _table(entry))
            doc.add(tomlkit.nl())
            doc.add(section_name, super_table)
        return tomlkit.dumps(doc)


def _table(entry: Entry) -> Table:
    table = tomlkit.table()
    if entry.origin:
        table.add(tomlkit.comment(f"from {entry.origin}"))
    for what in entry.notes:
        table.add(tomlkit.comment(f"note: {what}"))
    for what in entry.dropped:
        table.add(tomlkit.comment(f"not translated: {what}"))
    for key, value in entry.table.items():
        table.add(key, _value(value))
    return table


def _value(value: Any) -> Any:
    """Plugin tables with only flat values as inline tables (``source = {type = ...}``); deeper ones as tables."""
    if isinstance(value, dict):
        if all(not isinstance(v, dict) and not (isinstance(v, list) and any(isinstance(i, dict) for i in v)) for v in value.values()):
            inline = tomlkit.inline_table()
            inline.update(value)
            return inline
        table = tomlkit.table()
        for k, v in value.items():
            table.add(k, _value(v))
        return table
    return value


def unknown_keys(spec: dict[str, Any], known: set[str], entry: Entry, prefix: str = "spec") -> None:
    """Every key of ``spec`` the translation does not handle is reported as not translated."""
    for key, value in spec.items():
        if key not in known and value not in (None, "", [], {}, False):
            entry.drop(f"{prefix}.{key}")


def set_dotted(values: dict[str, Any], dotted: str, value: Any) -> bool:
    """``a.b.c=value`` into nested dicts (Helm ``--set``); False for what that cannot express (lists, escapes)."""
    if any(c in dotted for c in "[]\\"):
        return False
    parts = dotted.split(".")
    node = values
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return False
        node = child
    node[parts[-1]] = value
    return True


def helm_value(text: Any, force_string: bool = False) -> Any:
    """A Helm ``--set`` value as Helm reads it: ``true``, numbers and ``null`` are typed unless forced."""
    if force_string or not isinstance(text, str):
        return text if not isinstance(text, str) else str(text)
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def duration(value: Any) -> str | None:
    """A Kubernetes duration (``5m0s``, ``1h``, ``30s``) as gitopsd writes it; None when it is not one."""
    if not isinstance(value, str) or not re.fullmatch(r"(\d+(\.\d+)?(ms|s|m|h))+", value):
        return None
    return re.sub(r"(?<=[a-z])0s$|(?<=[a-z])0m(?=\d|$)", "", value) or value
