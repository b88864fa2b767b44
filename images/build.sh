#!/usr/bin/env bash
# Build the runner images with the tags the topology names (images: in
# src/flywheel_runtime/topology/topology.yaml).  Usage: images/build.sh [TARGET...]
# (default: every target).  Extra docker flags go in $DOCKER_BUILD_FLAGS; the nix
# target needs $NIX_INSTALLER_SHA256 (the pinned Determinate installer's sha256).
# Production path (upstream bases, BuildKit).  Offline, on debootstrap bases:
#   .venv/bin/python -m flywheel_runtime.harness.kind.runner_images [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(nix docker dind kvm gpu)
args=()
[ -z "${NIX_INSTALLER_SHA256:-}" ] || args+=(--build-arg "NIX_INSTALLER_SHA256=$NIX_INSTALLER_SHA256")
for t in "${targets[@]}"; do
  if [ "$t" = gpu ] && [ ! -f canaries/dawn/node_modules/webgpu/package.json ]; then
    # The GPU image COPYs Dawn's bindings as npm installed them here.
    (cd canaries/dawn && npm ci --no-audit --no-fund)
  fi
  tag=$("$PY" -c 'import sys; from flywheel_runtime.topology import load; print(load().images[sys.argv[1]])' "$t")
  echo "==> $t -> $tag" >&2
  # shellcheck disable=SC2086
  docker build ${DOCKER_BUILD_FLAGS:-} "${args[@]}" -f images/Dockerfile --target "$t" -t "$tag" .
done
