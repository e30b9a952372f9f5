"""Kubernetes protobuf bodies (``application/vnd.kubernetes.protobuf``) for built-in kinds.

kubectl sends protobuf for built-in kinds (``kubectl create configmap|deployment|...``)
and prefers it in replies. The wire format: the 4 bytes ``k8s\\x00``, then a
``runtime.Unknown`` message whose ``typeMeta`` holds apiVersion and kind and whose
``raw`` is the object's own message (``k8s.io.api.core.v1.ConfigMap``, ...).

The messages are built at run time from the API's FileDescriptorProtos, which
scripts/install-tools.sh extracts from the pinned kubectl into ``.tools/k8s-protos``
(nothing is vendored), with the ``protobuf`` library's descriptor pool. Conversion
between a message and the JSON dict the sandbox stores is generic over the
descriptors, except for the types whose JSON form is not their message form:
Time/MicroTime (RFC 3339 strings), Quantity (a string), IntOrString (an int or a
string), RawExtension/FieldsV1 (embedded JSON), Duration (a Go duration string) and
bytes (base64). Zero scalars and empty lists/maps are omitted, as the API server's
JSON (``omitempty``) omits them.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROTOS_ENV = "GITOPSD_SANDBOX_PROTOS"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_TIME = _META + "Time"
_MICROTIME = _META + "MicroTime"
_DURATION = _META + "Duration"
_FIELDS = _META + "FieldsV1"
_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_INTSTR = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_RAW = "k8s.io.apimachinery.pkg.runtime.RawExtension"
_UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"
_GOGO = "github.com/gogo/protobuf/gogoproto/gogo.proto"
# Go structs embedded with `json:",inline"`: a message field in protobuf, flattened in JSON.
_INLINE = frozenset({"volumeSource", "localObjectReference", "persistentVolumeSource", "handler", "ephemeralContainerCommon",
                     "ingressRuleValue"})


def default_protos_dir() -> Path:
    """Where the API's FileDescriptorProtos are: ``$GITOPSD_SANDBOX_PROTOS``, else ``.tools/k8s-protos``
    of the source checkout, else of the working directory."""
    env = os.environ.get(PROTOS_ENV)
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / ".tools" / "k8s-protos"
    return checkout if checkout.is_dir() else Path.cwd() / ".tools" / "k8s-protos"


class ProtobufUnavailable(Exception):
    """No descriptors (or no message for a kind): the caller answers 415 with this message."""


def _package(group: str, version: str) -> str:
    if group == "":
        return f"k8s.io.api.core.{version}"
    if group == "meta.k8s.io":
        return f"k8s.io.apimachinery.pkg.apis.meta.{version}"
    return f"k8s.io.api.{group.split('.')[0]}.{version}"


def _go_duration(ns: int) -> str:
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    h, rem = divmod(ns, 3600 * 10**9)
    m, rem = divmod(rem, 60 * 10**9)
    s = rem / 10**9
    text = (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + (f"{s:g}s")
    return sign + text


def _parse_go_duration(text: str) -> int:
    import re

    total = 0.0
    units = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "µs": 1e3, "ns": 1.0}
    for num, unit in re.findall(r"([0-9.]+)(h|ms|us|µs|ns|m|s)", text):
        total += float(num) * units[unit]
    return int(-total if text.startswith("-") else total)


def _rfc3339(seconds: int, nanos: int, micro: bool) -> str:
    dt = datetime.fromtimestamp(seconds, UTC)
    if micro:
        return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> tuple[int, int]:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(dt.timestamp() // 1), dt.microsecond * 1000


class Codec:
    """Protobuf <-> JSON-dict conversion for the kinds the descriptors describe."""

    def __init__(self, directory: Path) -> None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        files: dict[str, Any] = {}
        for path in sorted(directory.glob("*.pb")):
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(path.read_bytes())
            files[fd.name] = fd
        if not files:
            raise ProtobufUnavailable(f"no Kubernetes protobuf descriptors in {directory} (run scripts/install-tools.sh, or set {PROTOS_ENV})")
        self.pool = descriptor_pool.DescriptorPool()
        self.pool.Add(descriptor_pb2.FileDescriptorProto(name=_GOGO, package="gogoproto"))
        added = {_GOGO}

        def add(name: str) -> None:
            if name in added or name not in files:
                return
            added.add(name)
            for dep in files[name].dependency:
                add(dep)
            fd = files[name]
            missing = [d for d in fd.dependency if d not in added]
            for d in missing:  # a dependency kubectl does not embed: an empty stand-in
                self.pool.Add(descriptor_pb2.FileDescriptorProto(name=d))
                added.add(d)
            self.pool.Add(fd)

        for name in sorted(files):
            add(name)
        self._get_class = message_factory.GetMessageClass
        self._classes: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- message lookup --------------------------------------------------------------
    def message_class(self, full_name: str) -> Any:
        cls = self._classes.get(full_name)
        if cls is None:
            with self._lock:
                try:
                    desc = self.pool.FindMessageTypeByName(full_name)
                except KeyError:
                    raise ProtobufUnavailable(f"no protobuf message {full_name} in the Kubernetes descriptors") from None
                cls = self._classes[full_name] = self._get_class(desc)
        return cls

    def kind_message(self, api_version: str, kind: str) -> str:
        group, _, version = api_version.rpartition("/")
        return f"{_package(group, version)}.{kind}"

    def supports(self, api_version: str, kind: str) -> bool:
        """Whether a kind has a protobuf message."""
        try:
            self.message_class(self.kind_message(api_version, kind))
        except ProtobufUnavailable:
            return False
        return True

    # -- envelope ---------------------------------------------------------------------
    def decode(self, body: bytes) -> dict[str, Any]:
        """A ``k8s\\x00`` + runtime.Unknown body to the object's JSON dict (with apiVersion and kind)."""
        if not body.startswith(MAGIC):
            raise ValueError("protobuf body does not start with the k8s\\x00 prefix")
        unknown = self.message_class(_UNKNOWN)()
        unknown.ParseFromString(body[len(MAGIC):])
        api_version, kind = unknown.typeMeta.apiVersion, unknown.typeMeta.kind
        if not kind:
            raise ValueError("protobuf body has no kind in its typeMeta")
        msg = self.message_class(self.kind_message(api_version, kind))()
        msg.ParseFromString(unknown.raw)
        obj = self.to_json(msg)
        return {"apiVersion": api_version, "kind": kind, **obj}

    def encode(self, obj: dict[str, Any]) -> bytes:
        """An object's JSON dict (apiVersion and kind set) to a ``k8s\\x00`` + runtime.Unknown body."""
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        msg = self.message_class(self.kind_message(api_version, kind))()
        self.from_json(msg, obj)
        unknown = self.message_class(_UNKNOWN)()
        unknown.typeMeta.apiVersion = api_version
        unknown.typeMeta.kind = kind
        unknown.raw = msg.SerializeToString()
        return MAGIC + unknown.SerializeToString()

    # -- message -> JSON ------------------------------------------------------------
    def to_json(self, msg: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field, value in msg.ListFields():
            if field.name in _INLINE and field.message_type is not None:
                out.update(self.to_json(value))
                continue
            converted = self._field_to_json(field, value)
            if converted is not _OMIT:
                out[field.json_name if field.json_name else field.name] = converted
        return out

    def _field_to_json(self, field: Any, value: Any) -> Any:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            mapped = {k: self._value_to_json(value_field, v) for k, v in value.items()}
            return mapped if mapped else _OMIT
        if _repeated(field):
            items = [self._value_to_json(field, v) for v in value]
            return items if items else _OMIT
        if field.message_type is not None and field.message_type.full_name in (_TIME, _MICROTIME) \
                and value.seconds == 0 and value.nanos == 0:
            return _OMIT  # Go marshals a zero Time as an empty message: null in JSON
        converted = self._value_to_json(field, value)
        if field.message_type is None and converted in (0, "", False):
            return _OMIT  # omitempty
        return converted

    def _value_to_json(self, field: Any, value: Any) -> Any:
        mt = field.message_type
        if mt is None:
            if field.type == field.TYPE_BYTES:
                return base64.b64encode(value).decode()
            return value
        name = mt.full_name
        if name in (_TIME, _MICROTIME):
            return _rfc3339(value.seconds, value.nanos, name == _MICROTIME)
        if name == _QUANTITY:
            return value.string
        if name == _INTSTR:
            return value.strVal if value.type == 1 else value.intVal
        if name in (_RAW, _FIELDS):
            raw = value.raw if name == _RAW else value.Raw
            return json.loads(raw) if raw else {}
        if name == _DURATION:
            return _go_duration(value.duration)
        return self.to_json(value)

    # -- JSON -> message ------------------------------------------------------------
    def from_json(self, msg: Any, obj: dict[str, Any]) -> None:
        fields = msg.DESCRIPTOR.fields_by_name
        for name in _INLINE.intersection(fields):
            inline = fields[name].message_type.fields_by_name
            part = {k: v for k, v in obj.items() if k in inline and k not in fields}
            if part:
                self.from_json(getattr(msg, name), part)
                getattr(msg, name).SetInParent()
        for key, value in obj.items():
            field = fields.get(key)
            if field is None or value is None:
                continue  # apiVersion/kind live in the envelope; unknown fields are dropped
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                target = getattr(msg, key)
                value_field = field.message_type.fields_by_name["value"]
                for k, v in (value or {}).items():
                    if value_field.message_type is None:
                        target[k] = self._scalar(value_field, v)
                    else:
                        self._set_message(target[k], value_field.message_type.full_name, v)
            elif _repeated(field):
                target = getattr(msg, key)
                for v in value or []:
                    if field.message_type is None:
                        target.append(self._scalar(field, v))
                    else:
                        self._set_message(target.add(), field.message_type.full_name, v)
            elif field.message_type is None:
                setattr(msg, key, self._scalar(field, value))
            else:
                sub = getattr(msg, key)
                self._set_message(sub, field.message_type.full_name, value)
                sub.SetInParent()

    def _scalar(self, field: Any, value: Any) -> Any:
        if field.type == field.TYPE_BYTES:
            return base64.b64decode(value) if isinstance(value, str) else bytes(value)
        if field.type == field.TYPE_STRING:
            return value if isinstance(value, str) else json.dumps(value)
        if field.type == field.TYPE_BOOL:
            return bool(value)
        if field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
            return float(value)
        return int(value)

    def _set_message(self, msg: Any, name: str, value: Any) -> None:
        if name in (_TIME, _MICROTIME):
            msg.seconds, msg.nanos = _parse_time(str(value))
        elif name == _QUANTITY:
            msg.string = str(value)
        elif name == _INTSTR:
            if isinstance(value, str):
                msg.type, msg.strVal = 1, value
            else:
                msg.type, msg.intVal = 0, int(value)
        elif name == _RAW:
            msg.raw = json.dumps(value, separators=(",", ":")).encode()
        elif name == _FIELDS:
            msg.Raw = json.dumps(value, separators=(",", ":")).encode()
        elif name == _DURATION:
            msg.duration = _parse_go_duration(str(value))
        elif isinstance(value, dict):
            self.from_json(msg, value)
        msg.SetInParent()


def _repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 6; ``label`` is gone in 7
    return bool(flag) if flag is not None else field.label == 3


class _Omit:
    pass


_OMIT = _Omit()
_CODECS: dict[Path, Codec | ProtobufUnavailable] = {}
_CODECS_LOCK = threading.Lock()


def codec(directory: Path | None = None) -> Codec:
    """The shared codec for a descriptor directory (loaded once); raises ProtobufUnavailable."""
    directory = (directory or default_protos_dir()).resolve()
    with _CODECS_LOCK:
        hit = _CODECS.get(directory)
        if hit is None:
            try:
                hit = Codec(directory)
            except ImportError:
                hit = ProtobufUnavailable("the protobuf package is not installed (pip install protobuf)")
            except (OSError, ProtobufUnavailable) as exc:
                hit = ProtobufUnavailable(str(exc) if isinstance(exc, ProtobufUnavailable) else
                                          f"cannot read the Kubernetes protobuf descriptors in {directory}: {exc}")
            _CODECS[directory] = hit
    if isinstance(hit, ProtobufUnavailable):
        raise hit
    return hit
