"""Helpers shared by the renderers that run a program (kustomize, helm template)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio.to_thread

from gitopsd import Manifest, RenderError

GO_GC_PERCENT = "400"
"""``GOGC`` for the Go programs we run per render (helm, kubectl, kustomize) unless the
daemon's environment sets ``GOGC`` or ``GOMEMLIMIT``: such a run lives ~70 ms, most of it
the binary's start-up, and with Go's default (100) a quarter of its CPU went to garbage
collections that free nothing worth having (measured: helm template 80 -> 67 ms of CPU,
kubectl kustomize 87 -> 69 ms). The heap may grow to 5x the live data instead of 2x."""


def go_runtime_env() -> dict[str, str]:
    """Environment for a short-lived Go program: a lazier collector, unless the operator chose."""
    if "GOGC" in os.environ or "GOMEMLIMIT" in os.environ:
        return {}
    return {"GOGC": GO_GC_PERCENT}


INLINE_BYTES = 32 * 1024
"""YAML up to this size is parsed on the event loop (about a millisecond per 10 KiB): a trip
to a worker thread and back costs the loop more (a queue, a wake-up, a callback, and a
fight for the GIL) than parsing a few small manifests."""


async def parse_stream(output: bytes, where: str) -> list[Manifest]:
    """Parse a program's YAML output (alias bombs bounded); in a worker thread unless small."""
    # YAML loads on first use, not at start (docs/operations.md, "Start-up and readiness")
    from gitopsd.core.yamlio import manifests_from_yaml

    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(f"{where}: output is not UTF-8") from None
    if len(output) <= INLINE_BYTES:
        return manifests_from_yaml(text, where)
    return await anyio.to_thread.run_sync(manifests_from_yaml, text, where)


def refuse_escaping_symlinks(root: Path, where: str) -> None:
    """RenderError for the first symlink under ``root`` that resolves outside it.

    An artifact (a git tree) may hold other apps' directories next to this one: a symlink
    must not let a renderer read, and apply, files from outside the app's own directory.
    """
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                target = path.resolve()
                if target != real_root and real_root not in target.parents:
                    rel = path.relative_to(root).as_posix()
                    raise RenderError(
                        f"{where}: {rel} is a symlink to {os.readlink(path)}, outside the app's directory"
                    )


def inside(root: Path, relative: str, option: str) -> Path:
    """``root / relative``, refusing paths that leave ``root`` (also through symlinks)."""
    candidate = (root / relative).resolve()
    real_root = root.resolve()
    if candidate != real_root and real_root not in candidate.parents:
        raise RenderError(f"{option}: {relative!r} points outside the artifact")
    return candidate
