#!/usr/bin/env bash
# The one list of Debian packages berth needs, and an idempotent installer for it.
#   deploy/packages.sh build   what `cargo build` of berth needs
#   deploy/packages.sh run     build, plus what berthd calls at run time
#   deploy/packages.sh test    run, plus what integration/test.sh drives (peers, clients)
#   deploy/packages.sh bench   test, plus the peers only the benchmarks drive (dockerd)
# Installs only what is missing; `apt-get update` runs only when something is.
# `deploy/packages.sh --list GROUP` prints the group's packages and installs nothing.
set -euo pipefail

build_packages=(
  protobuf-compiler libseccomp-dev libclang-dev libelf-dev zlib1g-dev pkg-config gcc libc6-dev
)
# berthd runs iptables/nft for NAT fallbacks, ip for diagnostics, and the CNI plugins
# when configured for CNI.
run_packages=(iproute2 nftables iptables containernetworking-plugins util-linux procps)
# The peers the tests compare against, the registry they push to, the image source, and
# the tools the tests check the kernel's view with.
test_packages=(
  busybox-static runc crun containerd docker-registry curl jq python3 python3-venv
  openssl qemu-system-x86 tini docker-compose apparmor
)
# Debian's dockerd 20.10 (with its containerd and runc), which bench_docker times berthd
# against.
bench_packages=(docker.io)

packages_for() {
  case "$1" in
    build) echo "${build_packages[@]}" ;;
    run) echo "${build_packages[@]}" "${run_packages[@]}" ;;
    test) echo "${build_packages[@]}" "${run_packages[@]}" "${test_packages[@]}" ;;
    bench) echo "${build_packages[@]}" "${run_packages[@]}" "${test_packages[@]}" "${bench_packages[@]}" ;;
    *) echo "deploy/packages.sh: unknown group '$1' (build, run, test or bench)" >&2; return 2 ;;
  esac
}

missing_from() {
  local package
  for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
      echo "$package"
    fi
  done
}

main() {
  if [ "${1:-}" = "--list" ]; then
    packages_for "${2:?group}"
    return
  fi
  local wanted missing
  wanted=$(packages_for "${1:?usage: deploy/packages.sh build|run|test|bench}")
  # shellcheck disable=SC2086
  missing=$(missing_from $wanted)
  if [ -z "$missing" ]; then
    return
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "deploy/packages.sh: missing Debian packages, and not root to install them:" $missing >&2
    return 1
  fi
  echo "deploy/packages.sh: installing" $missing >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

main "$@"
