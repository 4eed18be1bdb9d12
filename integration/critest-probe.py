#!/usr/bin/env python3
"""critest-probe: CRI checks modelled on the specs of cri-tools' critest (pkg/validate),
for machines where critest cannot be built. Run by `integration/critest.sh --probe`, which
generates the gRPC stubs from the k8s-cri crate's v1.proto into $CRI_STUBS. Called like
critest: critest-probe.py --runtime-endpoint unix:///path/berth.sock [...].

Each check prints PASS or FAIL with the reason; the last line is the count.
Not a replacement for critest: the checks are written from reading its specs."""
import sys, time, os, json, tempfile, subprocess, urllib.request
sys.path.insert(0, os.environ["CRI_STUBS"])
import grpc, api_pb2 as pb, api_pb2_grpc as rpc

endpoint = sys.argv[sys.argv.index("--runtime-endpoint") + 1]
# grpc-python would send the socket path as :authority, which HTTP/2 servers refuse.
ch = grpc.insecure_channel(endpoint, options=[("grpc.default_authority", "localhost")])
rs, im = rpc.RuntimeServiceStub(ch), rpc.ImageServiceStub(ch)
BB = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
results = []
def check(name):
    def wrap(f):
        try:
            f(); results.append((name, "PASS", "")); print("PASS", name, flush=True)
        except Exception as e:
            msg = (e.details() if isinstance(e, grpc.RpcError) else repr(e)); results.append((name, "FAIL", msg)); print("FAIL", name, "--", msg, flush=True)
        finally:
            cleanup()
    return wrap
pods = []
def cleanup():
    while pods:
        p = pods.pop()
        try: rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p)); rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p))
        except Exception as e: print("cleanup", e)
n = [0]
def uid(): n[0] += 1; return f"{os.getpid()}-{n[0]}"
def run_pod(**kw):
    name = "pod-" + uid()
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, uid="cri-test-uid"+name, namespace="cri-test-ns"+name, attempt=2), **kw)
    if not cfg.HasField("linux"): cfg.linux.CopyFrom(pb.LinuxPodSandboxConfig())
    pid = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id; pods.append(pid); return pid, cfg
def pull(image): return im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=image))).image_ref
def create(pid, pcfg, image=BB, command=("sh", "-c", "top"), start=True, **kw):
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c-"+uid(), attempt=2), image=pb.ImageSpec(image=image), command=list(command) if command else [], **kw)
    if not cfg.HasField("linux"): cfg.linux.CopyFrom(pb.LinuxContainerConfig())
    st = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=image)))
    if not st.HasField("image"): pull(image)
    cid = rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pid, config=cfg, sandbox_config=pcfg)).container_id
    if start: rs.StartContainer(pb.StartContainerRequest(container_id=cid))
    return cid
def execs(cid, cmd, timeout=30):
    r = rs.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout)); return r
def status(cid): return rs.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
def eq(a, b, what=""): assert a == b, f"{what}: got {a!r}, want {b!r}"
def wait(fn, secs=30):
    end = time.time() + secs
    while time.time() < end:
        if fn(): return True
        time.sleep(0.5)
    raise AssertionError("timed out waiting")

@check("Status: RuntimeReady and NetworkReady")
def _():
    st = rs.Status(pb.StatusRequest()).status
    c = {x.type: x.status for x in st.conditions}; assert c.get("RuntimeReady") and c.get("NetworkReady"), c
@check("Version")
def _():
    v = rs.Version(pb.VersionRequest(version="v1")); assert v.runtime_name and v.runtime_api_version, v
@check("PodSandbox: run, status ready, list by id/state/label, stop -> NotReady, remove")
def _():
    pid, cfg = run_pod(labels={"foo": "bar"})
    s = rs.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pid)).status
    eq(s.state, pb.SANDBOX_READY, "state"); eq(s.metadata.name, cfg.metadata.name, "name"); assert s.network.ip, "no ip"
    eq([p.id for p in rs.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id=pid))).items], [pid], "by id")
    eq([p.id for p in rs.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(label_selector={"foo": "bar"}))).items], [pid], "by label")
    rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid))
    eq(rs.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pid)).status.state, pb.SANDBOX_NOTREADY, "after stop")
    ready = rs.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id=pid, state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)))).items
    eq(len(ready), 0, "ready filter")
    rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid)); pods.remove(pid)
    eq(len(rs.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id=pid))).items), 0, "after remove")
@check("PodSandbox: remove/stop of unknown id succeeds (idempotent)")
def _():
    rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id="doesnotexist")); rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id="doesnotexist"))
@check("Container: create/start/list/stop/remove, status fields")
def _():
    pid, cfg = run_pod()
    cid = create(pid, cfg, start=False, labels={"a": "b"})
    s = status(cid); eq(s.state, pb.CONTAINER_CREATED, "created")
    rs.StartContainer(pb.StartContainerRequest(container_id=cid)); s = status(cid); eq(s.state, pb.CONTAINER_RUNNING, "running")
    assert s.started_at > 0 and s.image_ref, s
    eq([c.id for c in rs.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(label_selector={"a": "b"}))).containers], [cid], "by label")
    eq([c.id for c in rs.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pid, state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)))).containers], [cid], "by pod+state")
    t = time.time(); rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=60)); print("  stop took %.1fs" % (time.time() - t))
    s = status(cid); eq(s.state, pb.CONTAINER_EXITED, "exited"); print("  exit", s.exit_code, s.reason)
    rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    eq(len(rs.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(id=cid))).containers), 0, "removed")
@check("ExecSync: echo -n hello, stderr empty")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg)
    r = execs(cid, ["echo", "-n", "hello"]); eq(r.stdout, b"hello"); eq(r.stderr, b""); eq(r.exit_code, 0)
    r = execs(cid, ["sh", "-c", "exit 3"]); eq(r.exit_code, 3, "exit code")
@check("ExecSync with timeout: error, and the sleep is gone")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg)
    try: execs(cid, ["sleep", "4321"], timeout=1); raise AssertionError("no timeout error")
    except grpc.RpcError as e: print("  timeout error:", e.code())
    r = execs(cid, ["sh", "-c", "pgrep sleep || true"]); eq(r.stdout.strip(), b"", "pgrep"); eq(r.stderr, b"")
@check("Volume (host path is a symlink)")
def _():
    d = tempfile.mkdtemp(prefix="test"); open(d + "/testVolume.file", "w").close(); os.symlink(d, d + "-symlink")
    try:
        pid, cfg = run_pod(); cid = create(pid, cfg, mounts=[pb.Mount(host_path=d + "-symlink", container_path=d + "-symlink", selinux_relabel=True)])
        r = execs(cid, ["ls", "-A", d + "-symlink"]); assert r.stdout, r
    finally: os.unlink(d + "-symlink"); os.unlink(d + "/testVolume.file"); os.rmdir(d)
@check("Log: echo 'hello World' in CRI format; reopen log")
def _():
    d = tempfile.mkdtemp(prefix="podLogTest")
    pid, cfg = run_pod(log_directory=d)
    cid = create(pid, cfg, command=["echo", "hello World"], log_path="c.log")
    wait(lambda: status(cid).state == pb.CONTAINER_EXITED)
    text = open(d + "/c.log").read(); print("  log:", repr(text))
    parts = text.split(" ", 3); eq(parts[1:], ["stdout", "F", "hello World\n"], "log line")
    cid2 = create(pid, cfg, command=["sh", "-c", "while true; do echo hello World; sleep 1; done"], log_path="k.log")
    wait(lambda: os.path.exists(d + "/k.log") and os.path.getsize(d + "/k.log") > 0)
    os.rename(d + "/k.log", d + "/k.log.new"); rs.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid2))
    assert os.path.exists(d + "/k.log"), "new log file not created"
    wait(lambda: os.path.getsize(d + "/k.log") > 0); n1 = os.path.getsize(d + "/k.log.new"); time.sleep(3); eq(os.path.getsize(d + "/k.log.new"), n1, "old log grows")
    subprocess.run(["rm", "-rf", d])
@check("DNS config and hostname")
def _():
    pid, cfg = run_pod(hostname="probe-host", dns_config=pb.DNSConfig(servers=["10.10.10.10"], searches=["google.com"], options=["ndots:8"]))
    cid = create(pid, cfg); r = execs(cid, ["cat", "/etc/resolv.conf"]).stdout.decode()
    for want in ["nameserver 10.10.10.10", "search google.com", "options ndots:8"]: assert want in r, r
    eq(execs(cid, ["hostname"]).stdout.decode().strip(), "probe-host", "hostname")
@check("Port mapping: pod IP:80 and 127.0.0.1:12000")
def _():
    pid, cfg = run_pod(port_mappings=[pb.PortMapping(container_port=80, host_port=12000)])
    create(pid, cfg, image="registry.k8s.io/e2e-test-images/nginx:1.14-2", command=None)
    ip = rs.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pid)).status.network.ip
    for url in [f"http://{ip}:80/", "http://127.0.0.1:12000/"]:
        def get():
            try: return urllib.request.urlopen(url, timeout=2).status == 200
            except Exception as e: print("  ", url, e); return False
        wait(get, 15)
@check("Host network pod: hostnet-nginx on 127.0.0.1:12003")
def _():
    pid, cfg = run_pod(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(network=pb.NODE))))
    create(pid, cfg, image="gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64", command=None, linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(namespace_options=pb.NamespaceOption(network=pb.NODE))))
    wait(lambda: urllib.request.urlopen("http://127.0.0.1:12003/", timeout=2).status == 200, 15)
@check("Sysctls: kernel.shm_rmid_forced=1, net.ipv4.ip_local_port_range")
def _():
    pid, cfg = run_pod(linux=pb.LinuxPodSandboxConfig(sysctls={"kernel.shm_rmid_forced": "1", "net.ipv4.ip_local_port_range": "1024 65000"}))
    cid = create(pid, cfg)
    eq(execs(cid, ["sysctl", "-n", "kernel.shm_rmid_forced"]).stdout.strip(), b"1")
    eq(execs(cid, ["sysctl", "-n", "net.ipv4.ip_local_port_range"]).stdout.split(), [b"1024", b"65000"])
def user_check(image, want, **sc):
    pid, cfg = run_pod()
    lin = pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(**sc))
    cid = create(pid, cfg, image=image, linux=lin)
    out = execs(cid, ["id"]).stdout.decode().strip(); print("  id:", out)
    for w in want: assert w in out, f"{w} not in {out}"
@check("Image user uid 1002")
def _(): user_check("gcr.io/k8s-staging-cri-tools/test-image-user-uid", ["uid=1002"])
@check("Image user www-data:users")
def _(): user_check("gcr.io/k8s-staging-cri-tools/test-image-user-username-group", ["uid=33", "gid=100"])
@check("Image user 1003:users")
def _(): user_check("gcr.io/k8s-staging-cri-tools/test-image-user-uid-group", ["uid=1003", "gid=100"])
@check("Predefined group from image /etc/group (uid 1000 -> groups 50000)")
def _(): user_check("gcr.io/k8s-staging-cri-tools/test-image-predefined-group", ["uid=1000", "50000"])
@check("RunAsUser/RunAsGroup/SupplementalGroups")
def _(): user_check(BB, ["uid=1001", "gid=1002", "1234"], run_as_user=pb.Int64Value(value=1001), run_as_group=pb.Int64Value(value=1002), supplemental_groups=[1234])
@check("RunAsUsername nobody")
def _(): user_check(BB, ["uid=65534"], run_as_username="nobody")
@check("ReadonlyRootfs")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg, linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(readonly_rootfs=True)))
    r = execs(cid, ["touch", "/x"]); assert r.exit_code != 0, r
def sc(**kw): return pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(**kw))
def psc(**kw): return pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(**kw))
@check("Privileged is true: brctl addbr works")
def _():
    pid, cfg = run_pod(linux=psc(privileged=True)); cid = create(pid, cfg, linux=sc(privileged=True))
    r = execs(cid, ["brctl", "addbr", "foobar"]); eq(r.exit_code, 0, r.stderr)
@check("Privileged is false: brctl addbr fails")
def _():
    pid, cfg = run_pod(linux=psc(privileged=False)); cid = create(pid, cfg, linux=sc(privileged=False))
    r = execs(cid, ["brctl", "addbr", "foobar"]); assert r.exit_code != 0, r
@check("Capability NET_ADMIN: brctl addbr works; default container: fails")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg, linux=sc(capabilities=pb.Capability(add_capabilities=["NET_ADMIN"])))
    r = execs(cid, ["brctl", "addbr", "foobar"]); eq(r.exit_code, 0, r.stderr)
    cid = create(pid, cfg); r = execs(cid, ["brctl", "addbr", "foobar2"]); assert r.exit_code != 0, r
@check("Capability drop ALL: CapEff 0")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg, linux=sc(capabilities=pb.Capability(drop_capabilities=["ALL"])))
    out = execs(cid, ["grep", "CapEff", "/proc/self/status"]).stdout; assert out.split()[1] == b"0000000000000000", out
@check("MaskedPaths /bin/ls")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg, linux=sc(masked_paths=["/bin/ls"]))
    r = execs(cid, ["/bin/sh", "-c", "ls"]); assert r.exit_code != 0, r; eq(r.stderr, b"/bin/sh: ls: Permission denied\n")
@check("ReadonlyPaths /tmp")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg, linux=sc(readonly_paths=["/tmp"]))
    r = execs(cid, ["touch", "/tmp/test"]); assert r.exit_code != 0, r; eq(r.stderr, b"touch: /tmp/test: Read-only file system\n")
@check("RunAsGroup without RunAsUser is refused")
def _():
    pid, cfg = run_pod()
    try: create(pid, cfg, linux=sc(run_as_group=pb.Int64Value(value=1002)), start=False); raise AssertionError("created")
    except grpc.RpcError as e: print("  refused:", e.code(), e.details())
@check("ReadOnlyRootfs true: log says 'touch: test.go: Read-only file system' on stderr")
def _():
    d = tempfile.mkdtemp(prefix="podLogTest"); pid, cfg = run_pod(log_directory=d)
    cid = create(pid, cfg, command=["sh", "-c", "touch test.go && [ -f test.go ] && echo 'Found'"], log_path="r.log", linux=sc(readonly_rootfs=True))
    wait(lambda: status(cid).state == pb.CONTAINER_EXITED); text = open(d + "/r.log").read()
    assert " stderr F touch: test.go: Read-only file system\n" in text, text
    subprocess.run(["rm", "-rf", d])
@check("HostPID: nginx pid seen from a hostPID container")
def _():
    ns = pb.NamespaceOption(pid=pb.NODE, ipc=pb.POD, network=pb.POD)
    pid, cfg = run_pod(linux=psc(namespace_options=ns))
    n = create(pid, cfg, image="registry.k8s.io/e2e-test-images/nginx:1.14-2", command=None, linux=sc(namespace_options=ns))
    time.sleep(1); npid = execs(n, ["cat", "/var/run/nginx.pid"]).stdout.strip()
    b = create(pid, cfg, command=["sh", "-c", "sleep 1000"], linux=sc(namespace_options=ns))
    out = execs(b, ["pidof", "nginx"]).stdout; assert npid in out.split(), (npid, out)
@check("HostIpc true / false")
def _():
    seg = subprocess.run(["ipcmk", "-M", "1048576"], capture_output=True, text=True).stdout.strip().split(": ")[-1]
    try:
        for mode, want in ((pb.NODE, True), (pb.POD, False)):
            ns = pb.NamespaceOption(pid=pb.POD, ipc=mode, network=pb.POD)
            pid, cfg = run_pod(linux=psc(namespace_options=ns)); cid = create(pid, cfg, linux=sc(namespace_options=ns))
            out = execs(cid, ["ipcs", "-m"]).stdout.decode().split(); eq(seg in out, want, f"ipc mode {mode} sees {seg} in {out}")
    finally: subprocess.run(["ipcrm", "-m", seg])
@check("PodPID: /proc/1 is not nginx")
def _():
    ns = pb.NamespaceOption(pid=pb.POD); pid, cfg = run_pod(linux=psc(namespace_options=ns))
    n = create(pid, cfg, image="registry.k8s.io/e2e-test-images/nginx:1.14-2", command=None, linux=sc(namespace_options=ns))
    out = execs(n, ["cat", "/proc/1/cmdline"]).stdout; assert b"master process" not in out, out
@check("ContainerPID: /proc/1 is nginx")
def _():
    ns = pb.NamespaceOption(pid=pb.CONTAINER); pid, cfg = run_pod(linux=psc(namespace_options=ns))
    n = create(pid, cfg, image="registry.k8s.io/e2e-test-images/nginx:1.14-2", command=None, linux=sc(namespace_options=ns))
    out = execs(n, ["cat", "/proc/1/cmdline"]).stdout; assert b"master process" in out, out
def hostnet(host):
    import socket
    srv = socket.socket(); srv.bind(("0.0.0.0", 0)); srv.listen(1); port = srv.getsockname()[1]
    d = tempfile.mkdtemp(prefix="hostnet")
    ns = pb.NamespaceOption(pid=pb.POD, ipc=pb.POD, network=pb.NODE if host else pb.POD)
    pid, cfg = run_pod(linux=psc(namespace_options=ns), log_directory=d)
    cid = create(pid, cfg, command=["sh", "-c", "netstat -ln"], log_path="n.log", linux=sc(namespace_options=ns))
    wait(lambda: status(cid).state == pb.CONTAINER_EXITED); text = open(d + "/n.log").read(); srv.close()
    eq(f":{port} " in text, host, text[:300]); subprocess.run(["rm", "-rf", d])
@check("HostNetwork is true")
def _(): hostnet(True)
@check("HostNetwork is false")
def _(): hostnet(False)
def seccomp_ctr(path=None, profile=None, caps=None, privileged=False, pod_priv=False, start=True):
    pid, cfg = run_pod(linux=psc(privileged=pod_priv))
    kw = dict(privileged=privileged, capabilities=pb.Capability(add_capabilities=caps or []))
    if path is not None: kw["seccomp_profile_path"] = path
    if profile is not None: kw["seccomp"] = profile
    return create(pid, cfg, command=["sleep", "60"], linux=sc(**kw), start=start)
SECCOMP_DIR = tempfile.mkdtemp(prefix="seccomp-probe")
open(SECCOMP_DIR + "/block-host-name.json", "w").write('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}')
open(SECCOMP_DIR + "/block-chmod.json", "w").write('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"}]}')
def seccomp_mode(cid): return execs(cid, ["grep", "Seccomp:", "/proc/self/status"]).stdout.split()[1]
@check("Seccomp legacy path unconfined / '' -> 0; docker/default and runtime/default -> 2")
def _():
    eq(seccomp_mode(seccomp_ctr(path="unconfined")), b"0", "unconfined"); eq(seccomp_mode(seccomp_ctr(path="")), b"0", "empty")
    eq(seccomp_mode(seccomp_ctr(path="docker/default")), b"2", "docker/default"); eq(seccomp_mode(seccomp_ctr(path="runtime/default")), b"2", "runtime/default")
@check("Seccomp localhost/ profile blocks chmod")
def _():
    cid = seccomp_ctr(path="localhost/" + SECCOMP_DIR + "/block-chmod.json"); r = execs(cid, ["chmod", "400", "/"])
    assert r.exit_code != 0 and b"Operation not permitted" in r.stderr, r
@check("Seccomp SecurityProfile Localhost blocks chmod")
def _():
    cid = seccomp_ctr(profile=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost, localhost_ref=SECCOMP_DIR + "/block-chmod.json")); r = execs(cid, ["chmod", "400", "/"])
    assert r.exit_code != 0 and b"Operation not permitted" in r.stderr, r
@check("Seccomp unconfined + SYS_ADMIN: hostname works")
def _(): r = execs(seccomp_ctr(path="unconfined", caps=["SYS_ADMIN"]), ["hostname", "ANewHostName"]); eq(r.exit_code, 0, r.stderr)
@check("Seccomp profile blocking sethostname, with SYS_ADMIN: hostname fails")
def _(): r = execs(seccomp_ctr(path="localhost/" + SECCOMP_DIR + "/block-host-name.json", caps=["SYS_ADMIN"]), ["hostname", "ANewHostName"]); assert r.exit_code != 0, r
@check("Seccomp profile path without localhost/ is refused (older critest only)")
def _():
    try: seccomp_ctr(path=SECCOMP_DIR + "/block-host-name.json", start=False); raise AssertionError("created")
    except grpc.RpcError as e: print("  refused:", e.code(), e.details())
@check("Seccomp profile ignored when privileged: hostname works")
def _(): r = execs(seccomp_ctr(path="localhost/" + SECCOMP_DIR + "/block-host-name.json", privileged=True, pod_priv=True), ["hostname", "ANewHostName"]); eq(r.exit_code, 0, r.stderr)
@check("docker/default + SYS_ADMIN: hostname works; without caps: fails")
def _():
    r = execs(seccomp_ctr(path="docker/default", caps=["SYS_ADMIN"]), ["hostname", "ANewHostName"]); eq(r.exit_code, 0, r.stderr)
    r = execs(seccomp_ctr(path="docker/default"), ["hostname", "ANewHostName"]); assert r.exit_code != 0, r
def nnp(flag, want):
    d = tempfile.mkdtemp(prefix="nnp"); pid, cfg = run_pod(log_directory=d)
    cid = create(pid, cfg, image="registry.k8s.io/e2e-test-images/nonewprivs:1.3", command=None, log_path="n.log", linux=sc(no_new_privs=flag, run_as_user=pb.Int64Value(value=1000)))
    wait(lambda: status(cid).state == pb.CONTAINER_EXITED); text = open(d + "/n.log").read(); assert f"stdout F Effective uid: {want}\n" in text, text
    subprocess.run(["rm", "-rf", d])
@check("NoNewPrivs true: Effective uid 1000")
def _(): nnp(True, 1000)
@check("NoNewPrivs false: Effective uid 0")
def _(): nnp(False, 0)
@check("Container stats / ListContainerStats")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg); time.sleep(1)
    s = rs.ContainerStats(pb.ContainerStatsRequest(container_id=cid)).stats
    assert s.cpu.timestamp > 0 and s.memory.working_set_bytes.value > 0 and s.writable_layer.fs_id.mountpoint, s
    eq(s.attributes.id, cid, "attrs"); print("  cpu", s.cpu.usage_core_nano_seconds.value, "wl", s.writable_layer.used_bytes.value, s.writable_layer.inodes_used.value)
    ids = [x.attributes.id for x in rs.ListContainerStats(pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(id=cid))).stats]; eq(ids, [cid])
    ps = rs.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pid)).stats; eq(ps.attributes.id, pid)
@check("UpdateContainerResources reflected in ContainerStatus")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg, linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(cpu_quota=800000, cpu_period=100000, memory_limit_in_bytes=800*1024*1024)))
    rs.UpdateContainerResources(pb.UpdateContainerResourcesRequest(container_id=cid, linux=pb.LinuxContainerResources(cpu_quota=400000, cpu_period=100000, memory_limit_in_bytes=400*1024*1024)))
    r = status(cid).resources.linux; eq(r.memory_limit_in_bytes, 400*1024*1024, "status memory"); eq(r.cpu_quota, 400000, "status quota")
@check("Images: pull tags; list; ImageStatus by tag/id; remove by id removes all tags")
def _():
    ids = {pull(f"gcr.io/k8s-staging-cri-tools/test-image-tags:{t}") for t in (1, 2, 3)}; eq(len(ids), 1, "one id")
    i = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ids.pop()))).image; eq(len(i.repo_tags), 3, "tags"); print("  digests", list(i.repo_digests), "spec", i.spec.image)
    im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=i.id)))
    assert not im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="gcr.io/k8s-staging-cri-tools/test-image-tags:2"))).HasField("image")
@check("Images: pull without tag; status by name without tag; list with filter")
def _():
    ref = pull("gcr.io/k8s-staging-cri-tools/test-image-latest")
    i = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="gcr.io/k8s-staging-cri-tools/test-image-latest"))).image; eq(i.id, ref)
    l = im.ListImages(pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image="gcr.io/k8s-staging-cri-tools/test-image-latest")))).images; eq([x.id for x in l], [ref])
    im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
@check("Images: pull by digest reference (repo@sha256:...)")
def _():
    ref = pull("gcr.io/k8s-staging-cri-tools/test-image-tag:test")
    dig = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).image.repo_digests[0]
    im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
    r2 = pull(dig); i = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=dig))).image; eq(i.id, r2); print("  tags after digest pull", list(i.repo_tags), list(i.repo_digests))
@check("ImageFsInfo")
def _():
    r = im.ImageFsInfo(pb.ImageFsInfoRequest()); assert r.image_filesystems and r.image_filesystems[0].used_bytes.value > 0, r
@check("Container events stream")
def _():
    stream = rs.GetContainerEvents(pb.GetEventsRequest(), timeout=20)
    pid, cfg = run_pod(); cid = create(pid, cfg)
    kinds = []
    for ev in stream:
        if ev.container_id == cid: kinds.append(ev.container_event_type)
        if len(kinds) >= 2: break
    eq(kinds[:2], [pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT], "events")
@check("Seccomp SecurityProfile RuntimeDefault -> mode 2")
def _():
    pid, cfg = run_pod()
    cid = create(pid, cfg, linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault))))
    out = execs(cid, ["grep", "Seccomp:", "/proc/self/status"]).stdout; assert b"2" in out, out
@check("NoNewPrivs")
def _():
    pid, cfg = run_pod()
    cid = create(pid, cfg, linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(no_new_privs=True)))
    out = execs(cid, ["grep", "NoNewPrivs", "/proc/self/status"]).stdout; assert b"1" in out, out
@check("Exec (streaming)")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg)
    rs.Exec(pb.ExecRequest(container_id=cid, cmd=["echo"], stdout=True))
@check("Idempotence: Stop/Remove unknown container, RemoveImage unknown id")
def _():
    rs.StopContainer(pb.StopContainerRequest(container_id="5b2b4f1c-1a1a-4c1c-9b1b-0123456789ab", timeout=0))
    rs.RemoveContainer(pb.RemoveContainerRequest(container_id="5b2b4f1c-1a1a-4c1c-9b1b-0123456789ab"))
    im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image="0" * 64))); im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image="0" * 64)))
@check("Idempotence: stop pod twice; stop+remove container, remove again")
def _():
    pid, cfg = run_pod(); rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid)); rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid))
    pid, cfg = run_pod(); cid = create(pid, cfg, image="registry.k8s.io/pause:3.10.1", command=None)
    rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=60)); eq(status(cid).state, pb.CONTAINER_EXITED)
    rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid)); rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
@check("Remove running pause container")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg, image="registry.k8s.io/pause:3.10.1", command=None)
    rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid)); eq(len(rs.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(id=cid))).containers), 0)
@check("Stop right after start of 'top' (x5) finishes well within 60 s")
def _():
    pid, cfg = run_pod()
    for i in range(5):
        cid = create(pid, cfg, command=["top"]); t = time.time(); rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=60)); d = time.time() - t
        print("  stop %.2fs exit %d" % (d, status(cid).exit_code)); assert d < 30, d
@check("Stats for three containers, nil filter; label filter")
def _():
    pid, cfg = run_pod(); ids = [create(pid, cfg, labels={"foo": "bar"}) for _ in range(3)]
    got = {x.attributes.id for x in rs.ListContainerStats(pb.ListContainerStatsRequest()).stats}; assert set(ids) <= got
    got = {x.attributes.id for x in rs.ListContainerStats(pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(label_selector={"foo": "baz"}))).stats}; assert not (set(ids) & got)
    s = rs.ListContainerStats(pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(id=ids[0]))).stats[0]; assert s.cpu.timestamp and s.memory.timestamp and s.attributes.metadata.name, s
@check("Unsafe sysctl fs.mqueue.msg_max=100")
def _():
    pid, cfg = run_pod(linux=pb.LinuxPodSandboxConfig(sysctls={"fs.mqueue.msg_max": "100"})); cid = create(pid, cfg)
    eq(execs(cid, ["cat", "/proc/sys/fs/mqueue/msg_max"]).stdout.strip(), b"100")
@check("Drop NET_RAW: ping fails with permission denied")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg, linux=sc(capabilities=pb.Capability(drop_capabilities=["NET_RAW"])))
    r = execs(cid, ["ping", "-c", "1", "127.0.0.1"]); print("  ", r.exit_code, r.stdout, r.stderr); assert r.exit_code != 0 and r.stdout and b"permission denied" in r.stderr, r
@check("Add ALL caps: CapBnd non-zero; drop ALL: CapBnd zero")
def _():
    pid, cfg = run_pod()
    out = execs(create(pid, cfg, linux=sc(capabilities=pb.Capability(add_capabilities=["ALL"]))), ["cat", "/proc/self/status"]).stdout.decode()
    assert "CapBnd:\t0000000000000000" not in out, out
    out = execs(create(pid, cfg, linux=sc(capabilities=pb.Capability(drop_capabilities=["ALL"]))), ["cat", "/proc/self/status"]).stdout.decode()
    assert "CapBnd:\t0000000000000000" in out, [l for l in out.splitlines() if l.startswith("Cap")]
def propagation(prop):
    h = tempfile.mkdtemp(prefix="testprop"); src = h + "/mnt"; pm = src + "/propagationMnt"; sd = h + "/propagationSrcDir"
    os.makedirs(pm); os.makedirs(sd); open(sd + "/flagFile", "w").close()
    sh = lambda c: subprocess.run(c, shell=True, check=True)
    sh(f"mount --rbind {src} {src}"); sh(f"mount --make-{'rprivate' if prop == pb.PROPAGATION_PRIVATE else 'rshared'} {src}")
    try:
        pid, cfg = run_pod(linux=psc(privileged=True))
        cid = create(pid, cfg, linux=sc(privileged=True), mounts=[pb.Mount(host_path=src, container_path=src, propagation=prop)])
        st = rs.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True)).status
        eq(len(st.mounts), 1, "mounts"); eq(st.mounts[0].propagation, prop, "status propagation"); eq(st.mounts[0].host_path, src)
        sh(f"mount --rbind {sd} {pm}")
        out = execs(cid, ["ls", "-A", pm]).stdout; eq(bool(out.strip()), prop != pb.PROPAGATION_PRIVATE, f"host->container {out}")
        cm = src + "/containerMntPoint"; execs(cid, ["sh", "-c", "mkdir -p " + cm]); r = execs(cid, ["sh", "-c", "mount --bind /etc " + cm]); eq(r.exit_code, 0, r.stderr)
        eq(bool(os.listdir(cm)), prop == pb.PROPAGATION_BIDIRECTIONAL, "container->host")
    finally:
        cleanup(); subprocess.run(f"umount -l {src}/containerMntPoint; umount -l {pm}; umount -l {src}; rm -rf {h}", shell=True, stderr=subprocess.DEVNULL)
@check("Mount propagation rprivate")
def _(): propagation(pb.PROPAGATION_PRIVATE)
@check("Mount propagation rshared (bidirectional)")
def _(): propagation(pb.PROPAGATION_BIDIRECTIONAL)
@check("Mount propagation rslave (host to container)")
def _(): propagation(pb.PROPAGATION_HOST_TO_CONTAINER)
@check("Non-recursive readonly mount: tmpfs below stays writable")
def _():
    h = tempfile.mkdtemp(prefix="testrro"); os.makedirs(h + "/tmpfs"); subprocess.run(["mount", "-t", "tmpfs", "none", h + "/tmpfs"], check=True)
    try:
        pid, cfg = run_pod(linux=psc(privileged=True)); cid = create(pid, cfg, mounts=[pb.Mount(host_path=h, container_path="/mnt", readonly=True, selinux_relabel=True)])
        r = execs(cid, ["touch", "/mnt/tmpfs/file"]); eq(r.exit_code, 0, r.stderr)
    finally: cleanup(); subprocess.run(["umount", "-l", h + "/tmpfs"]); subprocess.run(["rm", "-rf", h])
@check("OOM: exit 137, reason OOMKilled")
def _():
    pid, cfg = run_pod(linux=psc(privileged=True))
    cid = create(pid, cfg, command=["sh", "-c", "dd if=/dev/zero of=/dev/null bs=20M"], linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(memory_limit_in_bytes=15 << 20, memory_swap_limit_in_bytes=15 << 20)))
    wait(lambda: status(cid).state == pb.CONTAINER_EXITED, 60); s = status(cid); print("  ", s.exit_code, s.reason, s.message)
    eq(s.reason, "OOMKilled", "reason"); eq(s.exit_code, 137, "exit")
@check("MaskedPaths: /bin/ls run directly is denied (bypasses the standalone shell)")
def _():
    pid, cfg = run_pod(); cid = create(pid, cfg, linux=sc(masked_paths=["/bin/ls"]))
    r = execs(cid, ["/bin/sh", "-c", "/bin/ls"]); print("  ", r.exit_code, r.stderr); assert r.exit_code != 0, r
@check("Concurrent RemoveImage by id (x5): no error, gone after each")
def _():
    import threading
    ref = pull("gcr.io/k8s-staging-cri-tools/test-image-tag:test"); errs = []; found = []
    def rm():
        try: im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
        except grpc.RpcError as e: errs.append(e.details())
        found.append(im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).HasField("image"))
    ts = [threading.Thread(target=rm) for _ in range(5)]; [t.start() for t in ts]; [t.join() for t in ts]
    eq(errs, [], "errors"); eq(any(found), False, "still found")
@check("Image id consistency: pull image_ref == Image.id == ContainerStatus.image_id == Container.image_id")
def _():
    name = "gcr.io/k8s-staging-cri-tools/test-image-tag:test"; ref = pull(name)
    eq(im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=name))).image.id, ref, "Image.id")
    pid, cfg = run_pod()
    c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="idc", attempt=2), image=pb.ImageSpec(image=ref, user_specified_image=name), command=["sh", "-c", "top"])
    cid = rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pid, config=c, sandbox_config=cfg)).container_id
    rs.StartContainer(pb.StartContainerRequest(container_id=cid))
    st = status(cid); print("  status image", st.image, "image_ref", st.image_ref, "image_id", st.image_id)
    eq(st.image_id, ref, "ContainerStatus.image_id"); eq(rs.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(id=cid))).containers[0].image_id, ref, "Container.image_id")
@check("Image status equal by id, tag and digest")
def _():
    name = "gcr.io/k8s-staging-cri-tools/test-image-tag:all"; pull(name)
    s = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=name))).image
    for ref in [s.id] + list(s.repo_tags) + list(s.repo_digests):
        eq(im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).image, s, ref)
@check("Image uid/username fields")
def _():
    for image, uid, user in (("test-image-user-uid", 1002, ""), ("test-image-user-username", 0, "www-data"), ("test-image-user-uid-group", 1003, ""), ("test-image-user-username-group", 0, "www-data")):
        n = "gcr.io/k8s-staging-cri-tools/" + image; pull(n); s = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=n))).image
        eq((s.uid.value, s.username), (uid, user), image)
@check("Multiple containers: httpd log says httpd; network; exec")
def _():
    d = tempfile.mkdtemp(prefix="podLogTest"); pid, cfg = run_pod(log_directory=d, port_mappings=[pb.PortMapping(container_port=80)])
    h = create(pid, cfg, image="registry.k8s.io/e2e-test-images/httpd:2.4.39-4", command=None, log_path="h.log")
    b = create(pid, cfg, command=["sh", "-c", "echo hello World; sleep 1000"], log_path="b.log")
    wait(lambda: "httpd" in open(status(h).log_path).read()); wait(lambda: "hello World" in open(status(b).log_path).read())
    ip = rs.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pid)).status.network.ip
    wait(lambda: urllib.request.urlopen(f"http://{ip}:80/", timeout=2).status == 200, 15)
    eq(execs(h, ["echo", "httpd"]).stdout, b"httpd\n"); eq(execs(b, ["echo", "busybox"]).stdout, b"busybox\n")
    subprocess.run(["rm", "-rf", d])
@check("Image volume: Unimplemented, or mounted read-only (critest skips on Unimplemented)")
def _():
    name = "gcr.io/k8s-staging-cri-tools/test-image-tag:test"; ref = pull(name); pid, cfg = run_pod()
    c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="iv", attempt=2), image=pb.ImageSpec(image=ref, user_specified_image=name), command=["sh", "-c", "top"],
                           mounts=[pb.Mount(container_path="/mnt/image-volume", readonly=True, image=pb.ImageSpec(image=ref, user_specified_image=name))])
    try: cid = rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pid, config=c, sandbox_config=cfg)).container_id
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED, (e.code(), e.details()); print("  skipped by critest:", e.details()); return
    rs.StartContainer(pb.StartContainerRequest(container_id=cid))
    r = execs(cid, ["ls", "-A", "/mnt/image-volume/bin/sh"]); eq(r.exit_code, 0, r.stderr)
subprocess.run(["rm", "-rf", SECCOMP_DIR])
failed = sum(r[1] == "FAIL" for r in results)
print("\nprobe: %d passed, %d failed" % (len(results) - failed, failed))
sys.exit(1 if failed else 0)
