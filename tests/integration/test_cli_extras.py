"""`gitopsd --version`, shell completion, the man page and the User-Agent of outgoing requests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gitopsd import USER_AGENT, PluginContext, __version__
from gitopsd.testing.plugin import HTTPServer

ROOT = Path(__file__).resolve().parents[2]


def gitopsd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitopsd", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False,
    )


def test_version_matches_pyproject() -> None:
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == __version__
    assert USER_AGENT == f"gitopsd/{__version__}"
    result = gitopsd("--version")
    assert (result.returncode, result.stdout) == (0, f"gitopsd, version {__version__}\n")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_for_each_shell(shell: str) -> None:
    result = gitopsd("completion", shell)
    assert result.returncode == 0, result.stderr
    assert "_GITOPSD_COMPLETE" in result.stdout and f"{shell}_complete" in result.stdout


def test_completion_completes_commands_and_options() -> None:
    """What the bash script asks gitopsd at a TAB, answered by click's machinery."""
    env = {"_GITOPSD_COMPLETE": "bash_complete", "COMP_WORDS": "gitopsd do", "COMP_CWORD": "1"}
    result = gitopsd(env=env)
    assert result.stdout.split() == ["plain,doctor"], result.stderr
    env = {"_GITOPSD_COMPLETE": "bash_complete", "COMP_WORDS": "gitopsd doctor --j", "COMP_CWORD": "2"}
    assert gitopsd(env=env).stdout.split() == ["plain,--json"]
    env = {"_GITOPSD_COMPLETE": "bash_complete", "COMP_WORDS": "gitopsd completion f", "COMP_CWORD": "2"}
    assert gitopsd(env=env).stdout.split() == ["plain,fish"]


def test_man_page_lists_every_command_and_renders(tmp_path: Path) -> None:
    from gitopsd.cli.main import cli

    result = gitopsd("man")
    assert result.returncode == 0, result.stderr
    page = result.stdout
    assert page.startswith(".TH GITOPSD 1 ") and f'"gitopsd {__version__}"' in page
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS", "FILES"):
        assert f"\n.SH {section}\n" in page
    import click

    for name in cli.list_commands(click.Context(cli)):
        assert f"\\fBgitopsd {name}\\fR" in page, name
    groff = shutil.which("groff")
    if groff is None:
        assert os.environ.get("CI") != "true", "groff is missing (.ci/run installs groff-base)"
        pytest.skip("groff not installed")
    (tmp_path / "gitopsd.1").write_text(page)
    text = subprocess.run(
        [groff, "-man", "-Tutf8", "-P-c", "-P-b", "-P-u", "-ww", str(tmp_path / "gitopsd.1")],
        capture_output=True, text=True, check=True,
    )
    assert text.stderr == "", text.stderr  # -ww: every groff warning, none expected
    rendered = text.stdout
    assert "gitopsd doctor" in rendered and "--json" in rendered.replace("\u2010", "-")


@pytest.mark.anyio
async def test_helm_repository_requests_carry_the_user_agent(http_server: HTTPServer, tmp_path: Path) -> None:
    from gitopsd_plugins.helm import HelmChartOptions, HelmChartSource

    index = f"apiVersion: v1\nentries:\n  web:\n  - version: 1.0.0\n    digest: {'ab' * 32}\n    urls: [web-1.0.0.tgz]\n"
    http_server.reply("/charts/index.yaml", index)
    options = HelmChartOptions(repo=f"{http_server.url}/charts", chart="web", version="1.0.0", insecure=True)
    source = HelmChartSource(options, PluginContext(state_dir=tmp_path, config_dir=tmp_path))
    try:
        await source.latest_revision()
    finally:
        await source.aclose()
    assert [h["User-Agent"] for _, _, h, _ in http_server.requests] == [USER_AGENT]


@pytest.mark.anyio
async def test_git_over_http_sends_the_user_agent(tmp_path: Path) -> None:
    """git's own view of its config, as the source runs it: http.userAgent is ours."""
    from gitopsd_plugins._gitcmd import GitRunner

    runner = GitRunner("git", tmp_path)
    out = await runner("config", "--get", "http.userAgent")
    assert out.stdout.decode().strip() == USER_AGENT
