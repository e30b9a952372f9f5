#!/usr/bin/env python3
"""Extract the Kubernetes API's FileDescriptorProtos embedded (gzipped) in a kubectl binary.

gogo-protobuf registers each ``generated.proto`` of the Kubernetes API as a gzipped
FileDescriptorProto inside the binary. This script finds every gzip stream
(header ``1f 8b 08 00 00 00 00 00``), keeps those that decompress to a
FileDescriptorProto whose name is a ``.proto`` path, and writes each one to
``DEST/<path with / replaced by _>.pb``. The sandbox builds its protobuf descriptor
pool from these files (see gitopsd/sandbox/protobuf.py). Standard library only, so
scripts/install-tools.sh can run it before any virtualenv exists.

Usage: extract_k8s_protos.py KUBECTL DEST
"""

from __future__ import annotations

import os
import sys
import zlib

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"


def _proto_name(data: bytes) -> str | None:
    """The ``name`` (field 1) of a serialized FileDescriptorProto, if it starts with one."""
    if not data or data[0] != 0x0A:
        return None
    length, shift, pos = 0, 0, 1
    while pos < len(data):
        byte = data[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            break
        shift += 7
    name = data[pos:pos + length]
    try:
        text = name.decode()
    except UnicodeDecodeError:
        return None
    return text if text.endswith(".proto") and "/" in text else None


def extract(binary: bytes) -> dict[str, bytes]:
    """Every embedded FileDescriptorProto, by its proto path."""
    found: dict[str, bytes] = {}
    start = binary.find(GZIP_HEADER)
    while start >= 0:
        try:
            data = zlib.decompressobj(wbits=31).decompress(binary[start:start + 4 * 1024 * 1024])
        except zlib.error:
            data = b""
        name = _proto_name(data)
        if name and name.startswith("k8s.io/"):
            found.setdefault(name, data)
        start = binary.find(GZIP_HEADER, start + 1)
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        protos = extract(f.read())
    if not protos:
        print(f"extract_k8s_protos: no Kubernetes FileDescriptorProtos found in {argv[1]}", file=sys.stderr)
        return 1
    os.makedirs(argv[2], exist_ok=True)
    for name, data in protos.items():
        target = os.path.join(argv[2], name.replace("/", "_") + ".pb")
        with open(target + ".tmp", "wb") as out:
            out.write(data)
        os.replace(target + ".tmp", target)
    print(f"extract_k8s_protos: {len(protos)} descriptors in {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
