#!/usr/bin/env bash
# Boots a pure cgroup v2 guest under qemu (TCG) on Debian's kernel, with the host's root
# shared read-only over 9p under a tmpfs overlay, runs a command in it from the repo
# root, prints its output and exits with its status.
#   integration/vm/run.sh 'cat /proc/self/cgroup'
# Caches the kernel and initramfs under target/vm/. Env: BERTH_VM_TIMEOUT (seconds,
# default 1500), BERTH_VM_MEM (MiB, default 2048), BERTH_VM_SMP (default 2), BERTH_VM_APPEND
# (more kernel arguments, e.g. "loglevel=7 softlockup_panic=1" to see a hang's stacks),
# BERTH_VM_TCG_THREAD (default single: both vCPUs on one host thread; "multi" hung the
# guest on an AMD EPYC host, both vCPUs spinning in the slab allocator from the lane's
# first test, while single and one vCPU ran it through).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=$repo/target/vm
[ $# -ge 1 ] || { echo "usage: $0 COMMAND..." >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "berth-vm: qemu-system-x86_64 is missing (apt-get install qemu-system-x86)" >&2; exit 127; }
mkdir -p "$cache"

# The kernel that Debian's linux-image-amd64 currently points at.
kernel_version() {
  apt-cache depends linux-image-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: linux-image-\([0-9].*-amd64\)$/\1/p' | head -n1
}

fetch_kernel() {
  local kver=$1 tmp
  [ -f "$cache/kernel/boot/vmlinuz-$kver" ] && [ -f "$cache/kernel/lib/modules/$kver/modules.dep" ] && return
  echo "berth-vm: fetching linux-image-$kver" >&2
  rm -rf "$cache/kernel" "$cache/dl" && mkdir -p "$cache/dl"
  (cd "$cache/dl" && apt-get download -q "linux-image-$kver" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
  tmp=$(ls "$cache"/dl/linux-image-"$kver"_*.deb) || { echo "berth-vm: apt-get download failed" >&2; exit 1; }
  dpkg-deb -x "$tmp" "$cache/kernel.new"
  busybox depmod -b "$cache/kernel.new" "$kver"
  mv "$cache/kernel.new" "$cache/kernel" && rm -rf "$cache/dl"
}

# Prints the .ko files that module $2 needs, then $2, from modules.dep in dir $1.
module_closure() {
  local dir=$1 name=$2 line dep
  line=$(grep -E "(^|/)$name\.ko:" "$dir/modules.dep") || { echo "berth-vm: no module $name" >&2; exit 1; }
  for dep in ${line#*:}; do module_closure "$dir" "$(basename "$dep" .ko)"; done
  echo "$dir/${line%%:*}"
}

build_initramfs() {
  local kver=$1 out=$cache/initramfs-$kver.cpio.gz stage=$cache/initramfs.d i=10 m
  if [ -f "$out" ] && [ "$out" -nt "$here/init" ] && [ "$out" -nt "$here/run.sh" ]; then echo "$out"; return; fi
  rm -rf "$stage" && mkdir -p "$stage"/{bin,mods,proc,sys,dev}
  cp /bin/busybox "$stage/bin/busybox"
  cp "$here/init" "$stage/init"
  for m in $(for n in virtio_pci virtio-rng 9pnet_virtio 9p overlay; do module_closure "$cache/kernel/lib/modules/$kver" "$n"; done | awk '!seen[$0]++'); do
    cp "$m" "$stage/mods/$i-$(basename "$m")"; i=$((i + 1))
  done
  (cd "$stage" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$out.new" && mv "$out.new" "$out"
  echo "$out"
}

kver=$(kernel_version)
[ -n "$kver" ] || { echo "berth-vm: apt-cache does not know linux-image-amd64" >&2; exit 1; }
fetch_kernel "$kver"
initrd=$(build_initramfs "$kver")

run=$(mktemp -d "$cache/run.XXXXXX")
trap 'rm -rf "$run"' EXIT
printf '%s\n' "$*" >"$run/cmd.sh"
log=$run/console.log
echo "berth-vm: booting $kver (TCG, ${BERTH_VM_SMP:-2} cpus, ${BERTH_VM_MEM:-2048} MiB)" >&2
set +e
timeout -k 10 "${BERTH_VM_TIMEOUT:-1500}" qemu-system-x86_64 \
  -accel "tcg,thread=${BERTH_VM_TCG_THREAD:-single}" -cpu max -m "${BERTH_VM_MEM:-2048}" -smp "${BERTH_VM_SMP:-2}" -nographic -no-reboot \
  -nic none -device virtio-rng-pci \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -kernel "$cache/kernel/boot/vmlinuz-$kver" -initrd "$initrd" \
  -append "console=ttyS0 no_timer_check quiet loglevel=3 panic=-1 cgroup_no_v1=all ${BERTH_VM_APPEND:-} berthvm_kver=$kver berthvm_guest=$here/guest.sh berthvm_cmd=$run/cmd.sh" \
  </dev/null 2>&1 | stdbuf -oL tr -d '\r' | tee "$log"
qemu_status=${PIPESTATUS[0]}
set -e
status=$(sed -n 's/^BERTH_VM_EXIT=\([0-9]*\)$/\1/p' "$log" | tail -n1)
if [ -z "$status" ]; then
  echo "berth-vm: the guest ended without a status (qemu exit $qemu_status; 124 is the timeout)" >&2
  exit 125
fi
exit "$status"
