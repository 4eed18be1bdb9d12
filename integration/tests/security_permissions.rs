//! Nothing of berth's can be read, listed, entered or executed by an unprivileged local
//! user (the CVE-2021-41103 pattern): with a pod running a container and an exec in
//! flight, every path under berthd's root and state is tried as uid 65534 through
//! `setpriv`, and only the root and state directories themselves may be passed through
//! (mode 0711, for the front doors' sockets).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_integration::cri::*;
use k8s_cri::v1 as cri;

/// Every path under `dir` (not following symlinks), `dir` included.
fn walk(dir: &Path, into: &mut Vec<PathBuf>) {
    into.push(dir.to_path_buf());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(&path, into),
            Ok(_) => into.push(path),
            Err(_) => {}
        }
    }
}

/// What uid 65534 can do with each path: lines "read <path>", "exec <path>",
/// "enter <path>".
fn reachable_by_nobody(paths: &[PathBuf]) -> Vec<String> {
    let script = r#"while IFS= read -r p; do
        [ -r "$p" ] && echo "read $p"
        [ -f "$p" ] && [ -x "$p" ] && echo "exec $p"
        [ -d "$p" ] && [ -x "$p" ] && echo "enter $p"
    done; true"#;
    let mut child = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let list: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
    child.stdin.take().expect("stdin").write_all(list.as_bytes()).expect("write the paths");
    let output = child.wait_with_output().expect("setpriv");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
}

#[test]
fn an_unprivileged_user_reaches_nothing_of_berth() {
    let world = World::new();
    // The test's own directories are open to all, so only berth's modes can stop the user.
    let base = world.daemon.dir.path().to_path_buf();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (root, state) = (world.daemon.root(), world.daemon.state());
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let mut config = pod_config("private", "");
        config.log_directory = String::new();
        let pod = run_pod(&mut client, &config).await;
        let mut container = container_config("secret", &["sleep", "1000"]);
        container.envs.push(cri::KeyValue { key: "PASSWORD".into(), value: "hunter2".into() });
        let id = start_container(&mut client, &pod, &config, container).await;
        let mut exec_client = client.clone();
        let request = cri::ExecSyncRequest { container_id: id.clone(), cmd: vec!["sleep".into(), "3".into()], timeout: 30 };
        let exec = tokio::spawn(async move { exec_client.exec_sync(request).await });
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;

        let mut paths = Vec::new();
        walk(&root, &mut paths);
        walk(&state, &mut paths);
        assert!(paths.iter().any(|p| p.ends_with("config.json")), "a bundle exists");
        assert!(paths.iter().any(|p| p.to_string_lossy().contains("/snapshots/") && p.ends_with("bin/busybox")), "a layer exists");
        assert!(paths.iter().any(|p| p.starts_with(state.join("exec"))), "an exec's FIFOs exist");
        let reached: Vec<String> = reachable_by_nobody(&paths)
            .into_iter()
            .filter(|line| line != &format!("enter {}", root.display()) && line != &format!("enter {}", state.display()))
            .collect();
        assert!(reached.is_empty(), "uid 65534 reaches:\n{}", reached.join("\n"));

        // The modes themselves, whatever the parents: bundle files 0600, sockets 0600.
        let bundle = root.join("containers").join(&id);
        for file in [bundle.join("config.json"), bundle.join("rootfs.json"), state.join("events.sock"), root.join("meta.redb")] {
            let mode = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        for dir in ["snapshots", "containers", "content"].map(|d| root.join(d)).iter().chain(&[state.join("shims"), bundle]) {
            assert_eq!(std::fs::metadata(dir).expect("stat").mode() & 0o777, 0o700, "{}", dir.display());
        }
        let shim_sockets: Vec<PathBuf> = paths.iter().filter(|p| std::fs::symlink_metadata(p).map(|m| m.mode() & libc::S_IFMT == libc::S_IFSOCK).unwrap_or(false)).cloned().collect();
        assert!(shim_sockets.len() >= 2, "{shim_sockets:?}");
        for socket in shim_sockets.iter().filter(|s| !s.ends_with("berth.sock") && !s.ends_with("docker.sock")) {
            assert_eq!(std::fs::metadata(socket).expect("stat").mode() & 0o777, 0o600, "{}", socket.display());
        }

        exec.await.expect("join").expect("exec");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}
