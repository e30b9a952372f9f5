"""Test artifacts for plugin authors: tar.gz archives in memory, and a real OCI registry on loopback.

Plain functions and classes (no pytest needed); :mod:`gitopsd.testing.plugin` wraps the
registry in the ``oci_registry`` fixture::

    from gitopsd.testing.artifacts import tar_gz

    def test_pull(oci_registry):
        digest = oci_registry.push_artifact("team/app", "v1", tar_gz({"cm.yaml": CONFIGMAP}))
        source = {"type": "oci", "url": f"oci://{oci_registry.host}/team/app", "tag": "v1"}

The registry is Debian's ``docker-registry`` (the CNCF distribution registry, package
``docker-registry``): a real server speaking the distribution API, storing into a directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

#: Media types of a Flux-style OCI artifact (what ``flux push artifact`` produces).
FLUX_CONFIG = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT = "application/vnd.cncf.flux.content.v1.tar+gzip"
REGISTRY_BINARY = "docker-registry"


def tar_gz(files: Mapping[str, str | bytes], *, symlinks: Mapping[str, str] | None = None) -> bytes:
    """A tar.gz archive in memory: ``{member name: text or bytes}``, plus ``{link name: target}`` symlinks.

    Names are written as given, so hostile archives (``../escape.yaml``, ``/etc/x``, a link
    to ``../../etc/passwd``) are easy to build to test that a plugin refuses them.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def push_oci_artifact(
    base_url: str,
    repo: str,
    tag: str,
    layer: bytes,
    *,
    media_type: str = FLUX_CONTENT,
    artifact_type: str = FLUX_CONFIG,
    **client: Any,
) -> str:
    """Push a one-layer OCI artifact through the distribution API; return the manifest digest.

    Args:
        base_url: The registry's ``http://HOST:PORT``.
        repo: Repository, e.g. ``"team/app"``.
        tag: Tag to put the manifest under.
        layer: The layer's bytes (e.g. :func:`tar_gz`).
        media_type: The layer's media type (default: a Flux content tarball).
        artifact_type: The config's media type.
        client: Extra ``httpx.Client`` arguments (``auth=(user, password)``, ``headers=...``).
    """
    with httpx.Client(base_url=base_url, timeout=30, **client) as http:

        def blob(data: bytes) -> str:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            start = http.post(f"/v2/{repo}/blobs/uploads/")
            if start.status_code != 202:
                raise RuntimeError(f"starting a blob upload to {repo}: HTTP {start.status_code}: {start.text}")
            location = start.headers["Location"]
            sep = "&" if "?" in location else "?"
            done = http.put(
                f"{location}{sep}digest={digest}", content=data, headers={"Content-Type": "application/octet-stream"}
            )
            if done.status_code != 201:
                raise RuntimeError(f"uploading a blob to {repo}: HTTP {done.status_code}: {done.text}")
            return digest

        config = b"{}"
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": artifact_type, "digest": blob(config), "size": len(config)},
            "layers": [{"mediaType": media_type, "digest": blob(layer), "size": len(layer)}],
        }
        body = json.dumps(manifest).encode()
        put = http.put(
            f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        )
        if put.status_code != 201:
            raise RuntimeError(f"pushing the manifest {repo}:{tag}: HTTP {put.status_code}: {put.text}")
        return "sha256:" + hashlib.sha256(body).hexdigest()


def find_registry_binary() -> str | None:
    """Path of ``docker-registry`` (PATH, then /usr/bin), or None."""
    found = shutil.which(REGISTRY_BINARY) or f"/usr/bin/{REGISTRY_BINARY}"
    return found if Path(found).exists() else None


class OCIRegistry:
    """A real OCI registry on 127.0.0.1, storing under ``root``; use as a context manager.

    Args:
        root: An empty directory for its config and storage.
        credentials: ``(user, password)``: require HTTP basic auth (an htpasswd file).
        binary: The ``docker-registry`` program; default: :func:`find_registry_binary`.

    Attributes:
        host: ``127.0.0.1:PORT``, what ``oci://`` URLs name.
        credentials: The basic-auth credentials, if any.
    """

    def __init__(self, root: Path, *, credentials: tuple[str, str] | None = None, binary: str | None = None):
        found = binary or find_registry_binary()
        if found is None:
            raise FileNotFoundError(f"{REGISTRY_BINARY} is not installed (Debian package docker-registry)")
        self.binary = found
        self.root = root
        self.credentials = credentials
        self.host = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the distribution API."""
        return f"http://{self.host}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        auth = ""
        if self.credentials is not None:
            user, password = self.credentials
            (self.root / "htpasswd").write_text(f"{user}:{bcrypt_hash(password)}\n")
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {self.root / 'htpasswd'}\n"
        config = self.root / "config.yml"
        config.write_text(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
        )
        self._proc = subprocess.Popen(
            [self.binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.host = f"127.0.0.1:{port}"
        try:
            self._wait_ready(port)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, port: int, timeout: float = 30.0) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.binary} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> OCIRegistry:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def client_auth(self, repo: str) -> dict[str, Any]:
        """``httpx.Client`` arguments that authenticate a push to ``repo`` (override for token auth)."""
        return {"auth": self.credentials} if self.credentials is not None else {}

    def push_artifact(
        self, repo: str, tag: str, layer: bytes, media_type: str = FLUX_CONTENT, artifact_type: str = FLUX_CONFIG
    ) -> str:
        """Push a one-layer artifact to ``repo:tag`` (see :func:`push_oci_artifact`); its manifest digest."""
        return push_oci_artifact(
            self.url, repo, tag, layer, media_type=media_type, artifact_type=artifact_type, **self.client_auth(repo)
        )


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash through the system's libcrypt (docker-registry's htpasswd wants bcrypt)."""
    import ctypes
    import ctypes.util

    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt_gensalt.restype = ctypes.c_char_p
    salt = lib.crypt_gensalt(b"$2b$", 5, None, 0)
    return str(lib.crypt(password.encode(), salt).decode())
