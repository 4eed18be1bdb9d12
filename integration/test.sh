#!/usr/bin/env bash
# The whole test suite: build every binary, run unit and integration tests as root,
# then fail if anything the tests made is still on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
cargo build --release --features crash-points --bin berthd --target-dir target/crash
shims/runtime/build-static.sh
cargo test --release --workspace -- --test-threads=2
integration/leak-check.sh
