#!/usr/bin/env bash
# Build the wheel and sdist, install the wheel into a clean venv (dependencies from the lock, no
# editable install, run from a temporary directory so the repository is not on sys.path) and run
# gitopsd from there as an operator would: --version, plugins, check, doctor, sandbox + sync.
# Usage: scripts/smoke-wheel.sh [--keep]   (--keep leaves the work directory for a look)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PYTHON=${PYTHON:-python3}
BUILD_PYTHON=${BUILD_PYTHON:-.venv/bin/python}   # has `build` and hatchling from requirements/dev-lock.txt
work=$(mktemp -d -t gitopsd-smoke.XXXXXX)
sandbox_pid=""
cleanup() {
  [ -n "$sandbox_pid" ] && kill "$sandbox_pid" 2>/dev/null && wait "$sandbox_pid" 2>/dev/null
  if [ "${1:-}" != "--keep" ]; then rm -rf "$work"; else echo "smoke-wheel: left $work"; fi
}
trap 'cleanup "${KEEP:-}"' EXIT
[ "${1:-}" = "--keep" ] && KEEP=--keep
step() { echo "smoke-wheel: $*"; }
fail() { echo "smoke-wheel: FAILED: $*" >&2; exit 1; }

step "python -m build (wheel + sdist, no isolation: the locked hatchling)"
"$BUILD_PYTHON" -m build --no-isolation --outdir "$work/dist" . >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; fail "build"; }
wheel=$(ls "$work"/dist/gitopsd-*.whl)
sdist=$(ls "$work"/dist/gitopsd-*.tar.gz)
step "built $(basename "$wheel") and $(basename "$sdist")"

step "wheel contents: the pytest kit, its entry point, and every non-.py file under gitopsd/"
"$PYTHON" - "$wheel" "$repo" <<'PY'
import os, sys, zipfile
wheel, repo = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    eps = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
missing = [n for n in ("gitopsd/testing/plugin.py", "gitopsd/cli/doctor.py", "gitopsd_plugins/git.py") if n not in names]
assert "[pytest11]" in eps and "gitopsd = gitopsd.testing.plugin" in eps, "pytest11 entry point missing"
for root, dirs, files in os.walk(os.path.join(repo, "gitopsd")):
    dirs[:] = [d for d in dirs if d != "__pycache__"]
    for f in files:
        rel = os.path.relpath(os.path.join(root, f), repo)
        if not f.endswith((".py", ".pyc")) and rel not in names:
            missing.append(rel)
assert not missing, f"not in the wheel: {missing}"
data = sorted(n for n in names if n.startswith("gitopsd/") and not n.endswith(".py"))
print(f"  {len(names)} files; package data: {', '.join(data) or 'none'}")
PY

step "clean venv: the locked runtime set (hashes checked), then the wheel without dependencies"
"$PYTHON" -m venv "$work/venv"
venv=$work/venv
"$venv/bin/python" -m pip install --quiet --require-hashes --no-deps --only-binary :all: -r requirements/lock.txt
"$venv/bin/python" -m pip install --quiet --no-deps "$wheel"
"$venv/bin/python" -m pip check >/dev/null || { "$venv/bin/python" -m pip check; fail "pip check"; }

mkdir -p "$work/run" && cd "$work/run"     # the repository is not on sys.path from here
g="$venv/bin/gitopsd"
where=$("$venv/bin/python" -c 'import gitopsd, gitopsd_plugins; print(gitopsd.__file__, gitopsd_plugins.__file__)')
case "$where" in *"$repo"*) fail "gitopsd imported from the repository: $where";; esac

step "gitopsd --version"
[ "$("$g" --version)" = "gitopsd, version $("$venv/bin/python" -c 'import gitopsd; print(gitopsd.__version__)')" ] || fail "--version"

step "gitopsd plugins lists the built-ins"
plugins=$("$g" plugins)
for p in local plain git kustomize helm_template helm oci slack webhook; do
  grep -q "^$p  (gitopsd " <<<"$plugins" || { echo "$plugins" >&2; fail "plugin $p not listed"; }
done

step "gitopsd check config.example.toml (its files stubbed, in a temporary copy)"
mkdir -p "$work/etc"
sed -e "s#/etc/gitopsd/#$work/etc/#g" -e "s#/var/lib/gitopsd#$work/state#g" "$repo/config.example.toml" >"$work/etc/config.toml"
"$venv/bin/python" - "$work/etc/config.toml" "$work/etc" <<'PY'
import os, sys, tomllib
config, etc = sys.argv[1], sys.argv[2]
def walk(v):
    if isinstance(v, dict):
        for x in v.values(): yield from walk(x)
    elif isinstance(v, list):
        for x in v: yield from walk(x)
    elif isinstance(v, str) and v.startswith(etc + "/"):
        yield v
for path in set(walk(tomllib.load(open(config, "rb")))):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("https://hooks.example.invalid/stub\n" if path.endswith("url") else "stub\n")
    os.chmod(path, 0o600)
PY
# The whole output first: grep -q stops reading at the match, and under pipefail the
# check's next write (SIGPIPE) would fail the step.
checked=$("$g" check -c "$work/etc/config.toml") || { echo "$checked"; fail "check"; }
grep -q ": ok (5 apps, 2 clusters, 2 notifiers)" <<<"$checked" || { echo "$checked"; fail "check"; }

step "gitopsd sandbox (from the wheel), then gitopsd sync of a local app into it"
"$g" sandbox --kubeconfig "$work/sandbox.kubeconfig" --rollout-delay 0.05 >"$work/sandbox.log" 2>&1 &
sandbox_pid=$!
for _ in $(seq 1 300); do [ -s "$work/sandbox.kubeconfig" ] && break; sleep 0.1; done
[ -s "$work/sandbox.kubeconfig" ] || { cat "$work/sandbox.log" >&2; fail "the sandbox did not start"; }
chmod 600 "$work/sandbox.kubeconfig"
mkdir -p "$work/app"
cat >"$work/app/settings.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: smoke
YAML
cat >"$work/smoke.toml" <<TOML
[daemon]
state_dir = "$work/smoke-state"

[clusters.sandbox]
kubeconfig = "$work/sandbox.kubeconfig"

[apps.web]
cluster = "sandbox"
namespace = "smoke"
source = { type = "local", path = "$work/app" }
render = { type = "plain" }
TOML
out=$("$g" sync -c "$work/smoke.toml" web) || { echo "$out" >&2; fail "sync"; }
grep -q "^created   ConfigMap smoke/settings" <<<"$out" && grep -q "^web: synced " <<<"$out" \
  || { echo "$out" >&2; fail "sync output"; }

step "gitopsd doctor on that config"
"$g" doctor -c "$work/smoke.toml" >"$work/doctor.out" || { cat "$work/doctor.out" >&2; fail "doctor"; }
grep -q "^ok   cluster sandbox access: may create, patch and delete" "$work/doctor.out" || { cat "$work/doctor.out" >&2; fail "doctor output"; }

step "gitopsd man and completion"
page=$("$g" man) && grep -q '^\.TH GITOPSD 1' <<<"$page" || fail "man"
script=$("$g" completion bash) && grep -q _GITOPSD_COMPLETE <<<"$script" || fail "completion"

echo "smoke-wheel: ok ($(basename "$wheel") installed from the lock in a clean venv)"
