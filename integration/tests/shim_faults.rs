//! berth-shim under faults: a client that goes away mid-request and reconnects, a
//! container that exits while no client is connected, a shim killed with SIGKILL
//! (its container is killed and `berth-shim delete` reports it), concurrent starts for
//! one group, and a Kill in the window between a process's reaping and its published
//! exit. Run as root.

use std::time::Duration;

use berth_integration::shim::{alive, block_on, ctx, eventually, fifo_reader, Shim, ShimBundle};
use containerd_shim_protos::api::*;
use containerd_shim_protos::types::task::Status;

fn create_request(bundle: &ShimBundle) -> CreateTaskRequest {
    CreateTaskRequest { id: bundle.id.clone(), bundle: bundle.path_str(), ..Default::default() }
}

fn id_request<T: Default>(set: impl FnOnce(&mut T)) -> T {
    let mut request = T::default();
    set(&mut request);
    request
}

/// Children of `pid` that are zombies.
fn zombie_children(pid: i32) -> Vec<i32> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str()) {
            zombies.push(child);
        }
    }
    zombies
}

#[test]
fn a_client_killed_mid_wait_can_reconnect() {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let first = shim.client().await;
        first.create(ctx(), &create_request(&bundle)).await.expect("create");
        first.start(ctx(), &id_request(|r: &mut StartRequest| r.id = bundle.id.clone())).await.expect("start");
        let wait_request = id_request(|r: &mut WaitRequest| r.id = bundle.id.clone());
        let waiting = first.wait(ctx(), &wait_request);
        assert!(tokio::time::timeout(Duration::from_millis(200), waiting).await.is_err(), "wait returned early");
        drop(first);
        let second = shim.client().await;
        let state = second.state(ctx(), &id_request(|r: &mut StateRequest| r.id = bundle.id.clone())).await.expect("state");
        assert_eq!(state.status.enum_value_or_default(), Status::RUNNING);
        second.kill(ctx(), &id_request(|r: &mut KillRequest| { r.id = bundle.id.clone(); r.signal = 9; })).await.expect("kill");
        let exit = second.wait(ctx(), &id_request(|r: &mut WaitRequest| r.id = bundle.id.clone())).await.expect("wait");
        assert_eq!(exit.exit_status, 137);
        second.delete(ctx(), &id_request(|r: &mut DeleteRequest| r.id = bundle.id.clone())).await.expect("delete");
    });
}

#[test]
fn an_exit_while_no_client_is_connected_is_kept() {
    let bundle = ShimBundle::new(&["sh", "-c", "sleep 0.3; exit 4"]);
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let client = shim.client().await;
        let pid = client.create(ctx(), &create_request(&bundle)).await.expect("create").pid as i32;
        client.start(ctx(), &id_request(|r: &mut StartRequest| r.id = bundle.id.clone())).await.expect("start");
        drop(client);
        assert!(eventually(Duration::from_secs(5), || !alive(pid)), "the container did not exit");
        let record = shim.root.path().join(berth_integration::shim::NAMESPACE).join(&bundle.id).join("exit-init");
        assert!(eventually(Duration::from_secs(2), || record.exists()), "no exit record at {}", record.display());
        assert!(std::fs::read_to_string(&record).unwrap().starts_with("4 "));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let client = shim.client().await;
        let state = client.state(ctx(), &id_request(|r: &mut StateRequest| r.id = bundle.id.clone())).await.expect("state");
        assert_eq!((state.status.enum_value_or_default(), state.exit_status), (Status::STOPPED, 4));
        let exit = client.wait(ctx(), &id_request(|r: &mut WaitRequest| r.id = bundle.id.clone())).await.expect("wait");
        assert_eq!(exit.exit_status, 4);
        assert!(zombie_children(shim.pid()).is_empty(), "the shim left zombies");
        client.delete(ctx(), &id_request(|r: &mut DeleteRequest| r.id = bundle.id.clone())).await.expect("delete");
    });
}

#[test]
fn a_killed_shim_leaves_no_container_behind() {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    let (shim, pid) = block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let client = shim.client().await;
        let pid = client.create(ctx(), &create_request(&bundle)).await.expect("create").pid as i32;
        client.start(ctx(), &id_request(|r: &mut StartRequest| r.id = bundle.id.clone())).await.expect("start");
        (shim, pid)
    });
    let cgroups: Vec<_> = berth_integration::cgroups::all_cgroup_dirs(pid).into_iter().filter(|d| d.to_string_lossy().contains("berth-test")).collect();
    assert!(!cgroups.is_empty(), "the container has its own cgroups");
    let shim_pid = shim.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(shim_pid)));
    let response = shim.run_delete().expect("berth-shim delete");
    assert_eq!((response.pid as i32, response.exit_status), (pid, 137));
    assert!(eventually(Duration::from_secs(5), || !alive(pid)), "container init {pid} still runs");
    for dir in cgroups {
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&bundle.path_str()), "mounts left behind");
}

/// Eight `berth-shim start` at once for one group: all print the same address, and one
/// shim daemon serves it (a second one would have unlinked the first's socket and
/// orphaned it).
#[test]
fn concurrent_starts_make_one_shim() {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    let mut shim = Shim {
        root: berth_integration::tempdir::TempDir::new("shimroot"),
        address: String::new(),
        events_address: String::new(),
        bundle: bundle.path().to_path_buf(),
        id: bundle.id.clone(),
    };
    let addresses: Vec<String> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..8).map(|_| scope.spawn(|| shim.run_start())).collect();
        starts.into_iter().map(|start| start.join().expect("start thread")).collect()
    });
    assert!(addresses.iter().all(|a| a == &addresses[0]), "different addresses: {addresses:?}");
    shim.address = addresses[0].clone();
    let daemons: Vec<i32> = berth_integration::berthd::pids_with_cmdline_containing(&bundle.path_str()).into_iter().filter(|pid| alive(*pid)).collect();
    assert_eq!(daemons, vec![shim.pid()], "shim daemons for one group");
    block_on(async {
        let client = shim.client().await;
        let pid = client.create(ctx(), &create_request(&bundle)).await.expect("create through the one shim").pid as i32;
        assert!(alive(pid));
        client.kill(ctx(), &id_request(|r: &mut KillRequest| { r.id = bundle.id.clone(); r.signal = 9; })).await.expect("kill");
        client.delete(ctx(), &id_request(|r: &mut DeleteRequest| r.id = bundle.id.clone())).await.expect("delete");
    });
}

/// A TTY exec whose terminal a background child keeps open (ignoring the hang-up its
/// session's end sends): it is reaped at once, but
/// its exit is published only once the console's output is copied (up to 2 s). Its pid
/// is free for reuse from the reaping on, so a Kill in that window must answer NotFound
/// ("already finished") and signal nothing, not whatever process got the pid (before
/// the fix, the shim signalled the freed pid: ESRCH, an Internal error).
#[test]
fn a_reaped_process_is_never_signalled() {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let client = shim.client().await;
        client.create(ctx(), &create_request(&bundle)).await.expect("create");
        client.start(ctx(), &id_request(|r: &mut StartRequest| r.id = bundle.id.clone())).await.expect("start");
        let (stdout, reader) = fifo_reader(bundle.path(), "background-out");
        let spec = serde_json::json!({"terminal": true, "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "trap '' HUP; sleep 3 & exit 0"], "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/"});
        let spec = protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: spec.to_string().into_bytes(),
            ..Default::default()
        };
        let request = ExecProcessRequest { id: bundle.id.clone(), exec_id: "bg".into(), terminal: true, stdout, spec: Some(spec).into(), ..Default::default() };
        client.exec(ctx(), &request).await.expect("exec");
        let exec_start = id_request(|r: &mut StartRequest| { r.id = bundle.id.clone(); r.exec_id = "bg".into(); });
        let pid = client.start(ctx(), &exec_start).await.expect("start exec").pid;
        let reaped = eventually(Duration::from_millis(1500), || !std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(reaped, "exec {pid} was not reaped");
        let kill = id_request(|r: &mut KillRequest| { r.id = bundle.id.clone(); r.exec_id = "bg".into(); r.signal = 9; });
        match client.kill(ctx(), &kill).await {
            Err(ttrpc::Error::RpcStatus(status)) => {
                assert_eq!(status.code(), ttrpc::Code::NOT_FOUND, "{status:?}");
                assert!(status.message().contains("already finished"), "{status:?}");
            }
            other => panic!("a kill of reaped pid {pid} answered {other:?}"),
        }
        let state = id_request(|r: &mut StateRequest| { r.id = bundle.id.clone(); r.exec_id = "bg".into(); });
        let state = client.state(ctx(), &state).await.expect("state");
        assert_eq!(state.status.enum_value_or_default(), Status::RUNNING, "the window under test closed before the kill");
        let wait = id_request(|r: &mut WaitRequest| { r.id = bundle.id.clone(); r.exec_id = "bg".into(); });
        assert_eq!(client.wait(ctx(), &wait).await.expect("wait exec").exit_status, 0);
        client.kill(ctx(), &id_request(|r: &mut KillRequest| { r.id = bundle.id.clone(); r.signal = 9; r.all = true; })).await.expect("kill");
        client.wait(ctx(), &id_request(|r: &mut WaitRequest| r.id = bundle.id.clone())).await.expect("wait");
        client.delete(ctx(), &id_request(|r: &mut DeleteRequest| r.id = bundle.id.clone())).await.expect("delete");
        drop(reader);
    });
}
