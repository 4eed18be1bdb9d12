#!/bin/sh
# berth VM, stage 2 (runs as the guest's init on the host's root, overlaid): a pure
# cgroup v2 machine with loopback only. Runs the command file $2 from the repo root,
# prints BERTH_VM_EXIT=<status> on the console and powers off.
# $1: kernel version (its modules are in <repo>/target/vm/kernel/lib/modules/$1).
set -u
kver=$1 cmd=$2
bb=/run/berth-vm/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
repo=$(cd "$(dirname "$0")/../.." && pwd)
finish() { sync; echo "BERTH_VM_EXIT=$1"; $bb poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue
for d in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$d"; done
# The host's /run is not the guest's: keep only what stage 1 put there.
mount -t tmpfs -o mode=0755 tmpfs /mnt && cp -a /run/berth-vm /mnt/ && mount --move /mnt /run 2>/dev/null
mkdir -p /run/lock
[ -e /var/run ] || ln -s /run /var/run
mount -t debugfs none /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
# Debian's kernel runs AppArmor: its profiles are loaded and listed through securityfs.
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
# Modules on demand (veth, bridge, nf_tables...), with busybox's modprobe.
mkdir -p /lib/modules/$kver && mount --bind "$repo/target/vm/kernel/lib/modules/$kver" /lib/modules/$kver
echo /run/berth-vm/modprobe >/proc/sys/kernel/modprobe
# Pure cgroup v2, every controller enabled for the subtree.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || finish 125
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control; done
hostname berth-vm
ip link set lo up 2>/dev/null || $bb ip link set lo up
cd "$repo" || finish 125
echo "berth-vm: kernel $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
/bin/sh "$cmd" </dev/null
finish $?
