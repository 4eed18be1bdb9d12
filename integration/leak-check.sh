#!/usr/bin/env bash
# Fails when a test left behind a mount, network namespace, link, nft table, cgroup
# or process of berth's (or of the reference runtimes' test containers), or a test
# bundle/state directory.
#   leak-check.sh                   report everything there is now
#   leak-check.sh --record FILE     write what is there now (left by an earlier,
#                                   interrupted run) to FILE and warn; never fails
#   leak-check.sh --baseline FILE   fail only on what is not in FILE
set -u
mode=${1:-}
file=${2:-}

# One line per object: "<kind>: <object>".
list_objects() {
    grep -E 'berth' /proc/self/mountinfo | awk '{print "mounts: " $5}'
    ip netns list 2>/dev/null | awk '{print "network namespaces: " $1}'
    ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(docker0|berth|br-|veth|cni)' \
        | sed 's/@.*//; s/^/links: /'
    # nftables tables of berth's (the network tests make theirs in private namespaces).
    nft list tables 2>/dev/null | grep -E 'berth' | sed 's/^/nft tables: /'
    find /sys/fs/cgroup -maxdepth 6 -type d -iname '*berth*' 2>/dev/null | sed 's/^/cgroups: /'
    ps -eo pid,stat,comm | awk '$2 !~ /^Z/ && $3 ~ /berth/ {print "processes: " $1 " " $3}'
    ps -eo pid,stat,comm,args | awk '$2 !~ /^Z/ && ($3 == "docker-registry" || ($3 == "containerd" && $0 ~ /berth-test/)) {print "registry or containerd processes: " $1 " " $3}'
    # Live processes still in a test container's cgroup (zombies wait for pid 1 to reap).
    for f in /proc/[0-9]*/cgroup; do
        d=${f%/cgroup}
        grep -q 'berth-test' "$f" 2>/dev/null || continue
        awk '{ if ($3 !~ /^[ZX]/) print "container processes: " FILENAME ": " $2 }' "$d/stat" 2>/dev/null
    done
    find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'berth-test-*' 2>/dev/null | sed 's/^/test directories: /'
}

objects=$(list_objects | sort -u)
case "$mode" in
--record)
    printf '%s\n' "$objects" | sed '/^$/d' > "$file"
    if [ -s "$file" ]; then
        echo "leak check: an earlier run left these behind; they are not counted against this run:"
        sed 's/^/  /' "$file"
    fi
    exit 0 ;;
--baseline)
    objects=$(printf '%s\n' "$objects" | grep -vxF -f "$file" || true) ;;
"") ;;
*) echo "usage: $0 [--record FILE | --baseline FILE]" >&2; exit 2 ;;
esac
objects=$(printf '%s\n' "$objects" | sed '/^$/d')
if [ -z "$objects" ]; then
    echo "leak check: nothing left behind"
    exit 0
fi
printf '%s\n' "$objects" | sed 's/^/leak: /'
exit 1
