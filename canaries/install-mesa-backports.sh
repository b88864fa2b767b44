#!/usr/bin/env bash
# Mesa >= 25 lavapipe for the Dawn canary on Debian 12 (bookworm).
#
# Debian 12's Mesa 22.3 lavapipe lacks the sampled/storage-image array dynamic
# indexing features Dawn requires, so Dawn yields no adapter ("Vulkan
# shaderUniform*ArrayDynamicIndexing required.").  bookworm-backports carries
# Mesa 25.0, which Dawn accepts.  Idempotent: does nothing when Mesa >= 25 is
# already installed or the host is not bookworm.  Upgrades the Mesa stack
# (mesa-vulkan-drivers, its libdrm, and the matching GL/EGL/VA/VDPAU packages).
set -euo pipefail
want=25
have=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo 0)
if dpkg --compare-versions "$have" ge "$want"; then exit 0; fi
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ]; then
  echo "install-mesa-backports: not bookworm (${VERSION_CODENAME:-?}); leaving Mesa $have alone" >&2
  exit 0
fi
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
src=/etc/apt/sources.list.d/debian-backports.sources
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  # Same archive mirror the machine already uses for bookworm.
  uri=$(awk '/^URIs:/{u=$2} /^Suites:.*bookworm( |$)/{print u; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1=="deb" && $3=="bookworm"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || { echo "install-mesa-backports: no bookworm apt source to derive the backports mirror from" >&2; exit 1; }
  printf '%s\n' "Types: deb" "URIs: $uri" "Suites: bookworm-backports" \
    "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" | $sudo tee "$src" >/dev/null
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  -t bookworm-backports mesa-vulkan-drivers >/dev/null
# the stack must still work for everything else (wgpu, vulkan, probes)
vulkaninfo --summary >/dev/null 2>&1 || { echo "install-mesa-backports: vulkaninfo fails after the upgrade" >&2; exit 1; }
