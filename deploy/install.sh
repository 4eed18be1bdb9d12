#!/usr/bin/env bash
# Installs berth from a built tree: binaries to /usr/local/bin, the systemd unit, and
# the default config (kept if one exists). Run as root from the repository:
#   cargo build --release --workspace --bins && shims/runtime/build-static.sh && sudo deploy/install.sh
# (berth-runc is taken from target/static when that build is the newer one).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
install -d "$prefix/bin" /etc/berth /var/lib/berth
# berth-runc and berth-shim live on read-only bind mounts of themselves (see
# deploy/seal-binaries): take those off to replace the files, put them back after.
install -m 0755 deploy/seal-binaries "$prefix/bin/berth-seal-binaries"
"$prefix/bin/berth-seal-binaries" unmount "$prefix/bin"
for binary in berthd berthctl berth-shim berth-runc berth-pod-init; do
  source="target/release/$binary"
  if [ -x "target/static/$binary" ] && [ "target/static/$binary" -nt "$source" ]; then
    source="target/static/$binary"
  fi
  install -m 0755 "$source" "$prefix/bin/$binary"
done
# containerd finds shims by this name on its PATH.
ln -sf "$prefix/bin/berth-shim" "$prefix/bin/containerd-shim-berth-v2"
if [ ! -e /etc/berth/config.toml ]; then
  install -m 0644 deploy/config.toml /etc/berth/config.toml
fi
install -m 0644 deploy/berthd.service /etc/systemd/system/berthd.service
sed "s|@BINDIR@|$prefix/bin|g" deploy/berth-seal.service > /etc/systemd/system/berth-seal.service
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable berth-seal.service
  systemctl restart berth-seal.service
  systemctl enable --now berthd.service
  echo "berthd is running; see deploy/kubelet.md to point the kubelet at it"
else
  "$prefix/bin/berth-seal-binaries" mount "$prefix/bin"
  echo "installed; start berthd with: $prefix/bin/berthd"
fi
