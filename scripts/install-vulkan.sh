#!/usr/bin/env bash
# Installs a Vulkan driver Dawn (the `webgpu` package) can use on Debian bookworm: the loader and
# Mesa's drivers from bookworm-backports (Mesa 25; bookworm's own 22.3 lavapipe gives Dawn no
# adapter). Needs root. CI runs it; on a GPU machine the vendor's driver provides the ICD instead.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-vulkan: run as root (apt)"; exit 1; }
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || { echo "install-vulkan: written for Debian bookworm, this is ${PRETTY_NAME:-unknown}"; exit 1; }
list=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  # The same mirror as the existing bookworm entry.
  mirror=$(grep -rhs "^URIs:.*debian$\|^URIs:.*debian/$" /etc/apt/sources.list.d/*.sources | head -1 | awk '{print $2}')
  mirror=${mirror:-http://deb.debian.org/debian}
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" > "$list"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 > /dev/null
echo "install-vulkan: $(dpkg-query -W -f='mesa-vulkan-drivers ${Version}' mesa-vulkan-drivers)"
