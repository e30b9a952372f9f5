"""`gitopsd check` and `gitopsd render` with an appset that reads a real git repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.ops.conftest import Env, GitRepo, configmap

pytestmark = pytest.mark.integration


def gitopsd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitopsd", *args], capture_output=True, text=True, check=False)


def write_config(env: Env, repo: GitRepo, template_extra: str = "") -> Path:
    (env.root / "kc").write_text("")
    env.path.write_text(
        env.daemon_toml()
        + f"""
[clusters.east]
kubeconfig = "kc"
[clusters.west]
kubeconfig = "kc"

[appsets.svc]
generators = [{{type = "matrix", generators = [
  {{type = "git-directories", url = "{repo.url}", directories = ["apps/*"]}},
  {{type = "list", elements = [{{cluster = "east"}}, {{cluster = "west"}}]}},
]}}]
[appsets.svc.template]
name = "{{{{ path.basename }}}}-{{{{ cluster }}}}"
cluster = "{{{{ cluster }}}}"
namespace = "{{{{ path.basename }}}}"
source = {{type = "git", url = "{repo.url}", path = "{{{{ path }}}}"}}
{template_extra}
"""
    )
    return env.path


def test_check_fetches_counts_and_validates_generated_apps(env: Env) -> None:
    repo = GitRepo(env.root, "repo")
    repo.commit({f"apps/{n}/cm.yaml": configmap(f"cm-{n}") + "\n" for n in ("web", "api", "db")})
    path = write_config(env, repo)
    out = gitopsd("check", "-c", str(path))
    assert out.returncode == 0, out.stderr
    assert "(6 apps, 2 clusters" in out.stdout and "appsets.svc: 6 apps" in out.stdout
    out = gitopsd("check", "--no-fetch", "-c", str(path))
    assert out.returncode == 0 and "appsets.svc: not expanded (--no-fetch)" in out.stdout
    # the template is validated against the parameters the repository gives
    path = write_config(env, repo, 'notify = ["{{ path.owner }}"]')
    out = gitopsd("check", "-c", str(path))
    assert out.returncode == 1
    assert "appsets.svc.template.notify[0]: undefined placeholder" in out.stderr and "owner" in out.stderr


def test_render_a_generated_app(env: Env) -> None:
    repo = GitRepo(env.root, "repo")
    repo.commit({"apps/web/cm.yaml": configmap("cm-web", a="1") + "\n", "apps/api/cm.yaml": configmap("cm-api") + "\n"})
    path = write_config(env, repo)
    out = gitopsd("render", "-c", str(path), "web-west")
    assert out.returncode == 0, out.stderr
    assert "name: cm-web" in out.stdout and "kind: Namespace\nmetadata:\n  name: web\n" in out.stdout and "cm-api" not in out.stdout
    out = gitopsd("render", "-c", str(path), "web-north")
    assert out.returncode == 1 and "no app named 'web-north'" in out.stderr and "web-west" in out.stderr


def test_git_files_fields_become_parameters(env: Env) -> None:
    repo = GitRepo(env.root, "repo")
    repo.commit(
        {
            "apps/web/cm.yaml": configmap("cm-web") + "\n",
            "targets/east/target.yaml": "cluster: east\nteam: {name: payments}\n",
            "targets/west/target.json": '[{"cluster": "west", "team": {"name": "search"}}]',
            "targets/README.md": "not matched\n",
        }
    )
    (env.root / "kc").write_text("")
    env.path.write_text(
        env.daemon_toml()
        + f"""
[clusters.east]
kubeconfig = "kc"
[clusters.west]
kubeconfig = "kc"
[appsets.teams]
generators = [{{type = "git-files", url = "{repo.url}", files = ["targets/*/target.yaml", "targets/*/target.json"]}}]
[appsets.teams.template]
name = "{{{{ team.name }}}}-{{{{ path.basename }}}}"
cluster = "{{{{ cluster }}}}"
namespace = "{{{{ team.name }}}}"
source = {{type = "git", url = "{repo.url}", path = "apps/web"}}
"""
    )
    out = gitopsd("check", "-c", str(env.path))
    assert out.returncode == 0, out.stderr
    assert "appsets.teams: 2 apps" in out.stdout
    out = gitopsd("render", "-c", str(env.path), "search-west")
    assert out.returncode == 0 and "name: search" in out.stdout, out.stderr
