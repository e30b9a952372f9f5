"""Running external programs (git, helm, kustomize): always with a timeout, never a shell."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from gitopsd.core.errors import CommandFailed
from gitopsd.core.secrets import REDACTOR

_STDERR_EXCERPT = 4000


@dataclass(frozen=True, slots=True)
class Completed:
    """A finished command's output."""

    stdout: bytes
    stderr: bytes


async def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    what: str | None = None,
) -> Completed:
    """Run ``argv`` and return its output; raise :class:`CommandFailed` on non-zero exit or timeout.

    ``env`` is added to a minimal copy of our environment. ``limiter`` bounds how many
    CPU-heavy commands run at once. ``what`` names the command in errors (default argv[0]).
    The error message carries the end of stderr with known secrets scrubbed.
    """
    label = what or Path(str(argv[0])).name
    full_env = {**os.environ, **(env or {})}
    cmd = [str(a) for a in argv]

    async def _run() -> Completed:
        try:
            with anyio.fail_after(timeout):
                result = await anyio.run_process(
                    cmd,
                    input=stdin,
                    cwd=cwd,
                    env=full_env,
                    check=False,
                    stdin=subprocess.DEVNULL if stdin is None else None,
                )
        except TimeoutError:
            raise CommandFailed(f"{label} timed out after {timeout:g}s") from None
        except FileNotFoundError:
            raise CommandFailed(f"{label}: program {cmd[0]} not found") from None
        if result.returncode != 0:
            stderr = REDACTOR.scrub(result.stderr.decode("utf-8", "replace"))[-_STDERR_EXCERPT:].strip()
            raise CommandFailed(
                f"{label} exited with {result.returncode}: {stderr}" if stderr else f"{label} exited with {result.returncode}",
                returncode=result.returncode,
                stderr=stderr,
            )
        return Completed(result.stdout, result.stderr)

    if limiter is None:
        return await _run()
    async with limiter:
        return await _run()
