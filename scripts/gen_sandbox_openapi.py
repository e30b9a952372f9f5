#!/usr/bin/env python3
"""Generate the sandbox's OpenAPI schemas (gitopsd/sandbox/openapi_schemas.json).

The fields and their types come from kubernetes-asyncio's generated models
(``openapi_types``, ``attribute_map``); the Kubernetes definition names
(``io.k8s.api.apps.v1.DeploymentSpec``) and the finer formats (int64, IntOrString,
Quantity, RawExtension) come from the API's protobuf descriptors that
scripts/install-tools.sh extracts from the pinned kubectl into .tools/k8s-protos.
Strategic-merge metadata (merge keys) comes from the sandbox's own list table
(gitopsd/sandbox/lists.py), the one its patch and apply code use.

Only the types reachable from the kinds the sandbox serves are written. The output
is deterministic; tests/sandbox/test_openapi.py fails when it is stale.

Usage: gen_sandbox_openapi.py [--check] [--protos DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kubernetes_asyncio  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402
from kubernetes_asyncio.client import models  # noqa: E402

from gitopsd.sandbox.kinds import BUILTIN  # noqa: E402
from gitopsd.sandbox.lists import _KEYS, _SETS  # noqa: E402

OUT = ROOT / "gitopsd" / "sandbox" / "openapi_schemas.json"
_SPECIAL = {
    ".k8s.io.apimachinery.pkg.util.intstr.IntOrString": "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    ".k8s.io.apimachinery.pkg.api.resource.Quantity": "io.k8s.apimachinery.pkg.api.resource.Quantity",
    ".k8s.io.apimachinery.pkg.runtime.RawExtension": "io.k8s.apimachinery.pkg.runtime.RawExtension",
    ".k8s.io.apimachinery.pkg.apis.meta.v1.Time": "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    ".k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
    ".k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
}
_SPECIAL_SCHEMAS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
    "io.k8s.apimachinery.pkg.runtime.RawExtension": {"type": "object"},
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": {"type": "string", "format": "date-time"},
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": {"type": "string", "format": "date-time"},
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": {"type": "object"},
}
# apiextensions has no protobuf in kubectl; its package is known.
_APIEXT = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1"
_INT64 = {3, 4, 16, 18}  # TYPE_INT64, UINT64, SFIXED64, SINT64


class Protos:
    """Message descriptors by Kubernetes definition name and by short name."""

    def __init__(self, directory: Path) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.by_short: dict[str, list[str]] = {}
        for path in sorted(directory.glob("*.pb")):
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(path.read_bytes())
            if not fd.package.startswith("k8s.io.api.") and not fd.package.startswith("k8s.io.apimachinery."):
                continue
            for msg in fd.message_type:
                name = "io.k8s." + fd.package[len("k8s.io."):] + "." + msg.name
                self.messages[name] = msg
                self.by_short.setdefault(msg.name, []).append(name)


def _snake_version(cls_name: str) -> tuple[str, str, str]:
    """``V1beta1Foo`` -> ("", "v1beta1", "Foo"); ``CoreV1Event`` -> ("core", "v1", "Event")."""
    prefix = ""
    rest = cls_name
    if not rest.startswith("V"):
        i = next(i for i in range(1, len(rest)) if rest[i] == "V" and rest[i + 1].isdigit())
        prefix, rest = rest[:i].lower(), rest[i:]
    j = 1
    while j < len(rest) and (rest[j].isdigit() or rest[j].islower()):
        j += 1
    return prefix, rest[:j].lower(), rest[j:]


def _description(cls: type, attr: str) -> str:
    """The field's description from the generated property's docstring."""
    prop = getattr(cls, attr, None)
    doc = getattr(getattr(prop, "fget", None), "__doc__", None) or ""
    parts = [p.strip() for p in doc.split("\n\n")]
    if len(parts) < 3 or parts[1].startswith(":return:"):
        return ""
    return parts[1].replace("  # noqa: E501", "").strip()


class Generator:
    def __init__(self, protos: Protos) -> None:
        self.protos = protos
        self.defs: dict[str, dict[str, Any]] = {}
        self.kinds: dict[str, str] = {}
        self._cls_names: dict[str, str] = {}

    def definition_name(self, cls_name: str, group: str) -> str:
        """The Kubernetes definition name of a model class reached from ``group``."""
        if cls_name in self._cls_names:
            return self._cls_names[cls_name]
        prefix, version, short = _snake_version(cls_name)
        candidates = [n for n in self.protos.by_short.get(short, []) if n.rsplit(".", 2)[-2] == version]
        pkg_group = {"": "core"}.get(group, group.split(".")[0])
        if prefix:
            pkg_group = prefix
        wanted = [f"io.k8s.api.{pkg_group}.{version}.", "io.k8s.api.core.", "io.k8s.apimachinery."]
        if group == "apiextensions.k8s.io":
            wanted = ["io.k8s.apimachinery."]
        chosen = None
        for want in wanted:
            chosen = next((n for n in candidates if n.startswith(want)), None)
            if chosen:
                break
        if chosen is None:
            # newer than the descriptors (or apiextensions, which has none): the reaching group's package
            chosen = f"{_APIEXT}.{short}" if group == "apiextensions.k8s.io" else f"io.k8s.api.{pkg_group}.{version}.{short}"
        self._cls_names[cls_name] = chosen
        return chosen

    def type_schema(self, t: str, group: str, proto_field: Any) -> dict[str, Any]:
        if proto_field is not None and proto_field.type_name in _SPECIAL and not t.startswith(("list[", "dict(")):
            return {"$ref": _SPECIAL[proto_field.type_name]}
        if t.startswith("list[") and t.endswith("]"):
            return {"type": "array", "items": self.type_schema(t[5:-1], group, proto_field)}
        if t.startswith("dict(str, ") and t.endswith(")"):
            return {"type": "object", "additionalProperties": self.type_schema(t[10:-1], group, proto_field)}
        if t == "str":
            return {"type": "string"}
        if t == "int":
            wide = proto_field is not None and proto_field.type in _INT64
            return {"type": "integer", "format": "int64" if wide else "int32"}
        if t == "float":
            return {"type": "number", "format": "double"}
        if t == "bool":
            return {"type": "boolean"}
        if t in ("datetime", "date"):
            return {"$ref": "io.k8s.apimachinery.pkg.apis.meta.v1.Time"}
        if t == "object":
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"$ref": self.add(t, group)}

    def add(self, cls_name: str, group: str) -> str:
        """Add a model class (and what it references); returns its definition name."""
        name = self.definition_name(cls_name, group)
        if name in self.defs:
            return name
        cls = getattr(models, cls_name)
        schema: dict[str, Any] = {"type": "object", "properties": {}}
        self.defs[name] = schema
        msg = self.protos.messages.get(name)
        proto_fields = {f.json_name or f.name: f for f in msg.field} if msg is not None else {}
        for attr, t in sorted(cls.openapi_types.items(), key=lambda kv: cls.attribute_map[kv[0]]):
            field = cls.attribute_map[attr]
            pf = proto_fields.get(field)
            if pf is not None and pf.type_name in _SPECIAL:
                self.defs.setdefault(_SPECIAL[pf.type_name], _SPECIAL_SCHEMAS[_SPECIAL[pf.type_name]])
            prop = self.type_schema(t, group, pf)
            if prop.get("$ref") in _SPECIAL_SCHEMAS:
                self.defs.setdefault(prop["$ref"], _SPECIAL_SCHEMAS[prop["$ref"]])
            if prop.get("type") == "array":
                keys = _KEYS.get(field)
                if field == "ports":
                    keys = ("containerPort",) if name.endswith(".Container") else ("port",)
                if keys and "$ref" in prop["items"]:
                    prop["x-kubernetes-patch-merge-key"] = keys[0]
                    prop["x-kubernetes-patch-strategy"] = "merge"
                elif field in _SETS:
                    prop["x-kubernetes-patch-strategy"] = "merge"
            text = _description(cls, attr)
            if text:
                prop = {"description": text, **prop}
            schema["properties"][field] = prop
        return name

    def kind(self, group: str, version: str, kind: str) -> None:
        gv = f"{group}/{version}" if group else version
        cls_name = next(
            (c for c in (f"{version.capitalize()}{kind}", f"Core{version.capitalize()}{kind}")
             if hasattr(models, c)), None)
        if cls_name is None:
            raise SystemExit(f"gen_sandbox_openapi: no kubernetes-asyncio model for {gv} {kind}")
        name = self.add(cls_name, group)
        self.defs[name]["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
        self.kinds[f"{gv}/{kind}"] = name


def generate(protos_dir: Path) -> str:
    gen = Generator(Protos(protos_dir))
    for rt in BUILTIN:
        gen.kind(rt.group, rt.version, rt.kind)
    # kinds every group version document mentions (deletes, status replies, scale)
    for cls_name in ("V1DeleteOptions", "V1Status", "V1Scale", "V1Patch"):
        if hasattr(models, cls_name):
            gen.add(cls_name, "")
    def dump(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    # One kind or definition per line: small, and a regenerated file diffs line by line.
    kinds = ",\n".join(f"{dump(k)}:{dump(v)}" for k, v in sorted(gen.kinds.items()))
    defs = ",\n".join(f"{dump(k)}:{dump(v)}" for k, v in sorted(gen.defs.items()))
    source = dump({"kubernetes-asyncio": kubernetes_asyncio.__version__})
    return f'{{"definitions":{{\n{defs}\n}},\n"kinds":{{\n{kinds}\n}},\n"source":{source}}}\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed file is stale")
    parser.add_argument("--protos", type=Path, default=ROOT / ".tools" / "k8s-protos")
    args = parser.parse_args()
    if not any(args.protos.glob("*.pb")):
        print(f"gen_sandbox_openapi: no descriptors in {args.protos} (run scripts/install-tools.sh)", file=sys.stderr)
        return 1
    text = generate(args.protos)
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            made_from = json.loads(OUT.read_text()).get("source", {}) if OUT.exists() else {}
            print(f"gen_sandbox_openapi: {OUT.relative_to(ROOT)} is stale (generated from {made_from}, "
                  f"installed: kubernetes-asyncio {kubernetes_asyncio.__version__}); "
                  "run scripts/gen_sandbox_openapi.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"gen_sandbox_openapi: wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
