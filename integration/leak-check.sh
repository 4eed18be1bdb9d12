#!/usr/bin/env bash
# Fails when a test left behind a mount, network namespace, link, nft table, cgroup
# or process of berth's (or of the reference runtimes' test containers).
set -u
leaks=0
report() { echo "leak: $1"; echo "$2" | sed 's/^/  /'; leaks=1; }
m=$(grep -E 'berth' /proc/self/mountinfo | awk '{print $5}')
[ -n "$m" ] && report "mounts" "$m"
n=$(ip netns list 2>/dev/null)
[ -n "$n" ] && report "network namespaces" "$n"
l=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(docker0|berth|br-|veth|cni)')
[ -n "$l" ] && report "links" "$l"
c=$(find /sys/fs/cgroup -maxdepth 3 -type d -iname '*berth*' 2>/dev/null)
[ -n "$c" ] && report "cgroups" "$c"
p=$(ps -eo pid,comm | awk '$2 ~ /berth/')
[ -n "$p" ] && report "processes" "$p"
[ "$leaks" = 0 ] && echo "leak check: nothing left behind"
exit "$leaks"
