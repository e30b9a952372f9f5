"""SOPS decryption with the real sops and age: applied decrypted, never shown; bad keys and tampering named."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from gitopsd.core.errors import RenderError
from gitopsd.core.models import Artifact
from gitopsd.engine import decrypt
from gitopsd.plugin.config import AppConfig, DecryptConfig, PluginTable
from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager
from gitopsd.sandbox import Sandbox
from tests.conftest import require_tool

from .test_engine import Recorder, run_daemon, sandbox, synced, wait_for, write_config

__all__ = ["sandbox"]  # the fixture

pytestmark = pytest.mark.anyio

PASSWORD = "correct-horse-battery-staple"
API_KEY = "sk-live-0123456789abcdef"

SECRET = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: {PASSWORD}
"""
DEPLOYMENT = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
"""
KUSTOMIZATION = """\
resources: [secret.enc.yaml, settings.yaml]
secretGenerator:
  - name: api
    envs: [api.enc.env]
"""


def age_key(directory: Path) -> tuple[Path, str]:
    keygen = require_tool("age-keygen")
    path = directory / "age.txt"
    subprocess.run([keygen, "-o", str(path)], check=True, capture_output=True)
    public = next(line.split(": ")[1] for line in path.read_text().splitlines() if "public key" in line)
    return path, public.strip()


def encrypt(plain: str, kind: str, recipient: str, regex: str | None = None) -> str:
    sops = require_tool("sops")
    name = {"yaml": "x.yaml", "dotenv": "x.env"}[kind]
    argv = [sops, "encrypt", "--input-type", kind, "--output-type", kind, "--filename-override", name, "--age", recipient]
    if regex:
        argv += ["--encrypted-regex", regex]
    return subprocess.run(argv, input=plain, text=True, check=True, capture_output=True).stdout


def app_tree(root: Path, recipient: str) -> Path:
    root.mkdir()
    (root / "kustomization.yaml").write_text(KUSTOMIZATION)
    (root / "settings.yaml").write_text(DEPLOYMENT)
    (root / "secret.enc.yaml").write_text(encrypt(SECRET, "yaml", recipient, "^(data|stringData)$"))
    (root / "api.enc.env").write_text(encrypt(f"API_KEY={API_KEY}\n", "dotenv", recipient))
    return root


def leftovers() -> set[str]:
    dirs = [Path("/dev/shm"), Path(os.environ.get("TMPDIR", "/tmp"))]
    return {str(p) for d in dirs if d.is_dir() for p in d.glob("gitopsd-decrypt-*")}


def files_containing(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


async def test_encrypted_secrets_are_applied_decrypted_and_never_shown(
    tmp_path: Path, sandbox: Sandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    key, recipient = age_key(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_recipient = age_key(tmp_path / "other")
    good = app_tree(tmp_path / "good", recipient)
    bad = app_tree(tmp_path / "bad", other_recipient)  # encrypted for a key the app does not have
    before = leftovers()
    path = write_config(tmp_path, tmp_path / "kubeconfig", {"good": str(good), "bad": str(bad)})
    text = path.read_text()
    for name in ("good", "bad"):
        text = text.replace(f"[apps.{name}]\n", f'[apps.{name}]\ndecrypt = {{ provider = "sops", age_key_file = "{key}" }}\n')
    path.write_text(text)
    config = load_config(path, PluginManager(builtins_only=True).types)
    recorder = Recorder()

    async def body(daemon) -> None:  # type: ignore[no-untyped-def]
        await wait_for(lambda: synced(daemon, "good"), timeout=60)
        bad_status = daemon.apps["bad"].runner.status
        await wait_for(lambda: bad_status.last_result == "failed", timeout=30)
        assert "cannot decrypt secret.enc.yaml" in bad_status.last_message or "cannot decrypt api.enc.env" in bad_status.last_message
        assert "none of the configured keys can decrypt it" in bad_status.last_message

        secret = sandbox.store.get("secrets", "good", "db")
        assert secret is not None and base64.b64decode(secret["data"]["password"]).decode() == PASSWORD
        generated = [s for s in sandbox.store.iter("secrets") if s["metadata"]["name"].startswith("api-")]
        assert len(generated) == 1 and base64.b64decode(generated[0]["data"]["API_KEY"]).decode() == API_KEY
        assert "sops" not in secret

        listen = config.daemon.listen
        async with httpx.AsyncClient(base_url=f"http://{listen}") as client:
            status = (await client.get("/api/v1/apps/good")).text
            everything = (await client.get("/api/v1/apps")).text
        for shown in (status, everything):
            assert PASSWORD not in shown and API_KEY not in shown

    await run_daemon(config, body, recorder)
    out, err = capfd.readouterr()
    events = json.dumps([e.to_dict() for e in recorder.events], default=str)
    for plain in (PASSWORD, API_KEY, base64.b64encode(PASSWORD.encode()).decode()):
        assert plain not in out and plain not in err, "plain text in the logs"
        assert plain not in events, "plain text in an event"
        assert files_containing(tmp_path / "state", plain) == [], "plain text in the state directory"
    assert leftovers() == before, "a private decryption directory was left behind"

    # gitopsd render masks Secret data unless --show-secrets.
    def render(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "gitopsd", "--config", str(path), "render", "good", *extra]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    masked = await anyio.to_thread.run_sync(render)
    assert masked.returncode == 0, masked.stderr
    assert PASSWORD not in masked.stdout and "password: '***'" in masked.stdout
    shown = await anyio.to_thread.run_sync(render, "--show-secrets")
    assert shown.returncode == 0 and PASSWORD in shown.stdout


def sops_app(key: Path) -> AppConfig:
    return AppConfig(
        name="web", cluster="main", source=PluginTable(type="local"),
        decrypt=DecryptConfig(provider="sops", age_key_file=key),
    )


async def read_yaml_tree(artifact: Artifact) -> list[dict[str, object]]:
    import yaml

    return [d for p in sorted(artifact.path.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


async def test_tampered_file_is_named(tmp_path: Path) -> None:
    key, recipient = age_key(tmp_path)
    tree = tmp_path / "tree"
    tree.mkdir()
    encrypted = encrypt(SECRET, "yaml", recipient, "^(data|stringData)$")
    # Swap in a value encrypted elsewhere: the document still parses, but its MAC no longer matches.
    other = encrypt(SECRET.replace(PASSWORD, "something-else"), "yaml", recipient, "^(data|stringData)$")
    stolen = next(line for line in other.splitlines() if "password:" in line)
    tampered = "\n".join(stolen if "password:" in line else line for line in encrypted.splitlines()) + "\n"
    (tree / "secret.yaml").write_text(tampered)
    artifact = Artifact(path=tree, revision="r", digest="sha256:0")
    sops = decrypt.sops_binary(require_tool("sops"))
    with pytest.raises(RenderError) as info:
        await decrypt.render_decrypted(sops_app(key), artifact, sops, read_yaml_tree)
    assert str(info.value) == "app web: cannot decrypt secret.yaml: the file was modified after it was encrypted (MAC mismatch)"

    (tree / "secret.yaml").write_text(encrypted)
    manifests = await decrypt.render_decrypted(sops_app(key), artifact, sops, read_yaml_tree)
    assert manifests[0]["stringData"] == {"password": PASSWORD}
    # The artifact itself is untouched (it may be shared with other apps).
    assert PASSWORD not in (tree / "secret.yaml").read_text()


async def test_encrypted_manifest_without_decrypt_is_refused(tmp_path: Path) -> None:
    _, recipient = age_key(tmp_path)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "secret.yaml").write_text(encrypt(SECRET, "yaml", recipient, "^(data|stringData)$"))
    app = AppConfig(name="web", cluster="main", source=PluginTable(type="local"))
    with pytest.raises(RenderError, match=r"Secret db is SOPS-encrypted; set decrypt"):
        await decrypt.render_decrypted(app, Artifact(path=tree, revision="r", digest="sha256:0"), "sops", read_yaml_tree)


def test_secret_values_are_masked() -> None:
    out = decrypt.mask_secrets([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "data": {"a": "eA=="}}])
    assert out[0]["data"] == {"a": "***"}
