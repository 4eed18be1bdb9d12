#!/usr/bin/env bash
# Builds berth and runs berthd in the foreground, from a fresh machine: installs the
# Debian packages the build and berthd need (deploy/packages.sh), builds every binary
# and the static berth-runc (the build the README's figures are about), then starts
# target/release/berthd with the arguments given. Run as root from the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/packages.sh run
cargo build --release --workspace --bins
shims/runtime/build-static.sh
exec target/release/berthd "$@"
