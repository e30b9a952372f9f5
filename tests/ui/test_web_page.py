"""The web page of a real daemon, in a real browser: the sandbox cluster, real kubectl, live updates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gitopsd.sandbox import Sandbox
from tests.conftest import require_tool
from tests.integration.ops.conftest import API_TOKEN, READ_TOKEN, Env, GitRepo, configmap, running

from .conftest import login, screenshot

pytestmark = pytest.mark.anyio

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        },
    },
}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"password": "hunter2-ui"}}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        yield sb


def config_text(env: Env, sandbox: Sandbox, *, self_heal: bool) -> str:
    for name, files in {
        "web": {"deploy.yaml": json.dumps(DEPLOYMENT), "secret.yaml": json.dumps(SECRET), "cm.yaml": configmap("web-settings", v="1")},
        "cfg": {"cm.yaml": configmap("cfg", v="1")},
        "broken": {"bad.yaml": "kind: [unclosed"},
    }.items():
        folder = env.root / "apps" / name
        folder.mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            (folder / rel).write_text(text)
    apps = "".join(
        f'[apps.{name}]\ncluster = "sb"\nnamespace = "{name}"\nsource = {{type = "local", path = "apps/{name}"}}\n'
        + ("" if name != "web" else f"self_heal = {'true' if self_heal else 'false'}\n")
        for name in ("web", "cfg", "broken")
    )
    return env.daemon_toml(read_token=True) + f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n' + apps


async def kubectl(sandbox: Sandbox, *args: str) -> str:
    binary = require_tool("kubectl")
    result = await anyio.run_process(
        [binary, "--kubeconfig", str(sandbox.kubeconfig), *args], check=False, env={"HOME": str(Path(sandbox.kubeconfig).parent)}
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def eventually(predicate: Any, timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(0.1)


async def text_of(page: Any, selector: str) -> str:
    return " ".join((await page.inner_text(selector)).split()) if await page.locator(selector).count() else ""


async def test_operator_sees_drift_diff_and_heals_it_live(tmp_path: Path, sandbox: Sandbox, browser: Any) -> None:
    env = Env(tmp_path)
    config = env.write(config_text(env, sandbox, self_heal=False))
    async with running(env, config) as daemon:
        await eventually(lambda: _async(daemon.apps["web"].runner.status.health == "Healthy"
                                        and daemon.apps["cfg"].runner.status.last_result == "succeeded"
                                        and daemon.apps["broken"].runner.status.last_result == "failed"), 60)
        base = env.base_url
        page = await browser.new_page(viewport={"width": 1280, "height": 900})

        # a wrong token is refused; the API token logs in
        await page.goto(base + "/ui/")
        await page.fill("#token", API_TOKEN + "x")
        await page.press("#token", "Enter")
        assert "not valid" in await text_of(page, "#login-error")
        await page.fill("#token", API_TOKEN)
        await page.press("#token", "Enter")
        await page.wait_for_url(base + "/ui/")
        assert await page.eval_on_selector_all("#apps tbody tr", "rs => rs.map(r => r.dataset.app)") == ["broken", "web", "cfg"] or \
            (await page.locator("#apps tbody tr").first.get_attribute("data-app")) == "broken"  # worst first
        assert await page.locator("#apps tbody tr").count() == 3
        assert "failed 1" in await text_of(page, "#counts")

        # filter by text and by cluster
        await page.fill("#f-q", "cfg")
        assert await page.locator("#apps tbody tr:not([hidden])").count() == 1
        await page.fill("#f-q", "")
        await page.select_option("#f-cluster", "sb")
        assert await page.locator("#apps tbody tr:not([hidden])").count() == 3

        # open the app: its objects, synced and healthy
        await page.click("tr[data-app='web'] td.name a")
        await page.wait_for_url(base + "/ui/apps/web")
        deploy = page.locator("tr[data-object='Deployment.apps web/web']")
        assert "Synced" in await deploy.inner_text() and "Healthy" in await deploy.inner_text()
        assert await page.locator("tr[data-object]").count() == 4  # with the auto-created Namespace
        await page.wait_for_selector("#live:not([hidden])")

        # kubectl scale: with self-heal off the drift stays, and the page shows it without a reload
        await kubectl(sandbox, "-n", "web", "scale", "deployment/web", "--replicas=5")
        await eventually(lambda: _contains(page, "tr[data-object='Deployment.apps web/web']", "OutOfSync"))
        diff = await page.inner_text("details.diff pre")
        assert "-  replicas: 5" in diff and "+  replicas: 2" in diff, diff
        assert await page.locator("details.diff pre .dd").count() >= 1  # coloured removed lines
        assert "hunter2" not in await page.content()
        assert await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
        await screenshot(page, "app", full_page=True)

        # sync (confirmed) heals it: the page turns Synced live
        await page.click(".actions a:text-is('Sync')")
        await page.wait_for_url(f"{base}/ui/apps/web/confirm?action=sync")
        await page.click("#confirm")
        await page.wait_for_url(f"{base}/ui/apps/web?done=sync")
        await eventually(lambda: _contains(page, "tr[data-object='Deployment.apps web/web']", "Synced"))
        await eventually(lambda: _contains(page, "#h-diff", "0"))
        live = await kubectl(sandbox, "-n", "web", "get", "deployment/web", "-o", "jsonpath={.spec.replicas}")
        assert live == "2"

        # turn self-heal on (config reload): the next drift heals by itself, seen live
        env.path.write_text(config_text(env, sandbox, self_heal=True))
        await daemon.reload_from_file()
        # the restarted app's page follows by itself (a live update or a reload of its own)
        await eventually(lambda: _absent(page, ".flag-noheal"))
        assert await page.locator(".app-head h1").inner_text() == "web"
        await page.wait_for_selector("#live:not([hidden])")
        await kubectl(sandbox, "-n", "web", "scale", "deployment/web", "--replicas=4")
        await eventually(lambda: _contains(page, "ol.events", "drift-corrected"))

        # refresh (confirmed): accepted, and the sync it starts shows up in the events live
        await page.click(".actions a:text-is('Refresh')")
        await page.click("#confirm")
        await page.wait_for_url(f"{base}/ui/apps/web?done=refresh")
        assert "Refresh requested" in await text_of(page, "#done")
        await eventually(lambda: _contains(page, "ol.events", "(refresh)"))
        assert "refresh" in await text_of(page, "table.history")

        # log out: the page, the live stream and the old session cookie are refused
        cookies = await page.context.cookies()
        await page.click("form.logout button")
        await page.wait_for_url(base + "/ui/login")
        await page.goto(base + "/ui/apps/web")
        assert "/ui/login" in page.url
        async with httpx.AsyncClient(base_url=base, cookies={c["name"]: c["value"] for c in cookies}) as client:
            assert (await client.get("/ui/apps/web")).status_code == 303
            assert (await client.get("/ui/events")).status_code == 401


async def test_read_token_is_read_only_and_forms_are_csrf_safe(tmp_path: Path, sandbox: Sandbox, browser: Any) -> None:
    env = Env(tmp_path)
    config = env.write(config_text(env, sandbox, self_heal=True))
    async with running(env, config) as daemon:
        base = env.base_url
        page = await browser.new_page()
        await login(page, base, READ_TOKEN)
        await page.goto(base + "/ui/apps/cfg")
        assert await page.locator(".actions").count() == 0
        assert "Read-only" in await text_of(page, ".readonly")
        before = daemon.apps["cfg"].runner.status.reconciles
        cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
        csrf = await page.get_attribute("form.logout input[name=csrf]", "value")
        async with httpx.AsyncClient(base_url=base, cookies=cookies) as client:
            # a read session cannot act, even with its own CSRF token
            r = await client.post("/ui/apps/cfg/action", data={"action": "sync", "csrf": csrf})
            assert r.status_code == 403 and "Read-only" in r.text
        # an operator session: no CSRF token, a wrong one, or a foreign Origin is refused
        page2 = await browser.new_page()
        await login(page2, base, API_TOKEN)
        cookies = {c["name"]: c["value"] for c in await page2.context.cookies()}
        csrf = await page2.get_attribute("form.logout input[name=csrf]", "value")
        assert cookies["gitopsd_session"] not in (API_TOKEN, READ_TOKEN)  # the cookie holds a session id, not the token
        async with httpx.AsyncClient(base_url=base, cookies=cookies) as client:
            for data, headers in (
                ({"action": "sync"}, {}),
                ({"action": "sync", "csrf": csrf + "x"}, {}),
                ({"action": "sync", "csrf": csrf}, {"Origin": "http://evil.example"}),
            ):
                r = await client.post("/ui/apps/cfg/action", data=data, headers=headers)
                assert r.status_code == 403 and "CSRF" in r.text
            await anyio.sleep(1.0)
            assert daemon.apps["cfg"].runner.status.reconciles == before  # nothing ran
            r = await client.post("/ui/apps/cfg/action", data={"action": "sync", "csrf": csrf}, headers={"Origin": base})
            assert r.status_code == 303
        await eventually(lambda: _async(daemon.apps["cfg"].runner.status.reconciles > before))
        set_cookie = next(c for c in await page2.context.cookies() if c["name"] == "gitopsd_session")
        assert set_cookie["httpOnly"] and set_cookie["sameSite"] == "Strict"


async def _async(value: bool) -> bool:
    return value


async def _contains(page: Any, selector: str, text: str) -> bool:
    return text in await text_of(page, selector)


async def _absent(page: Any, selector: str) -> bool:
    try:
        return await page.locator(selector).count() == 0
    except Exception:  # the page is navigating: ask again
        return False


async def test_suspend_resume_and_rollback_from_the_history(tmp_path: Path, sandbox: Sandbox, browser: Any) -> None:
    env = Env(tmp_path)
    repo = GitRepo(tmp_path, "deploy")
    first_sha = repo.commit({"cm.yaml": configmap("cfg", v="1")})
    config = env.write(
        env.daemon_toml() + f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n'
        f'[apps.cfg]\ncluster = "sb"\nnamespace = "cfg"\nsource = {{type = "git", url = "{repo.url}", ref = "main"}}\n'
    )
    async with running(env, config) as daemon:
        runner = daemon.apps["cfg"].runner
        await eventually(lambda: _async(runner.status.last_result == "succeeded"), 60)
        first = runner.status.revision
        assert first.endswith(first_sha)
        base = env.base_url
        page = await browser.new_page()
        await login(page, base, API_TOKEN)
        await page.goto(base + "/ui/apps/cfg")
        await page.wait_for_selector("#live:not([hidden])")

        # a new commit, applied after a refresh from the page
        repo.commit({"cm.yaml": configmap("cfg", v="2")})
        await page.click(".actions a:text-is('Refresh')")
        await page.click("#confirm")
        await eventually(lambda: _async(runner.status.revision not in ("", first)), 60)
        await eventually(lambda: _contains(page, "table.history", "refresh"))

        # roll back to the first revision: a button on its history row, then a confirmation
        await page.click(f"table.history a.button[href*='{first_sha[:12]}']")
        assert first in await text_of(page, ".confirm")
        await page.click("#confirm")
        await page.wait_for_url(f"{base}/ui/apps/cfg?done=rollback")
        await eventually(lambda: _contains(page, ".app-head", "pinned to"))
        await eventually(lambda: _async(runner.status.revision == first), 60)
        assert await kubectl(sandbox, "-n", "cfg", "get", "configmap/cfg", "-o", "jsonpath={.data.v}") == "1"

        # suspend, then resume (which also clears the rollback pin and follows main again)
        await page.click(".actions a:text-is('Suspend')")
        await page.click("#confirm")
        await eventually(lambda: _contains(page, ".app-head", "suspended"))
        assert runner.status.suspended
        await page.click(".actions a:text-is('Resume')")
        await page.click("#confirm")
        await eventually(lambda: _async(not runner.status.suspended and not runner.status.pinned_revision))
        await eventually(lambda: _absent(page, ".app-head .flag-pinned"))
        await eventually(lambda: _async(runner.status.revision not in ("", first)), 60)
