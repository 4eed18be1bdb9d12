//! berth-shim with an external runtime (Debian's runc, behind a wrapper that takes 3 s
//! on `kill`): the shim goes on answering while the runtime runs, the runtime's own
//! exit statuses are not taken by the shim's reaper (its commands succeed), and an exec
//! that exits before the shim has recorded its pid still has its exit reported.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_integration::shim::{alive, block_on, ctx, eventually, Shim, ShimBundle};
use containerd_shim_protos::api::*;
use protobuf::well_known_types::any::Any;
use protobuf::Message;

fn runc() -> &'static str {
    ["/usr/sbin/runc", "/usr/bin/runc"].into_iter().find(|p| Path::new(p).exists()).expect("runc is installed (Debian package runc)")
}

/// A runc that sleeps 3 s before each `kill`.
fn slow_runc(dir: &Path) -> PathBuf {
    let path = dir.join("slow-runc");
    let script = format!("#!/bin/sh\ncase \" $* \" in *\" kill \"*) sleep 3;; esac\nexec {} \"$@\"\n", runc());
    std::fs::write(&path, script).expect("write the wrapper");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    path
}

fn create_request(bundle: &ShimBundle, binary: &Path) -> CreateTaskRequest {
    let options = containerd_shim_protos::shim::oci::Options { binary_name: binary.display().to_string(), ..Default::default() };
    let any = Any { type_url: "containerd.runc.v1.Options".into(), value: options.write_to_bytes().expect("options"), ..Default::default() };
    CreateTaskRequest { id: bundle.id.clone(), bundle: bundle.path_str(), options: Some(any).into(), ..Default::default() }
}

fn exec_spec(args: &[&str]) -> Any {
    let spec = serde_json::json!({"user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin"], "cwd": "/"});
    Any { type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(), value: spec.to_string().into_bytes(), ..Default::default() }
}

#[test]
fn the_shim_serves_while_an_external_runtime_runs() {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    let wrapper = slow_runc(bundle.path());
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let client = shim.client().await;
        let id = bundle.id.clone();
        let pid = client.create(ctx(), &create_request(&bundle, &wrapper)).await.expect("create with runc").pid as i32;
        client.start(ctx(), &StartRequest { id: id.clone(), ..Default::default() }).await.expect("start");
        assert!(alive(pid));
        // An exec that is over at once: its exit may be reaped before the shim knows its pid.
        for n in 0..5 {
            let exec_id = format!("quick{n}");
            let request = ExecProcessRequest { id: id.clone(), exec_id: exec_id.clone(), spec: Some(exec_spec(&["sh", "-c", "exit 3"])).into(), ..Default::default() };
            client.exec(ctx(), &request).await.expect("exec");
            client.start(ctx(), &StartRequest { id: id.clone(), exec_id: exec_id.clone(), ..Default::default() }).await.expect("start exec");
            let exit = client.wait(ctx(), &WaitRequest { id: id.clone(), exec_id: exec_id.clone(), ..Default::default() }).await.expect("wait exec");
            assert_eq!(exit.exit_status, 3, "exec {exec_id}");
            client.delete(ctx(), &DeleteRequest { id: id.clone(), exec_id, ..Default::default() }).await.expect("delete exec");
        }
        // A kill that takes the runtime 3 s; meanwhile the shim answers another client.
        let killer = shim.client().await;
        let kill = KillRequest { id: id.clone(), signal: 9, ..Default::default() };
        let killing = killer.kill(ctx(), &kill);
        let meanwhile = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let start = Instant::now();
            let state = client.state(ctx(), &StateRequest { id: id.clone(), ..Default::default() }).await.expect("state during the kill");
            assert_eq!(state.pid as i32, pid);
            client.connect(ctx(), &ConnectRequest { id: id.clone(), ..Default::default() }).await.expect("connect during the kill");
            start.elapsed()
        };
        let (killed, answered_in) = tokio::join!(killing, meanwhile);
        killed.expect("kill through the slow runtime");
        assert!(answered_in < Duration::from_millis(1500), "the shim stalled while the runtime ran: {answered_in:?}");
        let exit = client.wait(ctx(), &WaitRequest { id: id.clone(), ..Default::default() }).await.expect("wait");
        assert_eq!(exit.exit_status, 137);
        assert!(eventually(Duration::from_secs(5), || !alive(pid)), "container init {pid} still runs");
        client.delete(ctx(), &DeleteRequest { id: id.clone(), ..Default::default() }).await.expect("delete");
    });
}
