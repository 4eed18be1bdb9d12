#!/usr/bin/env bash
# The whole test suite: build every binary, run unit and integration tests as root,
# then fail if anything the tests made is still on the machine. Then the cgroup v2
# lane in a VM (integration/vm/): it needs qemu-system-x86 (deploy/packages.sh test
# installs it); BERTH_VM_LANE=skip leaves it out.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/packages.sh test
cargo build --release --workspace --bins
cargo build --release --features crash-points --bin berthd --target-dir target/crash
shims/runtime/build-static.sh
# What an earlier, interrupted run left on this machine is reported, not blamed on this one.
baseline=$(mktemp)
trap 'rm -f "$baseline"' EXIT
integration/leak-check.sh --record "$baseline"
cargo test --release --workspace -- --test-threads=2
integration/leak-check.sh --baseline "$baseline"
if [ "${BERTH_VM_LANE:-run}" = skip ]; then
  echo "test.sh: BERTH_VM_LANE=skip: the cgroup v2 VM lane is left out" >&2
else
  integration/vm/run.sh integration/vm/lane.sh
fi
