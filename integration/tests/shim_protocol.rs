//! berth-shim's launch protocol and ttrpc service, without needing a container:
//! `start` (new and existing shim), both Task service names, errors for unknown
//! containers, Checkpoint's Unimplemented answer, Shutdown, and `delete` after a
//! SIGKILLed shim. Run as root.

use std::time::Duration;

use berth_integration::shim::{block_on, ctx, eventually, EventServer, Shim, ShimBundle};
use containerd_shim_protos::api::{CheckpointTaskRequest, ConnectRequest, ConnectResponse, CreateTaskRequest, ShutdownRequest, StateRequest};
use protobuf::Message;

fn rpc_code(error: ttrpc::Error) -> (ttrpc::Code, String) {
    match error {
        ttrpc::Error::RpcStatus(status) => (status.code(), status.message().to_string()),
        other => panic!("expected an RPC status, got {other:?}"),
    }
}

#[test]
fn start_prints_the_address_and_finds_a_running_shim() {
    let bundle = ShimBundle::new(&["true"]);
    block_on(async {
        let events = EventServer::start(bundle.path()).await;
        let shim = Shim::start(bundle.path(), &bundle.id, &events.path.display().to_string());
        assert!(shim.address.starts_with("unix:///"), "address {:?}", shim.address);
        assert_eq!(std::fs::read_to_string(bundle.path().join("address")).unwrap(), shim.address);
        assert_eq!(shim.run_start(), shim.address, "a second start finds the running shim");
        let client = shim.client().await;
        let connect = client.connect(ctx(), &ConnectRequest { id: bundle.id.clone(), ..Default::default() }).await.unwrap();
        assert_eq!(connect.shim_pid as i32, shim.pid());
        assert!(connect.version.contains("berth-shim"));
        // The daemon runs from a read-only view of its binary (CVE-2019-5736).
        let exe = nix::sys::statvfs::statvfs(format!("/proc/{}/exe", shim.pid()).as_str()).unwrap();
        assert!(exe.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY), "the shim's exe is writable");
    });
}

#[test]
fn both_task_service_names_answer() {
    let bundle = ShimBundle::new(&["true"]);
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let stream = tokio::net::UnixStream::connect(shim.socket_path()).await.unwrap();
        let client = ttrpc::asynchronous::Client::new(stream.into());
        for service in ["containerd.task.v2.Task", "containerd.task.v3.Task"] {
            let request = ttrpc::Request {
                service: service.into(),
                method: "Connect".into(),
                payload: ConnectRequest { id: bundle.id.clone(), ..Default::default() }.write_to_bytes().unwrap(),
                timeout_nano: 5_000_000_000,
                ..Default::default()
            };
            let response = client.request(request).await.unwrap_or_else(|e| panic!("{service}: {e:?}"));
            let connect = ConnectResponse::parse_from_bytes(&response.payload).unwrap();
            assert_eq!(connect.shim_pid as i32, shim.pid(), "{service}");
        }
    });
}

#[test]
fn unknown_containers_checkpoint_and_bad_bundles_are_errors() {
    let bundle = ShimBundle::new(&["true"]);
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let client = shim.client().await;
        let error = client.state(ctx(), &StateRequest { id: "nope".into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(rpc_code(error).0, ttrpc::Code::NOT_FOUND);
        let request = CheckpointTaskRequest { id: bundle.id.clone(), path: "/tmp/x".into(), ..Default::default() };
        let (code, message) = rpc_code(client.checkpoint(ctx(), &request).await.unwrap_err());
        assert_eq!(code, ttrpc::Code::UNIMPLEMENTED);
        assert!(message.contains("checkpoint"), "{message}");
        let request = CreateTaskRequest { id: "bad".into(), bundle: "/nonexistent/bundle".into(), ..Default::default() };
        let (code, message) = rpc_code(client.create(ctx(), &request).await.unwrap_err());
        assert_ne!(code, ttrpc::Code::OK);
        assert!(message.contains("/nonexistent/bundle"), "{message}");
        assert!(!shim.root.path().join("berth-test/bad").exists(), "a failed create leaves no state");
        // The shim still answers after errors.
        let error = client.state(ctx(), &StateRequest { id: "bad".into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(rpc_code(error).0, ttrpc::Code::NOT_FOUND);
    });
}

#[test]
fn shutdown_stops_an_idle_shim_and_removes_its_socket() {
    let bundle = ShimBundle::new(&["true"]);
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let pid = shim.pid();
        let client = shim.client().await;
        client.shutdown(ctx(), &ShutdownRequest { id: bundle.id.clone(), now: false, ..Default::default() }).await.unwrap();
        assert!(eventually(Duration::from_secs(5), || !berth_integration::shim::alive(pid)), "shim {pid} still runs");
        assert!(!shim.socket_path().exists(), "socket left behind");
    });
}

#[test]
fn delete_after_a_killed_shim_answers_a_delete_response() {
    let bundle = ShimBundle::new(&["true"]);
    let shim = Shim::start(bundle.path(), &bundle.id, "");
    let pid = shim.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(eventually(Duration::from_secs(5), || !berth_integration::shim::alive(pid)));
    let response = shim.run_delete().expect("berth-shim delete");
    assert_eq!(response.exit_status, 137);
    assert!(response.exited_at.seconds > 0);
    assert!(!shim.socket_path().exists(), "the dead shim's socket is removed");
}
