#!/usr/bin/env bash
# System packages for the testbed (Debian 12). Idempotent: a second run installs nothing.
# QEMU comes from bookworm-backports: bookworm's 7.2 has no igb device.
set -euo pipefail

[[ $(id -u) -eq 0 ]] && SUDO= || SUDO=sudo
backports=/etc/apt/sources.list.d/bookworm-backports.sources
# line 2: building the minimal kernel from kernel-config/, and zstd for taking Debian's 6.12 out of its bzImage;
# line 3: the real clients copied into guests,
# the sshd (with its key generator) of guests reached over SSH, and the ssh a person uses to log in to one;
# line 4: building QEMU with the 82598 model (harness/provision/qemu.py; meson comes from PyPI into a venv)
packages=(qemu-system-x86 qemu-system-data busybox-static gcc libc6-dev make kmod python3-venv ca-certificates
          linux-source-6.1 bc flex bison libelf-dev libssl-dev xz-utils zstd patch
          iproute2 libnl-utils dropbear-bin openssh-client
          ninja-build pkg-config libglib2.0-dev libpixman-1-dev libslirp-dev zlib1g-dev)

qemu_ok() {  # igb arrived in QEMU 8.0; a snapshot restore maps its RAM with rom=off, new in 8.2
  local v
  v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null) &&
    dpkg --compare-versions "$v" ge 1:8.2
}
all_installed() {
  local status
  status=$(dpkg-query -W -f='${Status}\n' "${packages[@]}" 2>/dev/null) || return 1
  [[ -z $(grep -v 'install ok installed' <<<"$status") ]]
}

if qemu_ok && all_installed && [[ -f $backports ]]; then
  echo "setup: system packages present ($(qemu-system-x86_64 --version | head -n1))"
  exit 0
fi

if [[ ! -f $backports ]]; then
  echo "setup: enabling bookworm-backports"
  $SUDO tee "$backports" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}"
$SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-system-data
qemu_ok || { echo "setup: qemu-system-x86_64 has no igb device; need QEMU >= 8.2 from bookworm-backports" >&2; exit 1; }
echo "setup: $(qemu-system-x86_64 --version | head -n1)"
