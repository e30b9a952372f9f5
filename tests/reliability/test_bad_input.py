"""Bad input, table-driven: configs, manifests, charts, OCI artifacts, webhooks and API calls.

Malformed, oversize and hostile input (YAML bombs, path traversal, symlink escapes, forged
signatures, wrong tokens) each get their expected, clear error; the good apps running in
the same daemon keep converging.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench.gen import git
from bench.procs import ROOT, SandboxProc, free_port, toml_str, tool_env
from gitopsd.testing.artifacts import OCIRegistry, find_registry_binary
from gitopsd.testing.artifacts import tar_gz as kit_tar_gz
from tests.conftest import require_tool
from tests.reliability.harness import (
    AppDef,
    Env,
    configmap,
    local_app,
    standard_app,
    wait_converged,
    wait_for,
    write_manifests,
)

pytestmark = pytest.mark.integration

GOOD_APPS = ("good-a", "good-b")
HOOKED = "hooked"


# -- helpers that build hostile input ------------------------------------------------------


def tar_gz(files: dict[str, bytes], *, symlinks: dict[str, str] | None = None, raw: list[str] | None = None) -> bytes:
    """The kit's tar_gz; ``raw`` adds two-byte members with hostile names as given."""
    return kit_tar_gz({**files, **{name: b"x\n" for name in raw or []}}, symlinks=symlinks)


def gzip_bomb(size: int) -> bytes:
    """A tar.gz whose one file is ``size`` bytes of zeros (compresses to almost nothing)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("big.yaml")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    return buf.getvalue()


CM = json.dumps(configmap("ok", a="1")).encode()


def start_registry(root: Path) -> OCIRegistry | None:
    """The kit's docker-registry on a free port, or None when it is not installed."""
    if find_registry_binary() is None:
        return None
    registry = OCIRegistry(root)
    registry.start()
    return registry


class Web:
    """A loopback HTTP server the cases control: ``files`` maps a path to (status, headers, body);
    ``seen`` records (host header, path, Authorization) of every request."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.seen: list[tuple[str, str, str]] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                web.seen.append((self.headers.get("Host") or "", self.path, self.headers.get("Authorization") or ""))
                status, headers, body = web.files.get(self.path.partition("?")[0], (404, {}, b"not found"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value.replace("{PORT}", str(web.port)))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Ctx:
    """What case builders share: a directory, a git repository, the registry, a web server."""

    root: Path
    repo_work: Path
    repo_url: str
    registry: OCIRegistry | None
    web: Web
    state_dir: Path
    git_files: dict[str, bytes | str] = field(default_factory=dict)
    git_links: dict[str, str] = field(default_factory=dict)
    branch_files: dict[str, dict[str, bytes | str]] = field(default_factory=dict)  # branch -> files
    branch_links: dict[str, dict[str, str]] = field(default_factory=dict)


def plain(files: dict[str, str | bytes]) -> Callable[[str, Ctx], AppDef]:
    """A local-source app made of these files."""
    def build(name: str, ctx: Ctx) -> AppDef:
        d = ctx.root / "apps" / name
        d.mkdir(parents=True)
        for rel, content in files.items():
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content.encode() if isinstance(content, str) else content)
        return local_app(name, d)
    return build


LEAKED = "leaked-from-outside"


def outside_file(ctx: Ctx) -> Path:
    """A valid manifest outside every app directory: following a symlink to it would apply ConfigMap 'leaked'."""
    path = ctx.root / "outside" / "secret.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(configmap("leaked", value=LEAKED)))
    return path


def with_links(files: dict[str, str], links: dict[str, str], render: str = "") -> Callable[[str, Ctx], AppDef]:
    """A local-source app with symlinks (name -> target)."""
    def build(name: str, ctx: Ctx) -> AppDef:
        app = plain(files)(name, ctx)
        d = ctx.root / "apps" / name
        for rel, target in links.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target.replace("OUTSIDE", str(outside_file(ctx))), d / rel)
        app.render = render
        return app
    return build


HOSTILE_BRANCH = "hostile"


def in_git(files: dict[str, str], links: dict[str, str] | None = None, ref: str = "main",
           own_branch: bool = False) -> Callable[[str, Ctx], AppDef]:
    """An app in the shared git repository under apps/NAME (committed once, before the daemon starts);
    with ``own_branch`` its files are committed on branch ``ref`` only."""
    def build(name: str, ctx: Ctx) -> AppDef:
        if not own_branch:
            files_to, links_to = ctx.git_files, ctx.git_links
        else:
            files_to, links_to = ctx.branch_files.setdefault(ref, {}), ctx.branch_links.setdefault(ref, {})
        for rel, content in files.items():
            files_to[f"apps/{name}/{rel}"] = content
        for rel, target in (links or {}).items():
            links_to[f"apps/{name}/{rel}"] = target
        return AppDef(name, f'{{ type = "git", url = {toml_str(ctx.repo_url)}, ref = "{ref}", path = "apps/{name}" }}')
    return build


LEAKED_YAML = json.dumps(configmap("leaked", value=LEAKED))


def in_git_tree(files: dict[str, str], links: dict[str, str], render: str = "") -> Callable[[str, Ctx], AppDef]:
    """A git app whose symlinks point into the repository but outside the app's directory
    (at ``outside/secret.yaml``): the source accepts them, so the renderer must refuse them."""
    def build(name: str, ctx: Ctx) -> AppDef:
        ctx.git_files["outside/secret.yaml"] = LEAKED_YAML
        app = in_git(files, links)(name, ctx)
        app.render = render
        return app
    return build


def big_git_tree(size: int, max_size: int) -> Callable[[str, Ctx], AppDef]:
    """A git app whose tree holds ``size`` bytes, over its ``max_size``."""
    def build(name: str, ctx: Ctx) -> AppDef:
        # On a branch of its own: an extracted tree is shared, whoever extracted it first.
        files = ctx.branch_files.setdefault(name, {})
        files[f"apps/{name}/big.bin"] = os.urandom(1024) * (size // 1024)
        files[f"apps/{name}/cm.yaml"] = cm_yaml("big")
        return AppDef(name, f'{{ type = "git", url = {toml_str(ctx.repo_url)}, ref = "{name}", path = "apps/{name}", '
                            f"max_size = {max_size} }}")
    return build


def secret_file(name: str, ctx: Ctx, value: str, mode: int) -> Path:
    path = ctx.root / "secrets" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(mode)
    return path


def git_with_password(mode: int) -> Callable[[str, Ctx], AppDef]:
    """A git app over HTTP whose password file has ``mode``."""
    def build(name: str, ctx: Ctx) -> AppDef:
        user = secret_file(f"{name}-user", ctx, "deploy", 0o600)
        password = secret_file(f"{name}-password", ctx, "pw-" + name, mode)
        return AppDef(name, f'{{ type = "git", url = "{ctx.web.url}/{name}.git", ref = "main", '
                            f"username_file = {toml_str(user)}, password_file = {toml_str(password)}, timeout = 10 }}")
    return build


def git_redirected(name: str, ctx: Ctx) -> AppDef:
    """A credentialed git app whose server answers with a redirect to another host name."""
    ctx.web.files[f"/{name}.git/info/refs"] = (
        302, {"Location": f"http://localhost:{{PORT}}/collect/{name}.git/info/refs?service=git-upload-pack"}, b"")
    ctx.web.files[f"/collect/{name}.git/info/refs"] = (401, {"WWW-Authenticate": 'Basic realm="x"'}, b"")
    return git_with_password(0o600)(name, ctx)


def oci_docker_config(mode: int) -> Callable[[str, Ctx], AppDef | None]:
    """An OCI app whose docker config.json has ``mode``."""
    def build(name: str, ctx: Ctx) -> AppDef | None:
        if ctx.registry is None:
            return None
        auth = base64.b64encode(b"user:registry-password-1").decode()
        config = secret_file(f"{name}.json", ctx, json.dumps({"auths": {ctx.registry.host: {"auth": auth}}}), mode)
        return AppDef(name, f'{{ type = "oci", url = "oci://{ctx.registry.host}/bad/{name}", tag = "v1", '
                            f"insecure = true, docker_config_file = {toml_str(config)} }}")
    return build


def oci_hostile_digest(name: str, ctx: Ctx) -> AppDef:
    """An OCI registry (ours) whose manifest names a layer digest ``../../victim``: a host directory
    that holds a manifest of ConfigMap 'leaked'."""
    victim = ctx.state_dir / "victim"
    victim.mkdir(parents=True, exist_ok=True)
    (victim / "secret.yaml").write_text(LEAKED_YAML)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.flux.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [{"mediaType": "application/vnd.cncf.flux.content.v1.tar+gzip", "digest": "../../victim", "size": 10}],
    }).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Docker-Content-Digest": digest}
    for ref in ("v1", digest):
        ctx.web.files[f"/v2/bad/{name}/manifests/{ref}"] = (200, headers, manifest)
    return AppDef(name, f'{{ type = "oci", url = "oci://127.0.0.1:{ctx.web.port}/bad/{name}", tag = "v1", insecure = true }}')


def kustomize_tree(files: dict[str, str], path: str = "", enable_helm: bool = False) -> Callable[[str, Ctx], AppDef]:
    """A local Kustomize app of several files; ``{WEB}`` is the test web server's URL."""
    def build(name: str, ctx: Ctx) -> AppDef:
        app = plain({k: v.replace("{WEB}", ctx.web.url) for k, v in files.items()})(name, ctx)
        if path:
            app.source = app.source.replace(str(ctx.root / "apps" / name), str(ctx.root / "apps" / name / path))
        app.render = '{ type = "kustomize", enable_helm = true }' if enable_helm else '{ type = "kustomize" }'
        return app
    return build


def chart_with_dependency(repository: str) -> Callable[[str, Ctx], AppDef]:
    """A local chart with a dependency that is not in charts/."""
    chart_yaml = f"apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies:\n- name: redis\n  version: 1.0.0\n  repository: {repository}\n"
    return chart({"cm.yaml": cm_yaml("x")}, chart_yaml=chart_yaml)


def oci(layer: Callable[[], bytes], tag: str = "v1", media_type: str = "application/vnd.cncf.flux.content.v1.tar+gzip",
        max_size: int = 0, push: bool = True) -> Callable[[str, Ctx], AppDef | None]:
    """An app with an OCI source; the artifact is pushed to the test registry."""
    def build(name: str, ctx: Ctx) -> AppDef | None:
        if ctx.registry is None:
            return None
        if push:
            ctx.registry.push_artifact(f"bad/{name}", tag, layer(), media_type)
        extra = f", max_size = {max_size}" if max_size else ""
        return AppDef(name, f'{{ type = "oci", url = "oci://{ctx.registry.host}/bad/{name}", tag = "v1", '
                            f"insecure = true{extra} }}")
    return build


def chart(templates: dict[str, str], chart_yaml: str = "apiVersion: v2\nname: c\nversion: 0.1.0\n",
          links: dict[str, str] | None = None) -> Callable[[str, Ctx], AppDef]:
    """A local Helm chart app."""
    files = {"Chart.yaml": chart_yaml, **{f"templates/{k}": v for k, v in templates.items()}}
    return with_links(files, links or {}, render='{ type = "helm" }')


def kustomize(kustomization: str, files: dict[str, str] | None = None,
              links: dict[str, str] | None = None) -> Callable[[str, Ctx], AppDef]:
    """A local Kustomize app."""
    return with_links({"kustomization.yaml": kustomization, **(files or {})}, links or {},
                      render='{ type = "kustomize" }')


# 303 bytes, about 600,000 nodes once its aliases are expanded: under the per-document limit.
SMALL_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(5)
) + "kind: ConfigMap\napiVersion: v1\nmetadata: {name: bomb}\n"

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)
) + "kind: ConfigMap\napiVersion: v1\nmetadata: {name: bomb}\n"


def cm_yaml(name: str, **data: str) -> str:
    """A ConfigMap as JSON text."""
    return json.dumps(configmap(name, **data))


# -- app cases: (id, builder, expected text in the app's last message) ------------------------


def case(case_id: str, build: Callable[[str, Ctx], AppDef | None], expected: str, xfail: str = "") -> Any:
    """One app case; ``xfail`` names a known defect (strict: the case fails once it is fixed)."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(case_id, build, expected, id=case_id, marks=marks)


APP_CASES = [
    case("m-yaml-syntax", plain({"a.yaml": "kind: ConfigMap\nmetadata: [unclosed\n"}), "invalid yaml"),
    case("m-yaml-bomb", plain({"bomb.yaml": BOMB}), "aliases expand"),
    case("m-not-a-mapping", plain({"a.yaml": "- just\n- a list\n"}), "mapping"),
    case("m-missing-kind", plain({"a.yaml": '{"apiVersion": "v1", "metadata": {"name": "x"}}'}), "kind"),
    case("m-missing-name", plain({"a.yaml": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}'}), "name"),
    case("m-unknown-kind", plain({"a.yaml": '{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}'}),
     "widget"),
    case("m-invalid-name", plain({"a.yaml": cm_yaml("Bad_Name")}), "invalid"),
    case("m-duplicate-object", plain({"a.yaml": cm_yaml("twice"), "b.yaml": cm_yaml("twice")}), "duplicate"),
    case("m-binary-garbage", plain({"a.yaml": b"\x00\xff\xfe garbage \x00"}), "a.yaml"),
    case("m-oversize-object", plain({"a.yaml": cm_yaml("huge", blob="x" * (1024 * 1024 + 10))}), "huge"),
    # 100,000 levels: deep enough to overflow the C stack of a libyaml without a nesting limit.
    case("m-deep-nesting", plain({"a.yaml": "a: " + "[" * 100_000 + "]" * 100_000 + "\n"}),
         "a.yaml: document 0 line 1: YAML budget max_depth exceeded"),
    case("k-path-traversal", kustomize("resources:\n- " + "../" * 30 + "etc/hostname\n"),
         "security; file '/etc/hostname' is not in or below"),
    case("k-symlink-escape", in_git_tree({"kustomization.yaml": "resources:\n- leak.yaml\n"},
                                         {"leak.yaml": "../../outside/secret.yaml"}, render='{ type = "kustomize" }'),
         "security; file './leak.yaml' is not in or below '.'"),
    case("k-missing-file", kustomize("resources:\n- nope.yaml\n"), "nope.yaml"),
    case("k-malformed", kustomize("resources: [unclosed\n"), "invalid Kustomization: yaml: line 1"),
    case("h-template-syntax", chart({"cm.yaml": "{{ .Values.x \n"}), "parse error at (c/templates/cm.yaml"),
    case("h-fail-call", chart({"cm.yaml": '{{ fail "chart says no" }}\n'}), "chart says no"),
    case("h-bad-chart-yaml", chart({"cm.yaml": cm_yaml("x")}, chart_yaml="apiVersion: v2\n"),
         "chart.metadata.name is required"),
    case("h-symlink-escape", in_git_tree({"Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n",
                                          "templates/cm.yaml": cm_yaml("fine")},
                                         {"templates/leak.yaml": "../../../outside/secret.yaml"}, render='{ type = "helm" }'),
         "templates/leak.yaml is a symlink to ../../../outside/secret.yaml, outside the app's directory"),
    case("p-symlink-escape", in_git_tree({"a.yaml": cm_yaml("fine")}, {"leak.yaml": "../../outside/secret.yaml"}),
         "leak.yaml is a symlink to ../../outside/secret.yaml, outside the app's directory"),
    case("l-symlink-escape", with_links({"a.yaml": cm_yaml("fine")}, {"leak.yaml": "OUTSIDE"}), "leak.yaml"),
    # On a branch of its own: a tree with an absolute symlink is refused as a whole.
    case("g-symlink-escape", in_git({"a.yaml": cm_yaml("fine")}, links={"leak.yaml": "OUTSIDE"}, ref=HOSTILE_BRANCH,
                                   own_branch=True),
         "symlink 'apps/g-symlink-escape/leak.yaml' -> "),
    case("g-missing-ref", in_git({"a.yaml": cm_yaml("fine")}, ref="no-such-branch"), "no-such-branch"),
    case("o-path-traversal", oci(lambda: tar_gz({"a.yaml": CM}, raw=["../../evil.yaml"])), ".."),
    case("o-absolute-path", oci(lambda: tar_gz({"a.yaml": CM}, raw=["/tmp/evil.yaml"])), "absolute"),
    case("o-symlink-escape", oci(lambda: tar_gz({"a.yaml": CM}, symlinks={"leak.yaml": "../../../etc/passwd"})), "leak.yaml"),
    case("o-gzip-bomb", oci(lambda: gzip_bomb(8 * 1024 * 1024), max_size=1024 * 1024), "expands to more than"),
    case("o-not-gzip", oci(lambda: b"this is not a tarball", media_type="application/vnd.oci.image.layer.v1.tar+gzip"), "gzip"),
    case("o-missing-tag", oci(lambda: b"", push=False), "v1"),
    # -- issue 13: hostile sources, credential scoping -------------------------------------
    case("k-remote-url", kustomize_tree({"kustomization.yaml": "resources:\n- {WEB}/cm.yaml\n"}),
         "refers to remote resources, which are refused: kustomization.yaml: resources[0]: http://127.0.0.1"),
    case("k-remote-metadata", kustomize_tree({"kustomization.yaml":
                                              "resources:\n- http://169.254.169.254/latest/meta-data/iam/x\n"}),
         "resources[0]: http://169.254.169.254/latest/meta-data/iam/x"),
    case("k-remote-git", kustomize_tree({"kustomization.yaml": "resources:\n- github.com/example/repo//deploy?ref=v1\n"}),
         "resources[0]: github.com/example/repo//deploy?ref=v1"),
    case("k-remote-ssh-base", kustomize_tree({"kustomization.yaml": "bases:\n- git@github.com:example/repo.git\n"}),
         "bases[0]: git@github.com:example/repo.git"),
    case("k-remote-in-base", kustomize_tree({"overlay/kustomization.yaml": "resources:\n- ../base\n",
                                             "base/kustomization.yaml": "resources:\n- {WEB}/cm.yaml\n"},
                                            path="overlay"),
         "base/kustomization.yaml: resources[0]: http://127.0.0.1"),
    case("k-remote-patch", kustomize_tree({"kustomization.yaml": "resources:\n- cm.yaml\npatches:\n- path: {WEB}/p.yaml\n",
                                           "cm.yaml": cm_yaml("local")}),
         "patches[0].path: http://127.0.0.1"),
    case("k-remote-helm-chart", kustomize_tree({"kustomization.yaml":
                                                "helmCharts:\n- name: x\n  repo: {WEB}/charts\n  version: 1.0.0\n"},
                                               enable_helm=True),
         "helmCharts[0].repo: http://127.0.0.1"),
    case("h-unvendored-dependency", chart_with_dependency("https://charts.example.invalid"),
         "not vendored in charts/ and would be downloaded: redis (https://charts.example.invalid)"),
    case("h-file-dependency-missing", chart_with_dependency("file://../redis"),
         "not vendored in charts/ and would be downloaded: redis (file://../redis)"),
    case("m-many-small-bombs", plain({"bombs.yaml": "---\n".join(SMALL_BOMB.replace("bomb", f"bomb{i}") for i in range(16))}),
         "bombs.yaml: document 1: YAML budget max_alias_expansions exceeded"),
    case("m-bombs-across-files", plain({f"{i}.yaml": SMALL_BOMB.replace("bomb", f"bomb{i}") for i in range(4)}),
         "1.yaml: document 0: YAML budget max_alias_expansions exceeded"),
    case("m-too-many-documents", plain({"many.yaml": "\n---\n".join(cm_yaml(f"c{i}") for i in range(20_001))}),
         "many.yaml: YAML budget max_documents exceeded: more than 20,000 documents"),
    case("m-deep-block-nesting", plain({"a.yaml": "- " * 50_000 + "x\n"}), "YAML budget max_depth exceeded"),
    case("o-digest-traversal", oci_hostile_digest, "digest '../../victim' is not sha256:<64 hex>"),
    case("g-archive-over-max-size", big_git_tree(8 * 1024 * 1024, 1024 * 1024), "expands to more than 1048576 bytes"),
    case("s-world-readable-password", git_with_password(0o644), "has mode 0644: group or others may access it: run `chmod 600"),
    case("s-group-readable-password", git_with_password(0o640), "has mode 0640"),
    case("s-world-readable-docker-config", oci_docker_config(0o604), "docker_config_file: secret file"),
    case("g-redirect-with-credentials", git_redirected, "302"),
]


@dataclass
class World:
    """The running daemon with every bad app and the good ones."""

    env: Env
    ctx: Ctx
    skipped: set[str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One sandbox, one registry, one git repository and one daemon for every app case."""
    require_tool("kubectl")
    require_tool("helm")
    root = tmp_path_factory.mktemp("bad-input")
    sandbox = SandboxProc.start(root / "sandbox", rollout_delay=0.1)
    registry = start_registry(root / "registry")
    work = root / "repo"
    git(root, "init", "-q", "-b", "main", str(work))
    web = Web()
    env = Env(root, sandbox)
    ctx = Ctx(root, work, work.resolve().as_uri(), registry, web, env.state_dir)
    try:
        apps: list[AppDef] = []
        skipped = set()
        for param in APP_CASES:
            case_id, build, _ = param.values
            app = build(case_id, ctx)
            if app is None:
                skipped.add(case_id)
            else:
                apps.append(app)
        for name in (*GOOD_APPS, "emptied"):
            apps.append(local_app(name, write_manifests(root / "apps" / name, standard_app(0, objects=3))))
        # The app the webhook cases' pushes name: a request wrongly accepted would refresh it.
        in_git({"cm.yaml": cm_yaml("hooked")})(HOOKED, ctx)
        apps.append(AppDef(HOOKED, f'{{ type = "git", url = {toml_str(ctx.repo_url)}, ref = "main", path = "apps/{HOOKED}" }}'))
        for rel, content in ctx.git_files.items():
            p = work / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content.encode() if isinstance(content, str) else content)
        for rel, target in ctx.git_links.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target.replace("OUTSIDE", str(outside_file(ctx))), work / rel)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "bad input")
        for branch in sorted(ctx.branch_files.keys() | ctx.branch_links.keys()):  # trees of their own
            git(work, "checkout", "-q", "-b", branch, "main")
            for rel, content in ctx.branch_files.get(branch, {}).items():
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                (work / rel).write_bytes(content.encode() if isinstance(content, str) else content)
            for rel, target in ctx.branch_links.get(branch, {}).items():
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target.replace("OUTSIDE", str(outside_file(ctx))), work / rel)
            git(work, "add", "-A")
            git(work, "commit", "-q", "-m", branch)
            git(work, "checkout", "-q", "main")
        # Polls wait an hour: a reconcile during a webhook or API case is then that request's doing.
        env.write_config(apps, interval="1h")
        env.start()
        yield World(env, ctx, skipped)
    finally:
        env.stop()
        sandbox.stop()
        web.close()
        if registry is not None:
            registry.stop()


@pytest.mark.parametrize(("case_id", "build", "expected"), APP_CASES)
def test_bad_app_gets_a_clear_error(world: World, case_id: str, build: object, expected: str) -> None:
    """The app is not Synced, and its last message names the problem."""
    if case_id in world.skipped:
        require_tool("docker-registry")
    daemon = world.env.daemon
    assert daemon is not None

    def failed() -> dict[str, Any] | None:
        app = daemon.client.get(f"/api/v1/apps/{case_id}").json()
        return app if app["reconciles"] >= 1 and app["last_sync"]["message"] else None

    app = wait_for(failed, 45, f"{case_id} to report its error")
    message = app["last_sync"]["message"]
    assert not (app["sync"] == "Synced" and app["health"] == "Healthy"), f"{case_id} was accepted: {message}"
    assert expected.lower() in message.lower(), f"{case_id}: expected {expected!r} in {message!r}"
    assert len(message) < 4000, "the error should be a clear message, not a dump"
    leaked = world.env.sandbox.get(f"/api/v1/namespaces/{case_id}/configmaps/leaked")
    assert leaked.status_code == 404, f"{case_id}: a file outside the app was applied"
    if case_id.startswith("k-remote"):
        assert not [p for _, p, _ in world.ctx.web.seen if p.endswith(("/cm.yaml", "/p.yaml"))], "kustomize fetched"
    if case_id == "g-redirect-with-credentials":
        assert [p for _, p, _ in world.ctx.web.seen if p.startswith(f"/{case_id}.git/")], "the server was not asked"
        for host, path, auth in world.ctx.web.seen:
            assert not (path.startswith("/collect/") and auth), f"credentials followed a redirect to {host}"


def test_good_apps_keep_converging(world: World) -> None:
    """Next to every bad app, the good ones converge, and follow a change."""
    daemon = world.env.daemon
    assert daemon is not None
    wait_converged(daemon, GOOD_APPS, timeout=60)
    write_manifests(world.ctx.root / "apps" / "good-a", standard_app(0, revision="2", objects=3))
    sandbox = world.env.sandbox

    def changed() -> bool:
        r = sandbox.get("/api/v1/namespaces/good-a/configmaps/settings-0")
        return r.status_code == 200 and r.json()["data"]["revision"] == "2"

    wait_for(changed, 30, "good-a to apply its change")
    wait_converged(daemon, GOOD_APPS, timeout=30)
    assert daemon.alive()
    assert not (Path("/tmp") / "evil.yaml").exists()


def test_emptied_app_is_not_pruned(world: World) -> None:
    """An app whose render suddenly comes back empty keeps its objects and says why (allow_empty is off)."""
    daemon = world.env.daemon
    assert daemon is not None
    wait_converged(daemon, ["emptied"], timeout=60)
    for f in (world.ctx.root / "apps" / "emptied").glob("*.yaml"):
        f.unlink()

    def refused() -> dict[str, Any] | None:
        app = daemon.client.get("/api/v1/apps/emptied").json()
        return app if "empty" in app["last_sync"]["message"].lower() else None

    app = wait_for(refused, 30, "the empty render to be refused")
    assert app["last_sync"]["result"] != "succeeded" or app["sync"] != "Synced", app
    live = world.env.sandbox.get("/api/v1/namespaces/emptied/configmaps/settings-0")
    assert live.status_code == 200, "the objects of an emptied app were pruned"


# -- webhooks and API calls --------------------------------------------------------------------


def _sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


PUSH = b"<push>"  # replaced by push_body(): a push of main of the shared repository, which app 'hooked' follows


def push_body(repo_url: str) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "after": "0" * 40,
                       "repository": {"clone_url": repo_url, "default_branch": "main"}}).encode()

# (id, method, path, headers(secret, token) -> dict, body, status, expected text in the reply)
HTTP_CASES: list[tuple[str, str, str, Callable[[str, str, bytes], dict[str, str]], bytes, int, str]] = [
    ("w-forged-signature", "POST", "/hooks/github",
     lambda s, t, b: {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64}, PUSH, 401, "signature"),
    ("w-missing-signature", "POST", "/hooks/github", lambda s, t, b: {"X-GitHub-Event": "push"}, PUSH, 401, "signature"),
    ("w-wrong-secret", "POST", "/hooks/github",
     lambda s, t, b: {"X-GitHub-Event": "push", "X-Hub-Signature-256": _sign(b, "not-the-secret")}, PUSH, 401, "signature"),
    ("w-signature-of-other-body", "POST", "/hooks/github",
     lambda s, t, b: {"X-GitHub-Event": "push", "X-Hub-Signature-256": _sign(b"{}", s)}, PUSH, 401, "signature"),
    ("w-malformed-json", "POST", "/hooks/github",
     lambda s, t, b: {"X-GitHub-Event": "push", "X-Hub-Signature-256": _sign(b"{not json", s)}, b"{not json", 400, "json"),
    ("w-no-ref", "POST", "/hooks/github",
     lambda s, t, b: {"X-GitHub-Event": "push", "X-Hub-Signature-256": _sign(b'{"repository": {}}', s)},
     b'{"repository": {}}', 400, "ref"),
    ("w-oversize", "POST", "/hooks/github",
     lambda s, t, b: {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00"}, b"x" * (2 * 1024 * 1024), 413, "larger"),
    ("w-unknown-provider", "POST", "/hooks/bitbucket", lambda s, t, b: {}, PUSH, 404, "no such endpoint"),
    ("w-unconfigured-gitlab", "POST", "/hooks/gitlab", lambda s, t, b: {"X-Gitlab-Token": s}, PUSH, 404, "no such endpoint"),
    ("w-not-a-push", "POST", "/hooks/github",
     lambda s, t, b: {"X-GitHub-Event": "issues", "X-Hub-Signature-256": _sign(b, s)}, PUSH, 202, "not a push"),
    ("a-no-token", "POST", "/api/v1/apps/good-a/refresh", lambda s, t, b: {}, b"", 401, "missing bearer token"),
    ("a-wrong-token", "POST", "/api/v1/apps/good-a/refresh",
     lambda s, t, b: {"Authorization": "Bearer not-the-token"}, b"", 401, "invalid bearer token"),
    ("a-basic-auth", "POST", "/api/v1/apps/good-a/refresh",
     lambda s, t, b: {"Authorization": "Basic " + t}, b"", 401, "bearer"),
    ("a-unknown-app", "POST", "/api/v1/apps/nope/refresh", lambda s, t, b: {"Authorization": f"Bearer {t}"}, b"", 404, "nope"),
    ("a-unknown-action", "POST", "/api/v1/apps/good-a/explode",
     lambda s, t, b: {"Authorization": f"Bearer {t}"}, b"", 404, "no such action"),
    ("a-rollback-no-body", "POST", "/api/v1/apps/good-a/rollback",
     lambda s, t, b: {"Authorization": f"Bearer {t}"}, b"", 400, "revision"),
    ("a-rollback-unknown", "POST", "/api/v1/apps/good-a/rollback",
     lambda s, t, b: {"Authorization": f"Bearer {t}"}, b'{"revision": "deadbeefdeadbeef"}', 409, "deadbeef"),
    ("a-oversize", "POST", "/api/v1/apps/good-a/rollback",
     lambda s, t, b: {"Authorization": f"Bearer {t}"}, b"{" + b" " * (2 * 1024 * 1024) + b"}", 413, "larger"),
    ("a-path-traversal", "GET", "/api/v1/apps/..%2F..%2Fetc%2Fpasswd", lambda s, t, b: {}, b"", 404, "no "),
    ("a-wrong-method", "DELETE", "/api/v1/apps/good-a", lambda s, t, b: {"Authorization": f"Bearer {t}"}, b"", 405,
     "not allowed"),
]


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_bad_http_request(world: World, case: tuple) -> None:
    """Each hostile or malformed request gets its status and a clear JSON error; nothing else happens."""
    case_id, method, path, headers, body, status, expected = case
    env = world.env
    assert env.daemon is not None
    if body == PUSH:
        body = push_body(world.ctx.repo_url)

    def reconciles() -> dict[str, int]:
        assert env.daemon is not None
        return {n: env.daemon.client.get(f"/api/v1/apps/{n}").json()["reconciles"] for n in ("good-a", HOOKED)}

    wait_for(lambda: reconciles()[HOOKED] >= 1, 45, "the hooked app's first reconcile")
    before = reconciles()
    r = env.daemon.client.request(method, path, content=body, headers=headers(env.hook_secret, env.token, body))
    assert r.status_code == status, f"{case_id}: {r.status_code} {r.text[:300]}"
    text = r.text.lower()
    assert expected.lower() in text, f"{case_id}: expected {expected!r} in {r.text[:300]!r}"
    if status >= 400:
        assert "error" in r.json()
    assert env.hook_secret not in r.text and env.token not in r.text
    time.sleep(1.0)
    assert reconciles() == before, f"{case_id} triggered a reconcile"
    assert env.daemon.alive()


def test_matching_push_refreshes_and_its_replay_is_ignored(world: World) -> None:
    """Positive control of the cases above (a good push does refresh 'hooked'), then the same delivery again."""
    env = world.env
    assert env.daemon is not None
    body = push_body(world.ctx.repo_url)
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": _sign(body, env.hook_secret),
               "X-GitHub-Delivery": "f3a0c2e4-1b2d-11ef-9f51-0242ac120002"}

    def count() -> int:
        assert env.daemon is not None
        return int(env.daemon.client.get(f"/api/v1/apps/{HOOKED}").json()["reconciles"])

    wait_for(lambda: count() >= 1, 45, "the hooked app's first reconcile")
    before = count()
    r = env.daemon.client.post("/hooks/github", content=body, headers=headers)
    assert r.status_code == 202 and HOOKED in r.json()["refreshed"], r.text
    wait_for(lambda: count() > before, 30, "the push to refresh the hooked app")
    time.sleep(1.0)
    settled = count()
    replay = env.daemon.client.post("/hooks/github", content=body, headers=headers)
    assert replay.status_code == 202 and replay.json() == {"status": "ignored", "reason": "delivery already received"}
    time.sleep(1.0)
    assert count() == settled, "the replayed delivery triggered a reconcile"
    assert 'outcome="replayed"' in env.daemon.client.get("/metrics").text


# -- configs -----------------------------------------------------------------------------------

BASE = '[daemon]\nstate_dir = "state"\n\n[clusters.c]\nkubeconfig = "kubeconfig"\n\n'
APP = '[apps.web]\ncluster = "c"\nsource = { type = "git", url = "https://example.com/r.git", ref = "main" }\n'

CONFIG_CASES: list[tuple[str, str, str]] = [
    ("c-toml-syntax", BASE + "[apps.web\ncluster = c\n", "line"),
    ("c-unknown-daemon-key", BASE.replace("[daemon]\n", "[daemon]\nstate_dri = 'x'\n") + APP, "state_dri"),
    ("c-unknown-cluster", BASE + APP.replace('cluster = "c"', 'cluster = "nowhere"'), "nowhere"),
    ("c-bad-duration", BASE + APP + 'interval = "5 minutes"\n', "duration"),
    ("c-bad-app-name", BASE + APP.replace("[apps.web]", "[apps.Web_App]"), "web_app"),
    ("c-source-path-traversal", BASE + APP.replace('ref = "main"', 'ref = "main", path = "../../etc"'), "inside the repository"),
    ("c-credentials-in-url", BASE + APP.replace("https://example.com", "https://user:pw@example.com"), "credentials"),
    ("c-helm-values-traversal", BASE + APP + 'render = { type = "helm", values_files = ["../../etc/passwd"] }\n', "values file"),
    ("c-unknown-source-type", BASE + APP.replace('type = "git"', 'type = "svn"'), "svn"),
    ("c-undefined-notifier", BASE + APP + 'notify = ["ghost"]\n', "ghost"),
    ("c-string-for-bool", BASE + APP + 'prune = "yes"\n', "prune"),
    ("c-oversize-value", BASE + APP + f'namespace = "{"n" * 100}"\n', "namespace"),
]


@pytest.mark.parametrize(("case_id", "text", "expected"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_is_refused(tmp_path: Path, case_id: str, text: str, expected: str) -> None:
    """``gitopsd check`` exits 1 naming the problem."""
    path = tmp_path / "gitopsd.toml"
    path.write_text(text)
    r = subprocess.run([sys.executable, "-m", "gitopsd", "check", "-c", str(path)], capture_output=True, text=True,
                       timeout=60, env=tool_env(), cwd=ROOT)
    assert r.returncode == 1, f"{case_id}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    assert expected.lower() in r.stderr.lower(), f"{case_id}: expected {expected!r} in {r.stderr!r}"
    assert "Traceback" not in r.stderr


def test_daemon_refuses_world_readable_token_file(tmp_path: Path) -> None:
    """``gitopsd run`` with an api_token_file others can read exits 1 saying how to fix it."""
    path = tmp_path / "gitopsd.toml"
    (tmp_path / "token").write_text("a-token-value-1234\n")
    (tmp_path / "token").chmod(0o644)
    path.write_text(f'[daemon]\nstate_dir = "state"\nlisten = "127.0.0.1:{free_port()}"\napi_token_file = "token"\n')
    r = subprocess.run([sys.executable, "-m", "gitopsd", "run", "-c", str(path)], capture_output=True, text=True,
                       timeout=60, env=tool_env(), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert f"run `chmod 600 {tmp_path / 'token'}`" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "a-token-value-1234" not in r.stderr


def test_daemon_refuses_missing_secret_file(tmp_path: Path) -> None:
    """``gitopsd run`` with an api_token_file that does not exist exits 1 naming the option, not a traceback."""
    path = tmp_path / "gitopsd.toml"
    port = free_port()
    path.write_text(f'[daemon]\nstate_dir = "state"\nlisten = "127.0.0.1:{port}"\napi_token_file = "missing-token"\n')
    with contextlib.suppress(subprocess.TimeoutExpired):
        r = subprocess.run([sys.executable, "-m", "gitopsd", "run", "-c", str(path)], capture_output=True, text=True,
                           timeout=60, env=tool_env(), cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        assert "api_token_file" in r.stderr and "Traceback" not in r.stderr
        return
    pytest.fail("gitopsd run kept running with a missing api_token_file")
