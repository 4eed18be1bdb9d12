#!/usr/bin/env bash
# Fails when a test left behind a mount, network namespace, link, nft table, cgroup
# or process of berth's (or of the reference runtimes' test containers), or a test
# bundle/state directory.
set -u
leaks=0
report() { echo "leak: $1"; echo "$2" | sed 's/^/  /'; leaks=1; }
m=$(grep -E 'berth' /proc/self/mountinfo | awk '{print $5}')
[ -n "$m" ] && report "mounts" "$m"
n=$(ip netns list 2>/dev/null)
[ -n "$n" ] && report "network namespaces" "$n"
l=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(docker0|berth|br-|veth|cni)')
[ -n "$l" ] && report "links" "$l"
# nftables tables of berth's (the network tests make theirs in private namespaces).
nt=$(nft list tables 2>/dev/null | grep -E 'berth')
[ -n "$nt" ] && report "nft tables" "$nt"
c=$(find /sys/fs/cgroup -maxdepth 6 -type d -iname '*berth*' 2>/dev/null)
[ -n "$c" ] && report "cgroups" "$c"
p=$(ps -eo pid,stat,comm | awk '$2 !~ /^Z/ && $3 ~ /berth/')
[ -n "$p" ] && report "processes" "$p"
r=$(ps -eo pid,stat,comm,args | awk '$2 !~ /^Z/ && ($3 == "docker-registry" || ($3 == "containerd" && $0 ~ /berth-test/))')
[ -n "$r" ] && report "registry or containerd processes" "$r"
# Live processes still in a test container's cgroup (zombies wait for pid 1 to reap).
cp=$(for f in /proc/[0-9]*/cgroup; do
        d=${f%/cgroup}
        grep -q 'berth-test' "$f" 2>/dev/null || continue
        awk '{ if ($3 !~ /^[ZX]/) print FILENAME": "$2 }' "$d/stat" 2>/dev/null
     done)
[ -n "$cp" ] && report "container processes" "$cp"
t=$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'berth-test-*' 2>/dev/null)
[ -n "$t" ] && report "test directories" "$t"
[ "$leaks" = 0 ] && echo "leak check: nothing left behind"
exit "$leaks"
