"""Real servers on loopback for the source tests: git daemon, smart HTTP, sshd, an OCI registry.

Nothing here is a mock: the servers are git's own ``git daemon`` and ``git http-backend``
(behind a small threaded HTTP server doing basic auth), OpenSSH's ``sshd`` and Debian's
``docker-registry`` (the CNCF distribution registry).
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gitopsd import PluginContext, Tools
from gitopsd.testing.artifacts import OCIRegistry, find_registry_binary, push_oci_artifact
from gitopsd.testing.artifacts import tar_gz as kit_tar_gz
from tests.conftest import ROOT, require_tool, sshd_privilege_separation_dir

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.test",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.test",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run git for test set-up; return stdout."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV, **(env or {})},
        capture_output=True, text=True, timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class Repo:
    """A working repository and the bare repository it pushes to (what servers serve)."""

    work: Path
    bare: Path

    def write(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def commit(
        self,
        message: str = "change",
        files: dict[str, str] | None = None,
        sign: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Commit everything; ``sign`` are ``-c`` options that make git sign the commit."""
        if files:
            self.write(files)
        git("add", "-A", cwd=self.work)
        git(*(sign or []), "commit", "-q", "--allow-empty", "-m", message, cwd=self.work, env=env)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, *refs: str) -> None:
        git("push", "-q", "--force", str(self.bare), *(refs or ("HEAD:refs/heads/main",)), cwd=self.work)

    def tag(self, name: str) -> str:
        git("tag", "-a", "-m", name, name, cwd=self.work)
        git("push", "-q", str(self.bare), f"refs/tags/{name}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  value: "{value}"
"""


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """Directory holding bare repositories that the servers export."""
    root = tmp_path / "served"
    root.mkdir()
    return root


@pytest.fixture
def repo(tmp_path: Path, served: Path) -> Repo:
    """A repository ``served/app.git`` with one commit on main: a ConfigMap under deploy/."""
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    bare = served / "app.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    r = Repo(work, bare)
    r.commit("first", {"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="1")})
    r.push()
    return r


@pytest.fixture
def ctx(tmp_path: Path) -> PluginContext:
    """A plugin context with its own state dir and the pinned tools."""
    state = tmp_path / "state"
    state.mkdir()
    return PluginContext(
        state_dir=state,
        config_dir=tmp_path,
        tools=Tools(git=shutil.which("git") or "git", helm=require_tool("helm"), kubectl=require_tool("kubectl")),
    )


@pytest.fixture
def git_daemon(served: Path) -> Iterator[str]:
    """``git daemon`` exporting ``served``; yields its base URL ``git://127.0.0.1:PORT``."""
    port = free_port()
    proc = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={served}", "--listen=127.0.0.1",
         f"--port={port}", "--informative-errors", str(served)],
        env={**os.environ, **GIT_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield f"git://127.0.0.1:{port}"
    finally:
        stop(proc)


class _GitHTTPHandler(BaseHTTPRequestHandler):
    """CGI bridge to ``git http-backend`` with optional basic auth."""

    protocol_version = "HTTP/1.0"
    root: Path
    credentials: tuple[str, str] | None
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        self.requests.append(self.path)
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": self.credentials[0] if self.credentials else "",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@dataclass
class HTTPServer:
    """A running loopback HTTP server."""

    url: str
    requests: list[str]


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def git_http(served: Path) -> Iterator[HTTPServer]:
    """Smart HTTP without auth: ``http://127.0.0.1:PORT``."""
    requests: list[str] = []
    handler = type("H", (_GitHTTPHandler,), {"root": served, "credentials": None, "requests": requests})
    for server in _serve(handler):
        yield HTTPServer(f"http://127.0.0.1:{server.server_address[1]}", requests)


HTTP_USER = "deploy-bot"
HTTP_PASSWORD = "s3cret-token-value-42"


@pytest.fixture
def git_http_auth(served: Path) -> Iterator[HTTPServer]:
    """Smart HTTP with basic auth (user HTTP_USER, password HTTP_PASSWORD)."""
    requests: list[str] = []
    handler = type(
        "H", (_GitHTTPHandler,), {"root": served, "credentials": (HTTP_USER, HTTP_PASSWORD), "requests": requests}
    )
    for server in _serve(handler):
        yield HTTPServer(f"http://127.0.0.1:{server.server_address[1]}", requests)


@pytest.fixture
def hanging_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers; yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        done.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        sock.close()


EXAMPLES = ROOT / "examples"


@dataclass
class SSHServer:
    """A running sshd: connect as ``user`` with ``key`` (private key file), trusting ``known_hosts``."""

    port: int
    user: str
    key: Path
    known_hosts: Path
    other_key: Path  # a key the server does not accept

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


def keygen(path: Path, comment: str = "test") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True, timeout=30)
    return path


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SSHServer]:
    """OpenSSH's sshd on a loopback port with a test host key, one authorized key and a known_hosts file."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd_bin).exists():
        require_tool("sshd")
    d = tmp_path / "ssh"
    d.mkdir()
    host_key = keygen(d / "host_ed25519", "host")
    client_key = keygen(d / "client_ed25519", "client")
    other_key = keygen(d / "other_ed25519", "other")
    (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = free_port()
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(d / 'host_ed25519.pub').read_text().split(' ', 2)[0]} "
                     f"{(d / 'host_ed25519.pub').read_text().split(' ', 2)[1]}\n")
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PidFile {d / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        f"SetEnv PATH={os.environ.get('PATH', '/usr/bin:/bin')}\nLogLevel ERROR\n"
    )
    sshd_privilege_separation_dir()
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        yield SSHServer(port, user, client_key, known, other_key)
    finally:
        stop(proc)


@dataclass
class GPGKey:
    """A test gpg key in its own GNUPGHOME; ``public`` is the armored public key file."""

    home: Path
    fingerprint: str
    public: Path

    def sign_args(self) -> list[str]:
        return ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={self.fingerprint}", "-c", "commit.gpgsign=true"]


def make_gpg_key(tmp_path: Path, name: str) -> Iterator[GPGKey]:
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))  # short: gpg-agent's socket path is limited
    os.chmod(home, 0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.test>",
                    "ed25519", "sign", "never"], env=env, check=True, capture_output=True, timeout=60)
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env, check=True,
                             capture_output=True, text=True, timeout=30).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    public = tmp_path / f"{name}.asc"
    public.write_bytes(subprocess.run(["gpg", "--batch", "--armor", "--export", fingerprint], env=env, check=True,
                                      capture_output=True, timeout=30).stdout)
    try:
        yield GPGKey(home, fingerprint, public)
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


# -- OCI registry -----------------------------------------------------------------------------

REGISTRY_USER = "oci-bot"
REGISTRY_PASSWORD = "registry-pass-9876"


@dataclass
class Registry:
    """A running docker-registry: ``host`` is ``127.0.0.1:PORT``; ``auth`` the basic credentials if any."""

    host: str
    auth: tuple[str, str] | None

    def client_auth(self, repo: str) -> dict[str, object]:
        """httpx.Client arguments that authenticate a push to ``repo``."""
        return {"auth": self.auth}

    def push_artifact(self, repo: str, tag: str, layer: bytes, media_type: str,
                      artifact_type: str = "application/vnd.cncf.flux.config.v1+json") -> str:
        """Push a one-layer OCI artifact through the distribution API; return the manifest digest."""
        return push_oci_artifact(f"http://{self.host}", repo, tag, layer, media_type=media_type,
                                 artifact_type=artifact_type, **self.client_auth(repo))


def _registry(tmp_path: Path, with_auth: bool) -> Iterator[Registry]:
    """The kit's OCIRegistry (gitopsd.testing), as the Registry these tests use."""
    if find_registry_binary() is None:
        require_tool("docker-registry")
    credentials = (REGISTRY_USER, REGISTRY_PASSWORD) if with_auth else None
    with OCIRegistry(tmp_path / ("registry-auth" if with_auth else "registry"), credentials=credentials) as server:
        yield Registry(server.host, credentials)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """Debian's docker-registry without auth."""
    yield from _registry(tmp_path, with_auth=False)


@pytest.fixture
def registry_auth(tmp_path: Path) -> Iterator[Registry]:
    """Debian's docker-registry with htpasswd basic auth (REGISTRY_USER / REGISTRY_PASSWORD)."""
    yield from _registry(tmp_path, with_auth=True)


def tar_gz(files: dict[str, str | bytes], *, symlinks: dict[str, str] | None = None,
           raw_names: list[str] | None = None) -> bytes:
    """The kit's tar_gz; ``raw_names`` adds two-byte members with hostile names (``../x``, ``/abs``)."""
    return kit_tar_gz({**files, **{name: b"x\n" for name in raw_names or []}}, symlinks=symlinks)


@pytest.fixture
def static_http(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain loopback HTTP server for a directory (a Helm repository); yields (url, directory)."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    for server in _serve(functools.partial(Quiet, directory=str(root))):  # type: ignore[arg-type]
        yield f"http://127.0.0.1:{server.server_address[1]}", root


# -- registry token flow ----------------------------------------------------------------------


@dataclass
class TokenRegistry(Registry):
    """docker-registry with ``auth: token``: a loopback token server issues signed JWTs."""

    realm: str = ""
    token_requests: list[str] | None = None
    token_auth: list[str] | None = None  # the Authorization header of each token request ("" if none)
    rogue_tokens: list[int] | None = None  # [n]: the next n tokens are signed by a key the registry does not trust

    def token(self, scope: str) -> str:
        import httpx

        response = httpx.get(self.realm, params={"service": "test-registry", "scope": scope}, auth=self.auth, timeout=30)
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    def client_auth(self, repo: str) -> dict[str, object]:
        return {"headers": {"Authorization": f"Bearer {self.token(f'repository:{repo}:pull,push')}"}}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def registry_token(tmp_path: Path) -> Iterator[TokenRegistry]:
    """docker-registry requiring bearer tokens from a loopback token server (basic auth at the realm)."""
    yield from _token_registry(tmp_path, "127.0.0.1")


@pytest.fixture
def registry_token_elsewhere(tmp_path: Path) -> Iterator[TokenRegistry]:
    """Like registry_token, but the realm is plain http on another host name (``localhost``)."""
    yield from _token_registry(tmp_path, "localhost")


def _token_registry(tmp_path: Path, realm_host: str) -> Iterator[TokenRegistry]:
    import datetime
    import json
    import uuid
    from urllib.parse import parse_qs, urlparse

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.x509.oid import NameOID

    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).exists():
        require_tool("docker-registry")
    d = tmp_path / "registry-token"
    d.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (d / "root.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue_cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(rogue_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1)).sign(rogue_key, hashes.SHA256())
    )
    rogue_x5c = base64.b64encode(rogue_cert.public_bytes(serialization.Encoding.DER)).decode()
    requests: list[str] = []
    auth_headers: list[str] = []
    rogue = [0]

    def issue(scope: str) -> str:
        access = []
        if scope:
            kind, repo, actions = scope.split(":")
            access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        t = int(time.time())
        signer, chain = key, x5c
        if rogue[0] > 0:  # a token the registry rejects, as it would an expired or revoked one
            rogue[0] -= 1
            signer, chain = rogue_key, rogue_x5c
        header = {"typ": "JWT", "alg": "ES256", "x5c": [chain]}
        claims = {"iss": "test-issuer", "sub": REGISTRY_USER, "aud": "test-registry", "exp": t + 300, "nbf": t - 10,
                  "iat": t, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(signer.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    class TokenHandler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            requests.append(self.path)
            auth_headers.append(self.headers.get("Authorization") or "")
            expected = "Basic " + base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"token": issue(query.get("scope", [""])[0])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    for token_server in _serve(TokenHandler):
        realm = f"http://{realm_host}:{token_server.server_address[1]}/token"
        port = free_port()
        (d / "config.yml").write_text(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: {realm}\n    service: test-registry\n"
            f"    issuer: test-issuer\n    rootcertbundle: {d / 'root.pem'}\n"
        )
        proc = subprocess.Popen([binary, "serve", str(d / "config.yml")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_port(port, proc)
            yield TokenRegistry(f"127.0.0.1:{port}", (REGISTRY_USER, REGISTRY_PASSWORD), realm, requests, auth_headers,
                                rogue)
        finally:
            stop(proc)
