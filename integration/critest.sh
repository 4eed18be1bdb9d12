#!/usr/bin/env bash
# Runs the upstream CRI validation suite (critest, from cri-tools) against berthd.
# A developer tool: not part of integration/test.sh or CI. Run as root:
#
#   sudo CRITEST=/path/to/critest integration/critest.sh [critest flags...]
#        e.g. -ginkgo.focus='PodSandbox'
#
# 1. critest is built by hand, outside this repository, from cri-tools' own source
#    (its vendored modules; see the README's conformance section). This script builds
#    nothing: it takes the binary from $CRITEST.
# 2. Test images that behave as upstream's do are built from Debian's busybox (the
#    dynamic build with its C library, every applet a hard link, so that a masked
#    /bin/ls really fails) and pushed to Debian's docker-registry on 127.0.0.1:5000
#    inside a network namespace.
# 3. berthd (this tree's target/release) runs in that namespace with temporary root and
#    state, mirrors sending registry.k8s.io, k8s.gcr.io, gcr.io and docker.io to the registry.
# 4. critest runs in the same namespace (it reaches pod IPs and host ports there).
# Everything is removed on exit. Output and berthd's log stay in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=${BERTH_CRITEST_OUT:-/tmp/berth-critest-out}
NS=critest-ns
REG=127.0.0.1:5000

# Debian's busybox package, downloaded once into target/critest-cache (the VM lane's
# guest has no network: `critest.sh --fetch` on the host fills the cache first).
busybox_deb() {
    local cache=$REPO/target/critest-cache
    if ! ls "$cache"/busybox_*.deb >/dev/null 2>&1; then
        mkdir -p "$cache" && (cd "$cache" && apt-get download -q busybox >/dev/null 2>&1) ||
            { echo "critest.sh: apt-get download busybox failed" >&2; exit 1; }
    fi
    ls "$cache"/busybox_*.deb | head -n1
}
if [ "${1:-}" = --fetch ]; then busybox_deb; exit 0; fi

[ "$(id -u)" = 0 ] || { echo "critest.sh: run as root" >&2; exit 1; }
[ -n "${CRITEST:-}" ] && [ -x "$CRITEST" ] || {
    echo "critest.sh: set CRITEST to the critest binary (cri-tools' cmd/critest test binary)" >&2; exit 1; }
critest=$CRITEST

# --- cleanup ----------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/berth-critest.XXXXXX)
CGROUP_PARENT=$(basename "$WORK")
mkdir -p "$OUT"
registry_pid= berthd_pid=
cleanup() {
    set +e
    [ -n "$berthd_pid" ] && kill -TERM "$berthd_pid" 2>/dev/null && wait "$berthd_pid" 2>/dev/null
    # Shims and container processes of this run: by command line, then by cgroup.
    for pid in $(grep -l -a -F "$WORK" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do kill -KILL "$pid" 2>/dev/null; done
    for procs in $(find /sys/fs/cgroup -path "*/$CGROUP_PARENT/*" -name cgroup.procs 2>/dev/null); do
        for pid in $(cat "$procs"); do kill -KILL "$pid" 2>/dev/null; done
    done
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
    sleep 0.3
    grep -F "$WORK" /proc/self/mountinfo | awk '{print length($5), $5}' | sort -rn | cut -d' ' -f2- |
        while read -r m; do umount -l "$m"; done
    find /sys/fs/cgroup -depth -type d -name "$CGROUP_PARENT*" 2>/dev/null | while read -r top; do
        find "$top" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    cp "$WORK/berthd.log" "$OUT/berthd.log" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { nsenter --net=/run/netns/$NS "$@"; }

# --- 2. registry and images -------------------------------------------------------------
mkdir -p "$WORK/registry"
cat >"$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
http:
  addr: $REG
  secret: berth-critest
EOF
in_ns /usr/bin/docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    in_ns curl -fsS -o /dev/null "http://$REG/v2/" 2>/dev/null && break
    sleep 0.1
done

sha() { sha256sum "$1" | cut -d' ' -f1; }

# push_blob REPO FILE: uploads FILE to REPO, prints its digest.
push_blob() {
    local digest location
    digest=sha256:$(sha "$2")
    location=$(in_ns curl -fsS -X POST -D - -o /dev/null "http://$REG/v2/$1/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case $location in http*) ;; *) location=http://$REG$location ;; esac
    case $location in *\?*) location="$location&digest=$digest" ;; *) location="$location?digest=$digest" ;; esac
    in_ns curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$2" "$location" >/dev/null
    echo "$digest"
}

# push_image NAME TAG... : the rootfs in $WORK/rootfs as one gzip layer, with the image
# config fields in $CONFIG (a JSON object), under NAME (a repository path) and each TAG.
push_image() {
    local name=$1; shift
    local dir=$WORK/img
    rm -rf "$dir" && mkdir -p "$dir"
    tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@1600000000 -C "$WORK/rootfs" -cf "$dir/layer.tar" .
    gzip -n -c "$dir/layer.tar" >"$dir/layer.tar.gz"
    local diff_id layer config
    diff_id=sha256:$(sha "$dir/layer.tar")
    layer=$(push_blob "$name" "$dir/layer.tar.gz")
    python3 - "$diff_id" "$CONFIG" >"$dir/config.json" <<'EOF'
import json, sys
config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]}
config.update(json.loads(sys.argv[2]))
print(json.dumps({"architecture": "amd64", "os": "linux", "created": "2020-09-13T12:26:40Z",
                  "config": config, "rootfs": {"type": "layers", "diff_ids": [sys.argv[1]]}}, sort_keys=True), end="")
EOF
    config=$(push_blob "$name" "$dir/config.json")
    python3 - "$config" "$(stat -c %s "$dir/config.json")" "$layer" "$(stat -c %s "$dir/layer.tar.gz")" >"$dir/manifest.json" <<'EOF'
import json, sys
m = "application/vnd.docker.distribution.manifest.v2+json"
print(json.dumps({"schemaVersion": 2, "mediaType": m,
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sys.argv[1], "size": int(sys.argv[2])},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sys.argv[3], "size": int(sys.argv[4])}]}), end="")
EOF
    local tag
    for tag in "$@"; do
        in_ns curl -fsS -X PUT -H 'Content-Type: application/vnd.docker.distribution.manifest.v2+json' \
            --data-binary "@$dir/manifest.json" "http://$REG/v2/$name/manifests/$tag" >/dev/null
    done
    echo "image $name:$* $(sha "$dir/manifest.json")"
}

# Helper programs (C, static): an nginx stand-in, pause, and the setuid nnp.
mkdir -p "$WORK/helpers"
cat >"$WORK/helpers/helpers.c" <<'EOF_C'
/* Picked by the name they run under: nginx (answers 200 on every path on $PORT or 80,
 * writes /var/run/nginx.pid, shows itself as "nginx: master process"), httpd (the same
 * server, saying "httpd" in its log), nnp (prints the effective uid; installed setuid
 * root), anything else sleeps until a signal (pause). */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void leave(int sig) { (void)sig; _exit(0); }

static int web(int argc, char **argv) {
    const char *port_env = getenv("PORT");
    int port = port_env ? atoi(port_env) : 80;
    char *end = argv[argc - 1] + strlen(argv[argc - 1]);
    size_t room = (size_t)(end - argv[0]);
    memset(argv[0], 0, room);
    strncpy(argv[0], "nginx: master process", room);
    FILE *pid = fopen("/var/run/nginx.pid", "w");
    if (pid) { fprintf(pid, "%d\n", (int)getpid()); fclose(pid); }
    int s = socket(AF_INET6, SOCK_STREAM, 0), one = 1, zero = 0;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 addr = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any };
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 64)) { perror("nginx: listen"); return 1; }
    const char *reply = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 21\r\n"
                        "Connection: close\r\n\r\n<p>berth critest</p>\n";
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        char buf[4096];
        (void)!read(c, buf, sizeof buf);
        (void)!write(c, reply, strlen(reply));
        close(c);
    }
}

int main(int argc, char **argv) {
    signal(SIGTERM, leave);
    signal(SIGINT, leave);
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (!strcmp(name, "nginx")) return web(argc, argv);
    if (!strcmp(name, "httpd")) {
        fprintf(stderr, "httpd: berth critest stand-in serving on port %s\n", getenv("PORT") ? getenv("PORT") : "80");
        return web(argc, argv);
    }
    if (!strcmp(name, "nnp")) { printf("Effective uid: %d\n", (int)geteuid()); return 0; }
    for (;;) pause();
}
EOF_C
gcc -static -O2 -o "$WORK/helpers/helpers" "$WORK/helpers/helpers.c"

# The base: Debian's dynamic busybox with the C library it links (its shell runs
# applets as programs, so masking /bin/ls makes `ls` fail as on upstream's image), every
# applet a hard link, stand-ins for the applets Debian's build lacks (pgrep, ipcs), and
# the users and groups the tests name.
BUSYBOX_DIR=$WORK/busybox-deb
chmod 755 "$WORK"; dpkg-deb -x "$(busybox_deb)" "$BUSYBOX_DIR"
base_rootfs() {
    rm -rf "$WORK/rootfs" && mkdir -p "$WORK/rootfs"/{bin,etc,tmp,root,var/www,var/run,home/default-user}
    cd "$WORK/rootfs"
    cp "$BUSYBOX_DIR/bin/busybox" bin/busybox
    for lib in $(ldd bin/busybox | grep -o '/[^ ]*'); do
        mkdir -p ".$(dirname "$lib")" && cp -L "$lib" ".$lib"
    done
    for applet in $(bin/busybox --list); do [ -e "bin/$applet" ] || ln bin/busybox "bin/$applet"; done
    printf '%s\n' '#!/bin/sh' '# pgrep NAME: pids whose process name contains NAME' 'found=1' \
        'for d in /proc/[0-9]*; do grep -q -- "$1" "$d/comm" 2>/dev/null && { echo "${d#/proc/}"; found=0; }; done' \
        'exit $found' >bin/pgrep
    printf '%s\n' '#!/bin/sh' '# ipcs -m: the shared memory segment ids' 'echo "------ Shared Memory Segments --------"' \
        "awk 'NR > 1 { print \$2 }' /proc/sysvipc/shm" >bin/ipcs
    chmod 755 bin/pgrep bin/ipcs
    chmod 1777 tmp
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'daemon:x:1:1:daemon:/usr/sbin:/bin/false' \
        'www-data:x:33:33:www-data:/var/www:/bin/false' 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh' \
        'nobody:x:65534:65534:nobody:/home:/bin/false' >etc/passwd
    printf '%s\n' 'root:x:0:' 'daemon:x:1:' 'www-data:x:33:' 'users:x:100:' 'default-user:x:1000:' \
        'group-defined-in-image:x:50000:default-user' 'nogroup:x:65534:' >etc/group
    cd "$REPO"
}

CONFIG='{}'
base_rootfs
push_image e2e-test-images/busybox 1.29-2 1.29-1 1.29 >&2
push_image library/busybox 1.28 latest >&2
C=k8s-staging-cri-tools
for name in test-image-latest test-image-digest test-image-1 test-image-2 test-image-3; do
    base_rootfs; : >"$WORK/rootfs/$name"
    push_image "$C/$name" latest >&2
done
base_rootfs; : >"$WORK/rootfs/test-image-tag"; push_image "$C/test-image-tag" test all >&2
base_rootfs; : >"$WORK/rootfs/test-image-tags"; push_image "$C/test-image-tags" 1 2 3 >&2
base_rootfs
CONFIG='{"User": "1002"}' push_image "$C/test-image-user-uid" latest >&2
CONFIG='{"User": "www-data"}' push_image "$C/test-image-user-username" latest >&2
CONFIG='{"User": "1003:users"}' push_image "$C/test-image-user-uid-group" latest >&2
CONFIG='{"User": "www-data:users"}' push_image "$C/test-image-user-username-group" latest >&2
CONFIG='{"User": "1000"}' push_image "$C/test-image-predefined-group" latest >&2
# Web servers (the nginx stand-in answering 200): on port 80, and on 12003 for the host
# network test. pause, and nonewprivs with its setuid program.
mkdir -p "$WORK/rootfs/usr/sbin" "$WORK/rootfs/usr/local/bin"
cp "$WORK/helpers/helpers" "$WORK/rootfs/usr/sbin/nginx"
ln "$WORK/rootfs/usr/sbin/nginx" "$WORK/rootfs/usr/sbin/httpd"
CONFIG='{"Entrypoint": ["/usr/sbin/nginx", "-g", "daemon off;"], "Cmd": null, "ExposedPorts": {"80/tcp": {}}}' \
    push_image e2e-test-images/nginx 1.14-2 1.14-1 >&2
CONFIG='{"Entrypoint": ["/usr/sbin/httpd", "-DFOREGROUND"], "Cmd": null, "ExposedPorts": {"80/tcp": {}}}' \
    push_image e2e-test-images/httpd 2.4.39-4 2.4.39-2 >&2
CONFIG='{"Entrypoint": ["/usr/sbin/nginx", "-g", "daemon off;"], "Cmd": null, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PORT=12003"]}' \
    push_image "$C/hostnet-nginx-amd64" latest >&2
rm -rf "$WORK/rootfs" && mkdir -p "$WORK/rootfs"
cp "$WORK/helpers/helpers" "$WORK/rootfs/pause"
CONFIG='{"Entrypoint": ["/pause"], "Cmd": null}' push_image pause 3.10.1 3.10 3.9 >&2
base_rootfs
mkdir -p "$WORK/rootfs/usr/local/bin"
cp "$WORK/helpers/helpers" "$WORK/rootfs/usr/local/bin/nnp"
chmod 4755 "$WORK/rootfs/usr/local/bin/nnp"
CONFIG='{"Entrypoint": ["/usr/local/bin/nnp"], "Cmd": null}' push_image e2e-test-images/nonewprivs 1.3 1.4 >&2
CONFIG='{}'

# --- 3. berthd ----------------------------------------------------------------------------
cat >"$WORK/config.toml" <<EOF
root = "$WORK/root"
state = "$WORK/state"
cri_socket = "$WORK/state/berth.sock"
cgroup_parent = "/$CGROUP_PARENT"
log_level = "${BERTH_CRITEST_LOG_LEVEL:-info}"
[registry."registry.k8s.io"]
mirrors = ["http://$REG"]
[registry."gcr.io"]
mirrors = ["http://$REG"]
[registry."k8s.gcr.io"]
mirrors = ["http://$REG"]
[registry."docker.io"]
mirrors = ["http://$REG"]
EOF
in_ns "$REPO/target/release/berthd" --config "$WORK/config.toml" >"$WORK/berthd.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 200); do [ -S "$WORK/state/berth.sock" ] && break; sleep 0.1; done
[ -S "$WORK/state/berth.sock" ] || { echo "berthd did not start:"; cat "$WORK/berthd.log"; exit 1; }

# --- 4. critest -------------------------------------------------------------------------------
status=0
in_ns "$critest" --runtime-endpoint "unix://$WORK/state/berth.sock" --image-endpoint "unix://$WORK/state/berth.sock" \
    -ginkgo.no-color "$@" 2>&1 | tee "$OUT/critest.log" || status=$?
echo "critest output: $OUT/critest.log; berthd log: $OUT/berthd.log"
exit "$status"
