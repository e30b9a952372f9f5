"""/readyz: ready once started, whatever the clusters do (docs/operations.md, "Start-up and readiness")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gitopsd.core.events import Event
from gitopsd.daemon.supervisor import Daemon
from gitopsd.server.systemd import SystemdNotifier
from tests.integration.ops.conftest import (
    API_TOKEN,
    Env,
    GitRepo,
    NotifySocket,
    configmap,
    free_port,
    running,
    wait_for,
)

pytestmark = pytest.mark.anyio


def _down_kubeconfig(env: Env) -> Path:
    """A kubeconfig for a cluster that refuses connections (nothing listens on its port)."""
    kubeconfig = env.root / "down.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{free_port()}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return kubeconfig


async def test_ready_while_a_cluster_is_down(env: Env, http: httpx.AsyncClient) -> None:
    """An app whose cluster refuses connections fails its syncs; the daemon stays ready.

    Readiness used to look at the clusters: a first /readyz after a failed request said
    "cluster ... not reached yet" (503), one before it said ready, and stayed so.
    """
    repo = GitRepo(env.root, "app")
    repo.commit({"cm.yaml": configmap("settings", a="1")})
    kubeconfig = _down_kubeconfig(env)
    config = env.write(
        env.daemon_toml()
        + f'[clusters.down]\nkubeconfig = "{kubeconfig}"\n\n'
        + f'[apps.web]\ncluster = "down"\nnamespace = "web"\nsource = {{ type = "git", url = "{repo.url}", ref = "main" }}\n'
    )
    events: list[Event] = []
    async with running(env, config, events=events):
        await wait_for(lambda: any(e.name == "cluster-unreachable" for e in events), timeout=60)
        r = await http.get(f"{env.base_url}/readyz")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ready"}


def _exec_kubeconfig(env: Env, gate: Path) -> Path:
    """A kubeconfig whose credentials come from an exec plugin that waits until ``gate`` exists.

    Loading it (what setting up the cluster's client does) takes as long as the test wants.
    """
    plugin = env.root / "credential-plugin"
    plugin.write_text(
        "#!/bin/sh\n"
        f'for i in $(seq 600); do [ -e "{gate}" ] && break; sleep 0.1; done\n'
        'echo \'{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",'
        ' "status": {"token": "t"}}\'\n'
    )
    plugin.chmod(0o755)
    kubeconfig = env.root / "exec.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{free_port()}', insecure-skip-tls-verify: true}}}}]\n"
        f"users: [{{name: u, user: {{exec: {{apiVersion: client.authentication.k8s.io/v1beta1, command: '{plugin}'}}}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return kubeconfig


async def test_ready_before_the_clusters_are_set_up(env: Env, http: httpx.AsyncClient, tmp_path: Path) -> None:
    """/readyz is 200 once every app has its runner; the clusters' clients are set up after,
    and systemd hears READY=1 only then (docs/operations.md, "Start-up and readiness")."""
    gate = env.root / "gate"
    repo = GitRepo(env.root, "app")
    repo.commit({"cm.yaml": configmap("settings", a="1")})
    config = env.write(
        env.daemon_toml()
        + f'[clusters.slow]\nkubeconfig = "{_exec_kubeconfig(env, gate)}"\n\n'
        + f'[apps.web]\ncluster = "slow"\nnamespace = "web"\nsource = {{ type = "git", url = "{repo.url}", ref = "main" }}\n'
    )
    sock = NotifySocket(str(tmp_path / "notify"))
    daemon = Daemon(config, env.plugins, systemd=SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify")}))
    try:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(daemon.run, name="daemon")
                with anyio.fail_after(30):  # the credential plugin waits for the gate: not for this
                    await daemon.accepting.wait()
                r = await http.get(f"{env.base_url}/readyz")
                assert r.status_code == 200, r.text
                r = await http.post(f"{env.base_url}/api/v1/apps/web/refresh", headers={"Authorization": f"Bearer {API_TOKEN}"})
                assert r.status_code == 202, r.text  # the app is there, its task not yet
                assert not daemon.ready.is_set() and daemon.pool is None
                assert not any(m.get("READY") == "1" for m in sock.drain())
                gate.touch()
                await daemon.ready.wait()
                assert daemon.pool is not None
                assert [m["READY"] for m in sock.drain() if "READY" in m] == ["1"]
                daemon.stop()
    finally:
        gate.touch()
        sock.close()


async def test_a_cluster_that_cannot_be_set_up_stops_the_start(env: Env, tmp_path: Path) -> None:
    """The kubeconfig loader's own error, as before the clusters were set up after ready: no
    exception group from the task groups it went through, and no READY=1 for systemd."""
    kubeconfig = env.root / "broken.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    config = env.write(
        env.daemon_toml()
        + f'[clusters.broken]\nkubeconfig = "{kubeconfig}"\ncontext = "missing-context"\n\n'
        + '[apps.web]\ncluster = "broken"\nnamespace = "web"\n'
        + f'source = {{ type = "git", url = "{(env.root / "none.git").as_uri()}", ref = "main" }}\n'
    )
    sock = NotifySocket(str(tmp_path / "notify"))
    daemon = Daemon(config, env.plugins, systemd=SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify")}))
    try:
        with anyio.fail_after(60), pytest.raises(Exception) as info:
            await daemon.run()
    finally:
        sock.close()
    assert not isinstance(info.value, BaseExceptionGroup), repr(info.value)
    assert "missing-context" in str(info.value)
    assert not daemon.ready.is_set()
    assert not any(m.get("READY") == "1" for m in sock.messages)


async def test_clusters_stay_open_until_every_app_task_has_ended(env: Env) -> None:
    """Cancelled from outside, the daemon closes its clusters' clients only after every app's
    task has ended: an app finishing a shielded step (a sync's last writes) still has them."""
    kubeconfig = _down_kubeconfig(env)
    config = env.write(
        env.daemon_toml()
        + f'[clusters.down]\nkubeconfig = "{kubeconfig}"\n\n'
        + '[apps.web]\ncluster = "down"\nnamespace = "web"\n'
        + f'source = {{ type = "git", url = "{(env.root / "none.git").as_uri()}", ref = "main" }}\n'
    )
    client_open_at_end: list[bool] = []

    class Finishing(Daemon):
        async def _run_app(self, running: Any) -> None:
            try:
                await super()._run_app(running)
            finally:
                with anyio.CancelScope(shield=True):  # a shielded step that outlives the cancel
                    await anyio.sleep(0.5)
                    assert self.pool is not None
                    client_open_at_end.append(self.pool.get("down").client.is_open)

    daemon = Finishing(config, env.plugins, systemd=SystemdNotifier({}))
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run, name="daemon")
            await daemon.ready.wait()
            tg.cancel_scope.cancel()
    assert client_open_at_end == [True]


async def test_settled_once_every_app_has_reconciled(env: Env) -> None:
    """``Daemon.settled`` (and ``on_settled``, once) comes after every app's first reconcile,
    failed ones included: ``gitopsd run`` freezes what the converge built at that moment."""
    kubeconfig = _down_kubeconfig(env)
    repo = GitRepo(env.root, "app")
    repo.commit({"cm.yaml": configmap("settings", a="1")})
    apps = "".join(
        f'[apps.{name}]\ncluster = "down"\nnamespace = "{name}"\n'
        f'source = {{ type = "git", url = "{repo.url if name != "three" else (env.root / "none.git").as_uri()}", ref = "main" }}\n\n'
        for name in ("one", "two", "three")
    )
    config = env.write(env.daemon_toml() + f'[clusters.down]\nkubeconfig = "{kubeconfig}"\n\n' + apps)
    seen: list[dict[str, int]] = []

    def settled(daemon: Daemon) -> None:
        seen.append({name: r.runner.passes for name, r in daemon.apps.items()})

    daemon = Daemon(config, env.plugins, systemd=SystemdNotifier({}), on_settled=settled)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run, name="daemon")
            await daemon.settled.wait()
            await anyio.sleep(1.5)  # a second look would call it again
            tg.cancel_scope.cancel()
    assert len(seen) == 1 and set(seen[0]) == {"one", "two", "three"}
    assert all(count >= 1 for count in seen[0].values()), seen
