#!/usr/bin/env bash
# The baseline: the loop a person would script on a bastion host instead of running gitopsd.
# One round: pull the repository, then apply every app with server-side apply, one after the other.
#   plain YAML -> kubectl apply --server-side -f DIR
#   Kustomize  -> kubectl apply --server-side -k DIR
#   Helm chart -> helm template APP DIR -n APP | kubectl apply --server-side -f -
# Usage: baseline.sh CHECKOUT   (KUBECONFIG and PATH come from the environment)
# Exit code: the number of apps whose apply failed (capped at 100).
set -u
cd "$1"
git pull -q --ff-only || exit 100
failed=0
for dir in apps/*/; do
  app=$(basename "$dir")
  if [ -f "$dir/kustomization.yaml" ]; then
    kubectl apply --server-side --validate=false -k "$dir" >/dev/null || failed=$((failed + 1))
  elif [ -f "$dir/Chart.yaml" ]; then
    helm template "$app" "$dir" --namespace "$app" \
      | kubectl apply --server-side --validate=false -f - >/dev/null || failed=$((failed + 1))
  else
    kubectl apply --server-side --validate=false -f "$dir" >/dev/null || failed=$((failed + 1))
  fi
done
[ "$failed" -gt 100 ] && failed=100
exit "$failed"
