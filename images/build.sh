#!/usr/bin/env bash
# Build the runner images with the tags the topology names (images: in
# src/flywheel_runtime/topology/topology.yaml).  Usage: images/build.sh [TARGET...]
# (default: every target).  Extra docker flags go in $DOCKER_BUILD_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(nix docker dind kvm gpu)
for t in "${targets[@]}"; do
  tag=$("$PY" -c 'import sys; from flywheel_runtime.topology import load; print(load().images[sys.argv[1]])' "$t")
  echo "==> $t -> $tag" >&2
  # shellcheck disable=SC2086
  docker build ${DOCKER_BUILD_FLAGS:-} -f images/Dockerfile --target "$t" -t "$tag" .
done
