/* seccomp_probe: tries the syscalls a container's seccomp profile guards, with
 * arguments the kernel answers without harm, and prints one line per probe:
 * "<probe> <errno>" (0 when the call succeeded). Built static by the tests
 * (gcc -static) and run inside containers. Each call that would change this
 * process (a new user namespace, a persona) runs in a child. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static void report(const char *name, long result) {
    printf("%s %d\n", name, result < 0 ? errno : 0);
}

/* Runs `body` in a forked child; its exit code is the errno it saw. */
static void in_child(const char *name, int (*body)(void)) {
    pid_t pid = fork();
    if (pid == 0) _exit(body() < 0 ? errno : 0);
    int status = 0;
    waitpid(pid, &status, 0);
    printf("%s %d\n", name, WIFEXITED(status) ? WEXITSTATUS(status) : 255);
}

static int new_user_namespace(void) { return unshare(CLONE_NEWUSER); }
static int bsd_persona(void) { return personality(0x0006 /* PER_BSD */); }

static void probe_clone(const char *name, unsigned long flags) {
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    report(name, pid);
}

static void probe_clone3(void) {
    uint64_t args[11];
    memset(args, 0, sizeof args);
    args[4] = SIGCHLD; /* exit_signal */
    long pid = syscall(SYS_clone3, args, sizeof args);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    report("clone3", pid);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    probe_clone("clone", 0);
    probe_clone("clone_newuser", CLONE_NEWUSER);
    probe_clone3();
    in_child("unshare_user", new_user_namespace);
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 1));
    report("add_key", syscall(SYS_add_key, "user", "berth-probe", "x", 1, -2 /* process keyring */));
    report("bpf", syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, NULL, 0));
    report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    unsigned char params[120];
    memset(params, 0, sizeof params);
    long ring = syscall(SYS_io_uring_setup, 1, params);
    report("io_uring_setup", ring);
    if (ring >= 0) close((int)ring);
    report("mount", mount("none", "/nonexistent-probe-target", "tmpfs", 0, NULL));
    report("personality_query", personality(0xffffffff));
    in_child("personality_bsd", bsd_persona);
    long vsock = socket(AF_VSOCK, SOCK_STREAM, 0);
    report("socket_vsock", vsock);
    if (vsock >= 0) close((int)vsock);
    long inet = socket(AF_INET, SOCK_STREAM, 0);
    report("socket_inet", inet);
    if (inet >= 0) close((int)inet);
    return 0;
}
