//! CRI runtime handlers: a handler configured with an external runc-compatible binary
//! (Debian's runc) runs the pod's containers through that binary, seen in runc's own
//! state; an unknown handler is refused.

use berth_integration::cri::*;
use k8s_cri::v1 as cri;

const RUNC: &str = "/usr/sbin/runc";

fn runc_binary() -> String {
    ["/usr/sbin/runc", "/usr/bin/runc"].into_iter().find(|p| std::path::Path::new(p).exists()).unwrap_or(RUNC).to_string()
}

#[test]
fn a_pod_on_the_runc_handler_runs_its_containers_with_runc() {
    let runc = runc_binary();
    let world = World::with_config(&format!("[runtimes.runc]\npath = \"{runc}\"\n"));
    let logs = world.daemon.dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("onrunc", logs.to_str().unwrap());
        let request = cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: "runc".into() };
        let pod = client.run_pod_sandbox(request).await.expect("run pod").into_inner().pod_sandbox_id;
        let id = start_container(&mut client, &pod, &config, container_config("app", &["sh", "-c", "echo hello from runc; exec sleep 1000"])).await;

        // runc itself knows the container, as running, with the pid berthd reports.
        let root = world.daemon.state().join("shims").join("berth").join("runtime-runc");
        let state = std::process::Command::new(&runc).arg("--root").arg(&root).args(["state", &id]).output().expect("runc state");
        assert!(state.status.success(), "runc state: {}", String::from_utf8_lossy(&state.stderr));
        let state: serde_json::Value = serde_json::from_slice(&state.stdout).expect("state json");
        assert_eq!(state["status"], "running", "{state}");
        assert_eq!(state["pid"].as_i64(), Some(pid_of(&mut client, &id).await as i64));

        // Exec, the CRI log, and stop go through runc too.
        let echoed = exec(&mut client, &id, &["sh", "-c", "echo out; echo err >&2; exit 3"]).await;
        assert_eq!((echoed.exit_code, &echoed.stdout[..], &echoed.stderr[..]), (3, &b"out\n"[..], &b"err\n"[..]));
        let log = std::fs::read_to_string(logs.join("app.log")).expect("log");
        assert!(log.lines().any(|l| l.ends_with(" stdout F hello from runc")), "{log}");
        let stop = cri::StopContainerRequest { container_id: id.clone(), timeout: 1 };
        client.stop_container(stop).await.expect("stop");
        let stopped = status(&mut client, &id).await;
        assert_eq!(stopped.state, cri::ContainerState::ContainerExited as i32);
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove pod");
        let gone = std::process::Command::new(&runc).arg("--root").arg(&root).args(["state", &id]).output().expect("runc state");
        assert!(!gone.status.success(), "runc still has the container");

        // A handler that is not configured is refused, and leaves no pod behind.
        let request = cri::RunPodSandboxRequest { config: Some(pod_config("nohandler", "")), runtime_handler: "kata".into() };
        let refused = client.run_pod_sandbox(request).await.expect_err("unknown handler");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("kata"), "{refused:?}");
        let pods = client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.expect("list").into_inner().items;
        assert!(pods.is_empty(), "{pods:?}");
    });
}
