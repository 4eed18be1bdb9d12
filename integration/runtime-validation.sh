#!/bin/bash
# Runs the OCI runtime validation programs of opencontainers/runtime-tools against one or
# more runtimes, and prints per-program pass/fail and a summary for each runtime.
#
#   RTVAL=/opt/suites/rtval integration/runtime-validation.sh [RUNTIME...]
#
# RTVAL holds what was built by hand from runtime-tools (this script builds nothing):
#   $RTVAL/runtimetest, $RTVAL/rootfs-amd64.tar.gz, $RTVAL/validation/<name>.t
# Each RUNTIME is berth-runc (target/release/berth-runc, or $BERTH_RUNC), crun, runc, or
# a path. Default: berth-runc plus crun and runc when installed. ONLY=name,name runs
# a subset; VERBOSE=1 prints each failing program's output; TIMEOUT (seconds, 120).
#
# A program passes when it exits 0 and prints no "not ok" line (eight programs print
# no test point at all). Caveats handled here, as found on this machine:
#   - crun 1.8 rejects the ociVersion (1.3.0) runtime-tools writes, and cannot handle
#     the hybrid layout's cgroup2 mount: it runs through a wrapper that rewrites the
#     bundle's ociVersion to 1.0.2, in a private mount namespace without
#     /sys/fs/cgroup/unified.
#   - linux_ns_itype runs a container without a mount namespace: runc and crun leave
#     its proc, sysfs and dev mounts in the bundle. Whatever a program leaves mounted
#     under its temporary directory is unmounted, and the directory is removed with
#     --one-file-system.
#   - pidfile is racy (it kills a `true` that may already have exited).
set -u

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
: "${RTVAL:?set RTVAL to the directory of the built validation programs}"
for need in "$RTVAL/runtimetest" "$RTVAL/rootfs-amd64.tar.gz" "$RTVAL/validation"; do
    [ -e "$need" ] || { echo "missing $need" >&2; exit 2; }
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
TIMEOUT=${TIMEOUT:-120}
WORK=$(mktemp -d /tmp/berth-rtval.XXXXXX)

resolve_runtime() {
    case "$1" in
        berth-runc) echo "${BERTH_RUNC:-$REPO/target/release/berth-runc}" ;;
        */*) echo "$1" ;;
        *) command -v "$1" ;;
    esac
}

# crun 1.8.1 knows runtime-spec 1.0 only: rewrite the bundle's ociVersion on create.
write_crun_wrapper() {
    cat > "$WORK/crun-wrapper" <<EOF
#!/bin/sh
prev=
for arg in "\$@"; do
    if [ "\$prev" = --bundle ] && [ -f "\$arg/config.json" ]; then
        sed -i 's/"ociVersion": *"[^"]*"/"ociVersion":"1.0.2"/' "\$arg/config.json"
    fi
    prev=\$arg
done
exec $(command -v crun) "\$@"
EOF
    chmod +x "$WORK/crun-wrapper"
}

# Unmounts everything below $1 (deepest first), then removes it without crossing mounts.
clean_dir() {
    local dir=$1
    awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r mnt; do umount -l "$mnt" 2>/dev/null; done
    rm -rf --one-file-system "$dir"
}

# Runs one program with RUNTIME=$2 from a fresh directory; prints its output to $3.
run_program() {
    local program=$1 runtime=$2 out=$3 name=$4 dir
    dir=$(mktemp -d "$WORK/$name.XXXXXX")
    cp "$RTVAL/runtimetest" "$RTVAL/rootfs-amd64.tar.gz" "$dir/"
    mkdir "$dir/tmp"
    local cmd=(env RUNTIME="$runtime" TMPDIR="$dir/tmp" timeout "$TIMEOUT" "$program")
    if [ "$name" = crun ]; then
        # A private mount namespace in which crun sees no cgroup2 mount.
        (cd "$dir" && unshare --mount --propagation private sh -c \
            'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh "${cmd[@]}") > "$out" 2>&1
    else
        (cd "$dir" && "${cmd[@]}") > "$out" 2>&1
    fi
    local rc=$?
    clean_dir "$dir"
    return $rc
}

run_runtime() {
    local name=$1 runtime passed=0 failed=0 failed_names=()
    runtime=$(resolve_runtime "$name")
    [ -x "$runtime" ] || { echo "runtime $name not found" >&2; return 1; }
    [ "$name" = crun ] && { write_crun_wrapper; runtime=$WORK/crun-wrapper; }
    echo "== $name ($runtime)"
    for program in "$RTVAL"/validation/*.t; do
        local test out
        test=$(basename "$program" .t)
        out="$WORK/$name-$test.out"
        if [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$test,"* ]]; then continue; fi
        if run_program "$program" "$runtime" "$out" "$name" && ! grep -q '^not ok' "$out"; then
            printf '%-40s pass\n' "$test"
            rm -f "$out"
            passed=$((passed + 1))
        else
            printf '%-40s FAIL\n' "$test"
            failed=$((failed + 1))
            failed_names+=("$test")
            [ -n "${VERBOSE:-}" ] && sed 's/^/    /' "$out" | head -40
        fi
    done
    SUMMARY+=("$name: $passed passed, $failed failed${failed_names[*]:+ (${failed_names[*]})}")
}

if [ $# -eq 0 ]; then
    set -- berth-runc
    command -v crun > /dev/null && set -- "$@" crun
    command -v runc > /dev/null && set -- "$@" runc
fi
SUMMARY=()
for name in "$@"; do run_runtime "$name"; done
echo "== summary (outputs in $WORK)"
printf '%s\n' "${SUMMARY[@]}"
