#!/bin/sh
# The cgroup v2 lane, run inside the VM:  integration/vm/run.sh integration/vm/lane.sh
# Runs the prebuilt test executables (cargo test --release --no-run on the host) of
# what pure v2 changes: the runtime's v2 specifics and its cgroup, device, freezer and
# stats tests against berth-runc, runc and crun; the shim's task tests (pause, update,
# stats, OOM events); the CRI smoke test through berthd; AppArmor through the CRI. With BERTH_VM_CRITEST=1 and
# /opt/suites/bin/critest built, critest too (run `integration/critest.sh --fetch` on
# the host first: the guest has no network to download busybox with); BERTH_VM_CRITEST_ARGS
# adds critest flags (e.g. -ginkgo.focus=... -ginkgo.v). Exit status: 0 when every test passed.
set -u
cd "$(dirname "$0")/../.."
export BERTH_REQUIRE_V2=1 BERTH_REQUIRE_APPARMOR=1 RUST_BACKTRACE=1
TESTS=${BERTH_VM_TESTS:-cgroup_v2_runtime runtime_cgroups shim_task cgroup_v2_cri cri_apparmor}

# The newest test executable target/release/deps/<name>-<hash>.
test_binary() {
  for f in $(ls -t target/release/deps/"$1"-* 2>/dev/null); do
    case $f in *.*) continue ;; esac
    [ -x "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

# Read the binaries once in big 9p reads: page faults through 9p are slow.
cat target/release/berthd target/release/berth-shim target/release/berth-runc \
  /usr/sbin/runc /usr/bin/crun /usr/bin/docker-registry >/dev/null 2>&1
# io.max needs a block device: the loop driver's loop0 (7:0).
/run/berth-vm/modprobe loop 2>/dev/null || true
failed=""
for t in $TESTS; do
  bin=$(test_binary "$t") || { echo "lane: no test executable for $t (run cargo test --release --no-run)"; failed="$failed $t"; continue; }
  start=$(date +%s)
  echo "lane: == $t ($bin)"
  "$bin" --test-threads="${BERTH_VM_TEST_THREADS:-2}" || failed="$failed $t"
  echo "lane: == $t took $(( $(date +%s) - start )) s"
done
if [ "${BERTH_VM_CRITEST:-0}" = 1 ] && [ -x /opt/suites/bin/critest ]; then
  echo "lane: == critest"
  # critest loads its AppArmor profiles with `sudo apparmor_parser`; the guest runs as
  # root and has no sudo.
  if ! command -v sudo >/dev/null; then
    mkdir -p /run/berth-vm/bin && printf '#!/bin/sh\nexec "$@"\n' >/run/berth-vm/bin/sudo
    chmod +x /run/berth-vm/bin/sudo && PATH=$PATH:/run/berth-vm/bin
  fi
  CRITEST=/opt/suites/bin/critest integration/critest.sh -ginkgo.skip=Benchmark ${BERTH_VM_CRITEST_ARGS:-} || failed="$failed critest"
fi
if [ -n "$failed" ]; then echo "lane: FAILED:$failed"; exit 1; fi
echo "lane: all passed"
