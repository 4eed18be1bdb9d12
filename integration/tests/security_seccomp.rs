//! The default seccomp profile, seen from inside containers: a static probe program
//! (integration/probes/seccomp_probe.c, built with `gcc -static`) tries each guarded
//! syscall. Under `RuntimeDefault` without capabilities, user namespaces (through
//! `unshare` and through `clone`), the keyrings, bpf, perf_event_open, io_uring and
//! mount are refused with EPERM and clone3 answers ENOSYS; with CAP_SYS_ADMIN (or
//! CAP_BPF, CAP_PERFMON), or `Unconfined`, the kernel answers instead. A normal
//! workload (sh, httpd, wget) runs under the default profile.

use std::collections::HashMap;
use std::process::Command;

use berth_integration::cri::*;
use berth_integration::tempdir::TempDir;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const PROBE_IMAGE: &str = "docker.io/library/probe:latest";
const EPERM: i32 = libc::EPERM;

/// Builds the probe and pushes busybox with it (and wget) as `library/probe:latest`.
fn push_probe_image(world: &World) {
    let dir = TempDir::new("seccomp-probe");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/probes/seccomp_probe.c");
    let binary = dir.path().join("probe");
    let built = Command::new("gcc").args(["-static", "-O2", "-o"]).arg(&binary).arg(source).status().expect("gcc (Debian's gcc and libc6-dev)");
    assert!(built.success(), "building the seccomp probe");
    let bytes = std::fs::read(&binary).expect("the probe");
    let image = busybox_image_with(|layer| layer.file("probe", &bytes, 0o755).symlink("bin/wget", "busybox").symlink("bin/unshare", "busybox"));
    image.push(&world.registry, "library/probe", "latest");
}

fn security(profile: cri::security_profile::ProfileType, add: &[&str]) -> cri::LinuxContainerSecurityContext {
    cri::LinuxContainerSecurityContext {
        seccomp: Some(cri::SecurityProfile { profile_type: profile as i32, localhost_ref: String::new() }),
        capabilities: Some(cri::Capability { add_capabilities: add.iter().map(|c| c.to_string()).collect(), ..Default::default() }),
        ..Default::default()
    }
}

/// Starts a container with `context` in a new pod; returns (pod, container).
async fn start_with(client: &mut RuntimeServiceClient<Channel>, name: &str, context: cri::LinuxContainerSecurityContext) -> (String, String) {
    let config = pod_config(name, "");
    let pod = run_pod(client, &config).await;
    let mut container = container_config(name, &["sleep", "1000"]);
    container.image = Some(cri::ImageSpec { image: PROBE_IMAGE.into(), ..Default::default() });
    container.linux = Some(cri::LinuxContainerConfig { security_context: Some(context), ..Default::default() });
    let id = start_container(client, &pod, &config, container).await;
    (pod, id)
}

/// The probe's answers in the container: probe name to errno (0: it succeeded).
async fn probe(client: &mut RuntimeServiceClient<Channel>, id: &str) -> HashMap<String, i32> {
    let out = exec(client, id, &["/probe"]).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let answers: HashMap<String, i32> = text
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, errno)| (name.to_string(), errno.parse().expect("errno")))
        .collect();
    assert_eq!(answers.len(), 14, "{text}");
    answers
}

fn assert_answers(answers: &HashMap<String, i32>, expected: &[(&str, i32)], what: &str) {
    for (name, errno) in expected {
        assert_eq!(answers.get(*name), Some(errno), "{what}: {name} in {answers:?}");
    }
}

fn assert_not_refused(answers: &HashMap<String, i32>, names: &[&str], what: &str) {
    for name in names {
        let errno = answers.get(*name).copied().unwrap_or(-1);
        assert!(errno != EPERM && errno != libc::ENOSYS && errno != -1, "{what}: {name} answered {errno} in {answers:?}");
    }
}

async fn remove_pod(client: &mut RuntimeServiceClient<Channel>, pod: String) {
    client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
}

async fn pull_probe_image(world: &World) {
    let mut images = world.daemon.images().await;
    let pull = cri::PullImageRequest { image: Some(cri::ImageSpec { image: PROBE_IMAGE.into(), ..Default::default() }), ..Default::default() };
    images.pull_image(pull).await.expect("pull the probe image");
}

#[test]
fn the_default_profile_refuses_what_a_capability_guards() {
    use cri::security_profile::ProfileType::{RuntimeDefault, Unconfined};
    let world = World::new();
    push_probe_image(&world);
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull_probe_image(&world).await;

        let (pod, plain) = start_with(&mut client, "plain", security(RuntimeDefault, &[])).await;
        let answers = probe(&mut client, &plain).await;
        let refused = ["clone_newuser", "unshare_user", "keyctl", "add_key", "bpf", "perf_event_open", "io_uring_setup", "mount", "personality_bsd", "socket_vsock"];
        let mut expected: Vec<(&str, i32)> = refused.iter().map(|name| (*name, EPERM)).collect();
        expected.extend([("clone3", libc::ENOSYS), ("clone", 0), ("personality_query", 0), ("socket_inet", 0)]);
        assert_answers(&answers, &expected, "RuntimeDefault");
        let unshare = exec(&mut client, &plain, &["unshare", "-U", "true"]).await;
        assert_ne!(unshare.exit_code, 0, "unshare -U ran: {unshare:?}");
        remove_pod(&mut client, pod).await;

        let (pod, admin) = start_with(&mut client, "admin", security(RuntimeDefault, &["SYS_ADMIN"])).await;
        let answers = probe(&mut client, &admin).await;
        assert_not_refused(&answers, &["clone_newuser", "unshare_user", "clone3", "keyctl", "add_key", "bpf", "perf_event_open", "io_uring_setup", "mount"], "CAP_SYS_ADMIN");
        assert_answers(&answers, &[("mount", libc::ENOENT), ("clone_newuser", 0), ("keyctl", 0)], "CAP_SYS_ADMIN");
        remove_pod(&mut client, pod).await;

        let (pod, narrow) = start_with(&mut client, "narrow", security(RuntimeDefault, &["BPF", "PERFMON"])).await;
        let answers = probe(&mut client, &narrow).await;
        assert_not_refused(&answers, &["bpf", "perf_event_open"], "CAP_BPF and CAP_PERFMON");
        assert_answers(&answers, &[("mount", EPERM), ("keyctl", EPERM), ("clone_newuser", EPERM)], "CAP_BPF and CAP_PERFMON");
        remove_pod(&mut client, pod).await;

        let (pod, open) = start_with(&mut client, "open", security(Unconfined, &[])).await;
        let answers = probe(&mut client, &open).await;
        // Without a capability the kernel refuses bpf itself; the rest it allows.
        assert_not_refused(&answers, &["clone_newuser", "unshare_user", "clone3", "keyctl", "add_key", "perf_event_open", "io_uring_setup", "mount", "personality_bsd"], "Unconfined");
        remove_pod(&mut client, pod).await;
    });
}

#[test]
fn a_normal_workload_runs_under_the_default_profile() {
    use cri::security_profile::ProfileType::RuntimeDefault;
    let world = World::new();
    push_probe_image(&world);
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull_probe_image(&world).await;
        let config = pod_config("workload", "");
        let pod = run_pod(&mut client, &config).await;
        let script = "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 8080 -h /www";
        let mut container = container_config("web", &["sh", "-c", script]);
        container.image = Some(cri::ImageSpec { image: PROBE_IMAGE.into(), ..Default::default() });
        container.linux = Some(cri::LinuxContainerConfig { security_context: Some(security(RuntimeDefault, &[])), ..Default::default() });
        let id = start_container(&mut client, &pod, &config, container).await;
        let mut fetched = cri::ExecSyncResponse::default();
        for _ in 0..50 {
            fetched = exec(&mut client, &id, &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]).await;
            if fetched.exit_code == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!((fetched.exit_code, String::from_utf8_lossy(&fetched.stdout).as_ref()), (0, "served\n"), "{fetched:?}");
        let shell = exec(&mut client, &id, &["sh", "-c", "for i in 1 2 3; do echo $i; done | wc -l; cat /etc/group > /dev/null; id -u"]).await;
        assert_eq!((shell.exit_code, String::from_utf8_lossy(&shell.stdout).as_ref()), (0, "3\n0\n"), "{shell:?}");
        remove_pod(&mut client, pod).await;
    });
}
