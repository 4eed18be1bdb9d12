//! AppArmor through the CRI: a Localhost profile, named by the structured `apparmor`
//! field or by the deprecated `apparmor_profile` string (`localhost/NAME`), confines the
//! container's process and the processes exec'd into it, as the kernel reports in
//! `/proc/PID/attr/current`, and its rules hold (a write it denies fails). A profile that
//! is not loaded is refused at CreateContainer, leaving no container. Needs a kernel that
//! runs AppArmor, securityfs and `apparmor_parser`: the VM lane has them (Debian's
//! kernel); elsewhere the test says it is skipped, and fails if `BERTH_REQUIRE_APPARMOR`
//! is set.

use std::path::Path;
use std::process::Command;

use berth_integration::cri::*;
use berth_integration::tempdir::TempDir;
use k8s_cri::v1 as cri;

/// Whether AppArmor can be used here; panics when required and missing.
fn apparmor_available() -> bool {
    let enabled = std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.first() == Some(&b'Y'));
    let listed = Path::new("/sys/kernel/security/apparmor/profiles").exists();
    let parser = Command::new("apparmor_parser").arg("--version").output().is_ok_and(|o| o.status.success());
    if enabled && listed && parser {
        return true;
    }
    assert!(std::env::var_os("BERTH_REQUIRE_APPARMOR").is_none(), "BERTH_REQUIRE_APPARMOR is set but AppArmor is unusable: enabled {enabled}, securityfs {listed}, apparmor_parser {parser}");
    eprintln!("cri_apparmor: skipped, AppArmor is not enabled here (the VM lane runs it)");
    false
}

/// A profile loaded into the kernel for the test's life, removed when dropped.
struct LoadedProfile {
    name: String,
    file: std::path::PathBuf,
    _dir: TempDir,
}

impl LoadedProfile {
    /// Loads a profile that allows everything but writes under /tmp.
    fn deny_tmp_writes(name: &str) -> LoadedProfile {
        let dir = TempDir::new("apparmor");
        let file = dir.path().join(name);
        let text = format!("profile {name} flags=(attach_disconnected) {{\n  file,\n  capability,\n  network,\n  signal,\n  ptrace,\n  unix,\n  deny /tmp/** w,\n}}\n");
        std::fs::write(&file, text).expect("write the profile");
        let loaded = Command::new("apparmor_parser").args(["-r", "-W"]).arg(&file).output().expect("apparmor_parser");
        assert!(loaded.status.success(), "loading {name}: {}", String::from_utf8_lossy(&loaded.stderr));
        LoadedProfile { name: name.to_string(), file, _dir: dir }
    }
}

impl Drop for LoadedProfile {
    fn drop(&mut self) {
        let _ = Command::new("apparmor_parser").arg("-R").arg(&self.file).output();
        let listing = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").unwrap_or_default();
        if listing.lines().any(|l| l.starts_with(&format!("{} (", self.name))) {
            eprintln!("cri_apparmor: profile {} is still loaded", self.name);
        }
    }
}

fn with_profile(mut config: cri::ContainerConfig, context: cri::LinuxContainerSecurityContext) -> cri::ContainerConfig {
    config.linux = Some(cri::LinuxContainerConfig { security_context: Some(context), ..Default::default() });
    config
}

fn structured(reference: &str) -> cri::LinuxContainerSecurityContext {
    let profile = cri::SecurityProfile { profile_type: cri::security_profile::ProfileType::Localhost as i32, localhost_ref: reference.into() };
    cri::LinuxContainerSecurityContext { apparmor: Some(profile), ..Default::default() }
}

#[allow(deprecated)] // the deprecated field is what this exercises
fn deprecated(profile: &str) -> cri::LinuxContainerSecurityContext {
    cri::LinuxContainerSecurityContext { apparmor_profile: profile.into(), ..Default::default() }
}

/// What the kernel says confines process `pid` (seen from the host).
fn confinement(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/attr/current")).unwrap_or_else(|e| panic!("attr/current of {pid}: {e}")).trim().to_string()
}

fn stdout(response: &cri::ExecSyncResponse) -> String {
    String::from_utf8_lossy(&response.stdout).trim().to_string()
}

#[test]
fn a_localhost_profile_confines_the_container_and_its_execs() {
    if !apparmor_available() {
        return;
    }
    let profile = LoadedProfile::deny_tmp_writes(&format!("berth-test-deny-tmp-{}", std::process::id()));
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let pod_config = pod_config("apparmor", "");
        let pod = run_pod(&mut client, &pod_config).await;
        let sleeper = ["sleep", "1000"];
        let cases = [("structured", structured(&format!("localhost/{}", profile.name))), ("deprecated", deprecated(&format!("localhost/{}", profile.name)))];
        for (label, context) in cases {
            let id = start_container(&mut client, &pod, &pod_config, with_profile(container_config(label, &sleeper), context)).await;
            assert_eq!(confinement(pid_of(&mut client, &id).await), format!("{} (enforce)", profile.name), "{label}: the container's process");
            let joined = exec(&mut client, &id, &["cat", "/proc/self/attr/current"]).await;
            assert_eq!(stdout(&joined), format!("{} (enforce)", profile.name), "{label}: an exec'd process");
            let denied = exec(&mut client, &id, &["sh", "-c", "echo x > /tmp/denied"]).await;
            assert_ne!(denied.exit_code, 0, "{label}: the profile denies writes under /tmp");
            let allowed = exec(&mut client, &id, &["sh", "-c", "echo x > /written"]).await;
            assert_eq!(allowed.exit_code, 0, "{label}: other writes are allowed: {}", String::from_utf8_lossy(&allowed.stderr));
        }
        let plain = start_container(&mut client, &pod, &pod_config, container_config("plain", &sleeper)).await;
        assert_eq!(confinement(pid_of(&mut client, &plain).await), "unconfined", "no profile asked");
        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("stop the pod");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}

#[test]
fn a_profile_that_is_not_loaded_is_refused_at_create() {
    if !apparmor_available() {
        return;
    }
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let pod_config = pod_config("apparmor-missing", "");
        let pod = run_pod(&mut client, &pod_config).await;
        let missing = "localhost/berth-test-no-such-profile";
        for (label, context) in [("structured", structured(missing)), ("deprecated", deprecated(missing)), ("unsupported", deprecated("berth-test-bare-name"))] {
            let config = with_profile(container_config(label, &["true"]), context);
            let request = cri::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(config), sandbox_config: Some(pod_config.clone()) };
            let refused = client.create_container(request).await.expect_err(label);
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{label}: {refused:?}");
            assert!(refused.message().contains("apparmor"), "{label}: {}", refused.message());
        }
        let listed = client.list_containers(cri::ListContainersRequest::default()).await.expect("list").into_inner().containers;
        assert!(listed.is_empty(), "a refused create left {listed:?}");
        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("stop the pod");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}
