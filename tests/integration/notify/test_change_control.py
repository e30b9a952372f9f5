"""Change control end to end: a daemon, the sandbox cluster over HTTPS, a real git repository,
and the loopback Slack stand-in with Socket Mode (approval buttons, slash commands, windows)."""

from __future__ import annotations

import contextlib
import json
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gitopsd.core.events import Event
from gitopsd.daemon.supervisor import Daemon
from gitopsd.plugin.hookspecs import hookimpl
from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager
from gitopsd.sandbox import Sandbox
from gitopsd.server.systemd import SystemdNotifier
from gitopsd_plugins._slack_blocks import APPROVE_ACTION, REJECT_ACTION
from tests.integration.ops.conftest import API_TOKEN, GitRepo, configmap, free_port

from .conftest import APP_TOKEN, TOKEN, Envelope, FakeServer

pytestmark = pytest.mark.anyio

ADMIN = "U0ADMIN"  # listed by ID
ONCALL = "U0ONCALL"  # allowed through the @platform-oncall group
NOBODY = "U0NOBODY"


class Recorder:
    """Every event, through the gitopsd_event hook (what any plugin sees)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def gitopsd_event(self, event: Event) -> None:
        self.events.append(event)

    def named(self, name: str, app: str = "web") -> list[Event]:
        return [e for e in self.events if e.name == name and e.app == app]


class FakeClock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        sb.write_kubeconfig(tmp_path / "kubeconfig")
        yield sb


def write_config(tmp_path: Path, fake: FakeServer, repo: GitRepo, *, approval: bool = True, extra: str = "") -> Path:
    (tmp_path / "bot").write_text(TOKEN + "\n")
    (tmp_path / "app").write_text(APP_TOKEN + "\n")
    (tmp_path / "api-token").write_text(API_TOKEN + "\n")
    gate = 'approval = { notifier = "ops", approvers = ["U0ADMIN", "@platform-oncall"], timeout = "4h" }' if approval else ""
    text = textwrap.dedent(f"""
        [daemon]
        state_dir = "{tmp_path / 'state'}"
        listen = "127.0.0.1:{free_port()}"
        api_token_file = "api-token"
        default_interval = "1h"
        shutdown_timeout = "10s"
        watch_config = false

        [clusters.sandbox]
        kubeconfig = "{tmp_path / 'kubeconfig'}"

        [notifiers.ops]
        type = "slack"
        token_file = "bot"
        app_token_file = "app"
        channel = "C0DEPLOYS"
        api_url = "{fake.api_url}"
        allowed = ["U0ADMIN", "@platform-oncall"]
        rate_per_second = 50
        dedupe_window = 0

        [apps.web]
        cluster = "sandbox"
        namespace = "web"
        source = {{ type = "git", url = "{repo.url}", ref = "main" }}
        notify = ["ops"]
        prune = true
        {gate}
        """)
    path = tmp_path / "config.toml"
    path.write_text(text + extra)
    return path


@contextlib.asynccontextmanager
async def daemon_running(config_path: Path, recorder: Recorder, clock: Callable[[], datetime] | None = None) -> AsyncIterator[Daemon]:
    plugins = PluginManager(builtins_only=True, plugins=[recorder])
    config = load_config(config_path, plugins.types)
    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    daemon = Daemon(config, plugins, systemd=SystemdNotifier({}), **kwargs)
    with anyio.fail_after(180):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run, name="daemon")
            await daemon.ready.wait()
            try:
                yield daemon
            finally:
                daemon.stop()


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 40.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.05)


async def live_configmap(sandbox: Sandbox, name: str = "settings") -> dict[str, Any] | None:
    import ssl

    context = ssl.create_default_context(cadata=sandbox.ca_pem.decode())
    async with httpx.AsyncClient(base_url=sandbox.url, verify=context, headers={"Authorization": f"Bearer {sandbox.token}"}) as client:
        response = await client.get(f"/api/v1/namespaces/web/configmaps/{name}")
    return response.json() if response.status_code == 200 else None


def click(user: str, app: str, revision: str, action: str = APPROVE_ACTION) -> dict[str, Any]:
    """A block_actions payload as Slack sends it for a button click."""
    value = json.dumps({"app": app, "revision": revision})
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "channel": {"id": "C0DEPLOYS"},
        "actions": [{"action_id": action, "block_id": "gitopsd_approval", "value": value, "type": "button"}],
    }


def slash(user: str, text: str) -> dict[str, Any]:
    return {"command": "/gitopsd", "text": text, "user_id": user, "channel_id": "C0DEPLOYS", "response_url": "http://unused"}


def approval_messages(fake: FakeServer) -> list[dict[str, Any]]:
    return [
        r.json for r in fake.on("/api/chat.postMessage") if any(b.get("type") == "actions" for b in r.json.get("blocks", []))
    ]


def ephemerals(fake: FakeServer, user: str) -> list[str]:
    return [r.json["text"] for r in fake.on("/api/chat.postEphemeral") if r.json["user"] == user]


async def acked_in_time(fake: FakeServer, envelope: Envelope) -> None:
    await fake.socket.wait_acked(envelope)
    assert envelope.acked_at is not None and envelope.acked_at - envelope.sent_at < 3.0


async def test_an_approval_app_waits_shows_the_diff_and_applies_once_approved(
    tmp_path: Path, sandbox: Sandbox, fake: FakeServer
) -> None:
    repo = GitRepo(tmp_path, "deploy")
    sha = repo.commit({"app.yaml": configmap("settings", greeting="hello")})
    revision = f"main@sha1:{sha}"
    recorder = Recorder()
    async with daemon_running(write_config(tmp_path, fake, repo), recorder) as daemon:
        runner = daemon.apps["web"].runner
        await fake.socket.wait_connected()
        await wait_for(lambda: recorder.named("approval-requested"), "the approval request")
        assert runner.status.hold == "awaiting-approval" and runner.status.hold_revision == revision
        assert await live_configmap(sandbox) is None  # nothing applied without a yes
        await wait_for(lambda: approval_messages(fake), "the approval message in Slack")
        request = approval_messages(fake)[0]
        text = json.dumps(request["blocks"])
        assert "ConfigMap web/settings" in text and "Created" in text  # the diff summary
        assert "change" in text and "t &lt;t@example.com&gt;" in text  # commit message and author
        buttons = next(b for b in request["blocks"] if b["type"] == "actions")["elements"]
        assert [b["action_id"] for b in buttons] == [APPROVE_ACTION, REJECT_ACTION]

        # Someone not listed clicks: refused, ephemerally, and nothing moves.
        refused = await fake.socket.send("interactive", click(NOBODY, "web", revision))
        await acked_in_time(fake, refused)
        await wait_for(lambda: ephemerals(fake, NOBODY), "the refusal")
        assert "not allowed" in ephemerals(fake, NOBODY)[0]
        assert recorder.named("approval-refused") and not recorder.named("approval-granted")
        # Another reconcile (a push webhook, the interval) does not apply it either.
        before = runner.status.reconciles
        runner.trigger.fire("webhook")
        await wait_for(lambda: runner.status.reconciles > before and not daemon.apps["web"].runner.busy.locked(), "a reconcile")
        assert await live_configmap(sandbox) is None and runner.status.hold == "awaiting-approval"

        # An on-call member (through the @platform-oncall group) approves: applied.
        approved = await fake.socket.send("interactive", click(ONCALL, "web", revision))
        await acked_in_time(fake, approved)
        await wait_for(lambda: runner.status.revision == revision, "the approved revision applied")
        live = await live_configmap(sandbox)
        assert live is not None and live["data"] == {"greeting": "hello"}
        assert runner.status.hold == ""
        granted = recorder.named("approval-granted")
        assert len(granted) == 1 and granted[0].data["by"] == f"slack:{ONCALL}"
        await fake.wait_for("/api/chat.update", 1)
        update = fake.on("/api/chat.update")[0].json
        assert update["ts"] and "Approved by <@U0ONCALL>" in json.dumps(update["blocks"])
        assert not any(b["type"] == "actions" for b in update["blocks"])  # buttons gone

        # A second approval (another click) applies nothing more.
        again = await fake.socket.send("interactive", click(ADMIN, "web", revision))
        await acked_in_time(fake, again)
        await wait_for(lambda: ephemerals(fake, ADMIN), "the answer to the second click")
        assert "already approved" in ephemerals(fake, ADMIN)[0]
        await anyio.sleep(0.5)
        assert len(recorder.named("approval-granted")) == 1
        assert len(recorder.named("sync-started")) == 1

        # Self-heal of the approved revision needs no approval.
        await sandbox_patch(sandbox, {"data": {"greeting": "tampered"}})
        await wait_for(lambda: recorder.named("drift-corrected"), "self-heal")
        assert (await live_configmap(sandbox) or {}).get("data") == {"greeting": "hello"}
        assert len(recorder.named("approval-requested")) == 1


async def sandbox_patch(sandbox: Sandbox, patch: dict[str, Any]) -> None:
    import ssl

    context = ssl.create_default_context(cadata=sandbox.ca_pem.decode())
    async with httpx.AsyncClient(base_url=sandbox.url, verify=context, headers={"Authorization": f"Bearer {sandbox.token}"}) as client:
        response = await client.patch(
            "/api/v1/namespaces/web/configmaps/settings",
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        response.raise_for_status()


async def test_a_newer_push_supersedes_a_pending_approval(tmp_path: Path, sandbox: Sandbox, fake: FakeServer) -> None:
    repo = GitRepo(tmp_path, "deploy")
    first = f"main@sha1:{repo.commit({'app.yaml': configmap('settings', greeting='one')})}"
    recorder = Recorder()
    config_path = write_config(tmp_path, fake, repo)
    async with daemon_running(config_path, recorder) as daemon:
        runner = daemon.apps["web"].runner
        await wait_for(lambda: recorder.named("approval-requested"), "the first request")
        await wait_for(lambda: approval_messages(fake), "the first request in Slack")
        second = f"main@sha1:{repo.commit({'app.yaml': configmap('settings', greeting='two')})}"
        runner.trigger.fire("webhook")  # what a push webhook does
        await wait_for(lambda: len(recorder.named("approval-requested")) == 2, "the second request")
        superseded = recorder.named("approval-superseded")
        assert [e.revision for e in superseded] == [first] and superseded[0].data["by"] == second
        await fake.wait_for("/api/chat.update", 1)
        assert "Superseded" in json.dumps(fake.on("/api/chat.update")[0].json["blocks"])
        assert runner.status.hold_revision == second

        # The old revision can no longer be approved (the API says 409, the CLI prints it).
        base = f"http://{daemon.config.daemon.listen}"
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        async with httpx.AsyncClient(base_url=base, headers=auth) as client:
            stale = await client.post("/api/v1/apps/web/approval/approve", json={"revision": first})
            assert stale.status_code == 409 and "not pending" in stale.json()["error"]
            assert await live_configmap(sandbox) is None
            ok = await client.post("/api/v1/apps/web/approval/approve", json={"revision": second[:17]})
            assert ok.status_code == 200, ok.text
        await wait_for(lambda: runner.status.revision == second, "the newer revision applied")
        assert (await live_configmap(sandbox) or {}).get("data") == {"greeting": "two"}

        # Reject: the app stays where it is.
        third = f"main@sha1:{repo.commit({'app.yaml': configmap('settings', greeting='three')})}"
        runner.trigger.fire("webhook")
        await wait_for(lambda: runner.status.hold_revision == third, "the third request")
        # While it waits, self-heal keeps the approved revision in place.
        await sandbox_patch(sandbox, {"data": {"greeting": "tampered"}})
        await wait_for(lambda: recorder.named("drift-corrected"), "self-heal while a request waits")
        assert (await live_configmap(sandbox) or {}).get("data") == {"greeting": "two"}
        rejected = await fake.socket.send("interactive", click(ADMIN, "web", third, REJECT_ACTION))
        await acked_in_time(fake, rejected)
        await wait_for(lambda: recorder.named("approval-rejected"), "the rejection")
        runner.trigger.fire("interval")
        await wait_for(lambda: runner.status.hold == "rejected", "status rejected")
        assert runner.status.revision == second
        assert (await live_configmap(sandbox) or {}).get("data") == {"greeting": "two"}


async def test_socket_dropped_mid_approval_reconnects_without_losing_the_click(
    tmp_path: Path, sandbox: Sandbox, fake: FakeServer
) -> None:
    repo = GitRepo(tmp_path, "deploy")
    revision = f"main@sha1:{repo.commit({'app.yaml': configmap('settings', greeting='hello')})}"
    recorder = Recorder()
    async with daemon_running(write_config(tmp_path, fake, repo), recorder) as daemon:
        runner = daemon.apps["web"].runner
        await fake.socket.wait_connected()
        await wait_for(lambda: runner.status.hold == "awaiting-approval", "the request")
        # Slack asks to reconnect: a new connection follows.
        await fake.socket.disconnect()
        await fake.socket.wait_connected(2)
        # The click goes out and the TCP connection dies right after it.
        envelope = await fake.socket.send("interactive", click(ADMIN, "web", revision), drop_after=True)
        await fake.socket.wait_connected(3)
        await fake.socket.wait_acked(envelope)
        await wait_for(lambda: runner.status.revision == revision, "the approved revision applied")
        await anyio.sleep(0.5)
        assert len(recorder.named("approval-granted")) == 1
        assert len(recorder.named("sync-started")) == 1
        # events_api envelopes are acknowledged too (and otherwise ignored).
        event = await fake.socket.send("events_api", {"event": {"type": "app_mention"}})
        await acked_in_time(fake, event)


async def test_slash_commands_are_restricted_logged_and_answered_in_the_channel(
    tmp_path: Path, sandbox: Sandbox, fake: FakeServer
) -> None:
    repo = GitRepo(tmp_path, "deploy")
    revision = f"main@sha1:{repo.commit({'app.yaml': configmap('settings', greeting='hello')})}"
    recorder = Recorder()
    async with daemon_running(write_config(tmp_path, fake, repo), recorder) as daemon:
        runner = daemon.apps["web"].runner
        await fake.socket.wait_connected()
        await wait_for(lambda: runner.status.hold == "awaiting-approval", "the request")

        def answers() -> list[str]:
            return [r.json["text"] for r in fake.on("/api/chat.postMessage") if "blocks" not in r.json]

        refused = await fake.socket.send("slash_commands", slash(NOBODY, "suspend web"))
        await acked_in_time(fake, refused)
        await wait_for(lambda: ephemerals(fake, NOBODY), "the refusal")
        assert not runner.status.suspended

        await fake.socket.send("slash_commands", slash(ADMIN, "status web"))
        await wait_for(lambda: len(answers()) == 1, "the status answer")
        assert "*web*" in answers()[0] and "awaiting-approval" in answers()[0]
        await fake.socket.send("slash_commands", slash(ONCALL, "approve web " + revision))
        await wait_for(lambda: runner.status.revision == revision, "approved by command")
        await fake.socket.send("slash_commands", slash(ADMIN, "suspend web"))
        await wait_for(lambda: runner.status.suspended, "suspended")
        await fake.socket.send("slash_commands", slash(ADMIN, "resume web"))
        await wait_for(lambda: not runner.status.suspended, "resumed")
        await fake.socket.send("slash_commands", slash(ADMIN, "sync web"))
        await fake.socket.send("slash_commands", slash(ADMIN, "frobnicate"))
        await wait_for(lambda: len(answers()) == 6, "every answer")
        assert "sync requested" in answers()[4] and "usage:" in answers()[5]
        # The last answer can reach Slack before its event reaches the recorder (the bus delivers
        # events on its own task).
        await wait_for(lambda: len([e for e in recorder.events if e.name == "chat-command"]) >= 7, "every chat-command event")
        commands = [e for e in recorder.events if e.name == "chat-command"]
        assert [(e.data["user"], e.data["command"], e.data["allowed"]) for e in commands] == [
            (NOBODY, "suspend web", False),
            (ADMIN, "status web", True),
            (ONCALL, f"approve web {revision}", True),
            (ADMIN, "suspend web", True),
            (ADMIN, "resume web", True),
            (ADMIN, "sync web", True),
            (ADMIN, "frobnicate", True),
        ]
        assert not any("chat-command" in json.dumps(r.json) for r in fake.on("/api/chat.postMessage"))


async def test_a_deny_window_holds_automatic_syncs_until_it_ends(tmp_path: Path, sandbox: Sandbox, fake: FakeServer) -> None:
    repo = GitRepo(tmp_path, "deploy")
    first = f"main@sha1:{repo.commit({'app.yaml': configmap('settings', greeting='one')})}"
    # Friday 23:00 UTC: inside the weekend freeze that opened at 22:00 and lasts 60 hours.
    clock = FakeClock(datetime(2026, 11, 27, 23, 0, tzinfo=UTC))
    window = textwrap.dedent("""
        [windows.weekend]
        schedule = "0 22 * * 5"
        duration = "60h"
        kind = "deny"
        apps = ["web*"]
        """)
    recorder = Recorder()
    config_path = write_config(tmp_path, fake, repo, approval=False, extra=window)
    async with daemon_running(config_path, recorder, clock) as daemon:
        runner = daemon.apps["web"].runner
        await wait_for(lambda: runner.status.hold == "window-closed", "the window hold")
        end = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
        assert runner.status.hold_until == end and "weekend" in runner.status.hold_message
        closed = recorder.named("sync-window-closed")
        assert len(closed) == 1 and (closed[0].data["window"], closed[0].data["until"]) == ("weekend", end.isoformat())
        assert await live_configmap(sandbox) is None
        # `gitopsd status` shows the open window.
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        async with httpx.AsyncClient(base_url=f"http://{daemon.config.daemon.listen}", headers=auth) as client:
            listing = (await client.get("/api/v1/apps")).json()
        assert [w["name"] for w in listing["windows"]] == ["weekend"]
        assert listing["apps"][0]["hold"]["state"] == "window-closed"
        # The runner sleeps until the window ends (capped by the interval).
        clock.now = end - timedelta(minutes=10)
        assert 590 <= runner._next_delay() <= 600
        # Time passes beyond the end; the timer fires: the sync runs.
        clock.now = end + timedelta(seconds=1)
        runner.trigger.fire("interval")
        await wait_for(lambda: runner.status.revision == first, "the sync after the window")
        assert runner.status.hold == ""
        assert (await live_configmap(sandbox) or {}).get("data") == {"greeting": "one"}
