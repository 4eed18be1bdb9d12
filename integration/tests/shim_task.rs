//! Containers through berth-shim's Task API, as containerd drives it: lifecycle and
//! exit codes, signals, exec with and without a TTY, CloseIO, pause/resume in the
//! freezer, Update in the cgroup files, Stats, Pids, the CRI log format, and events.
//! Run as root; needs the runtime's real cgroups and rootfs modules.

use std::time::Duration;

use berth_integration::cgroups::read_cgroup_file;
use berth_integration::shim::{alive, block_on, ctx, fifo_reader, fifo_writer_path, EventServer, Shim, ShimBundle};
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::TaskExit;
use containerd_shim_protos::shim_async::TaskClient;
use containerd_shim_protos::types::task::Status;
use protobuf::well_known_types::any::Any;
use protobuf::Message;

fn create_request(bundle: &ShimBundle, stdout: &str, stderr: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        id: bundle.id.clone(),
        bundle: bundle.path_str(),
        stdout: stdout.into(),
        stderr: stderr.into(),
        ..Default::default()
    }
}

async fn status(client: &TaskClient, id: &str, exec_id: &str) -> Status {
    let request = StateRequest { id: id.into(), exec_id: exec_id.into(), ..Default::default() };
    client.state(ctx(), &request).await.expect("state").status.enum_value_or_default()
}

/// Waits for the exit, for up to a minute: an emulated machine (the cgroup v2 VM lane)
/// takes seconds where the host takes milliseconds.
async fn wait(client: &TaskClient, id: &str, exec_id: &str) -> u32 {
    let request = WaitRequest { id: id.into(), exec_id: exec_id.into(), ..Default::default() };
    client.wait(ttrpc::context::with_timeout(60_000_000_000), &request).await.expect("wait").exit_status
}

async fn start(client: &TaskClient, id: &str, exec_id: &str) -> u32 {
    let request = StartRequest { id: id.into(), exec_id: exec_id.into(), ..Default::default() };
    client.start(ctx(), &request).await.expect("start").pid
}

async fn delete(client: &TaskClient, id: &str, exec_id: &str) -> DeleteResponse {
    let request = DeleteRequest { id: id.into(), exec_id: exec_id.into(), ..Default::default() };
    client.delete(ctx(), &request).await.expect("delete")
}

async fn kill(client: &TaskClient, id: &str, signal: u32, all: bool) {
    let request = KillRequest { id: id.into(), signal, all, ..Default::default() };
    client.kill(ctx(), &request).await.expect("kill");
}

fn exec_spec(args: &[&str], terminal: bool) -> Any {
    let spec = serde_json::json!({
        "terminal": terminal,
        "user": { "uid": 0, "gid": 0 },
        "args": args,
        "env": ["PATH=/bin", "TERM=xterm"],
        "cwd": "/",
        "noNewPrivileges": true
    });
    Any { type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(), value: spec.to_string().into_bytes(), ..Default::default() }
}

#[test]
fn lifecycle_output_exit_code_and_events() {
    let bundle = ShimBundle::new(&["sh", "-c", "echo hello; echo oops >&2; exit 3"]);
    block_on(async {
        let events = EventServer::start(bundle.path()).await;
        let shim = Shim::start(bundle.path(), &bundle.id, &events.path.display().to_string());
        let client = shim.client().await;
        let (stdout, out) = fifo_reader(bundle.path(), "stdout");
        let (stderr, err) = fifo_reader(bundle.path(), "stderr");
        let created = client.create(ctx(), &create_request(&bundle, &stdout, &stderr)).await.expect("create");
        assert!(created.pid > 0);
        assert_eq!(status(&client, &bundle.id, "").await, Status::CREATED);
        assert_eq!(start(&client, &bundle.id, "").await, created.pid);
        assert_eq!(wait(&client, &bundle.id, "").await, 3);
        assert_eq!(status(&client, &bundle.id, "").await, Status::STOPPED);
        let exit = events.log.wait_for("/tasks/exit", Duration::from_secs(5)).await.expect("TaskExit");
        let exit = TaskExit::parse_from_bytes(&exit.value).unwrap();
        assert_eq!((exit.exit_status, exit.pid, exit.id.as_str()), (3, created.pid, bundle.id.as_str()));
        let deleted = delete(&client, &bundle.id, "").await;
        assert_eq!((deleted.exit_status, deleted.pid), (3, created.pid));
        assert_eq!(out.join().unwrap(), "hello\n");
        assert_eq!(err.join().unwrap(), "oops\n");
        events.log.wait_for("/tasks/delete", Duration::from_secs(5)).await.expect("TaskDelete");
        assert_eq!(events.log.topics(), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
        assert_eq!(events.log.events()[2].1.type_url, "containerd.events.TaskExit");
        assert!(!alive(created.pid as i32));
    });
}

#[test]
fn signals_kill_one_or_all() {
    let bundle = ShimBundle::new(&["sh", "-c", "trap 'exit 7' TERM; sleep 100 & wait"]);
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let client = shim.client().await;
        client.create(ctx(), &create_request(&bundle, "", "")).await.expect("create");
        start(&client, &bundle.id, "").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        kill(&client, &bundle.id, libc::SIGTERM as u32, false).await;
        assert_eq!(wait(&client, &bundle.id, "").await, 7, "the trap's exit code");
        delete(&client, &bundle.id, "").await;
        let bundle2 = ShimBundle::new(&["sleep", "100"]);
        client.create(ctx(), &create_request(&bundle2, "", "")).await.expect("create 2");
        start(&client, &bundle2.id, "").await;
        kill(&client, &bundle2.id, libc::SIGKILL as u32, true).await;
        assert_eq!(wait(&client, &bundle2.id, "").await, 137);
        let error = client.kill(ctx(), &KillRequest { id: bundle2.id.clone(), signal: 9, ..Default::default() }).await;
        assert!(error.is_err(), "killing a stopped task fails");
        delete(&client, &bundle2.id, "").await;
    });
}

#[test]
fn exec_without_tty_and_close_io() {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    block_on(async {
        let events = EventServer::start(bundle.path()).await;
        let shim = Shim::start(bundle.path(), &bundle.id, &events.path.display().to_string());
        let client = shim.client().await;
        client.create(ctx(), &create_request(&bundle, "", "")).await.expect("create");
        start(&client, &bundle.id, "").await;
        let (stdout, out) = fifo_reader(bundle.path(), "exec-out");
        let request = ExecProcessRequest {
            id: bundle.id.clone(), exec_id: "e1".into(), stdout: stdout.clone(),
            spec: Some(exec_spec(&["sh", "-c", "echo in-exec; exit 5"], false)).into(), ..Default::default()
        };
        client.exec(ctx(), &request).await.expect("exec");
        assert_eq!(status(&client, &bundle.id, "e1").await, Status::CREATED);
        let pid = start(&client, &bundle.id, "e1").await;
        assert!(pid > 0);
        assert_eq!(wait(&client, &bundle.id, "e1").await, 5);
        assert_eq!(out.join().unwrap(), "in-exec\n");
        assert_eq!(delete(&client, &bundle.id, "e1").await.exit_status, 5);
        // stdin through a FIFO, ended by CloseIO.
        let stdin = fifo_writer_path(bundle.path(), "exec-in");
        let (stdout, out) = fifo_reader(bundle.path(), "exec-out2");
        let request = ExecProcessRequest {
            id: bundle.id.clone(), exec_id: "e2".into(), stdin: stdin.clone(), stdout,
            spec: Some(exec_spec(&["cat"], false)).into(), ..Default::default()
        };
        client.exec(ctx(), &request).await.expect("exec cat");
        start(&client, &bundle.id, "e2").await;
        std::fs::write(&stdin, "through stdin\n").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.close_io(ctx(), &CloseIORequest { id: bundle.id.clone(), exec_id: "e2".into(), stdin: true, ..Default::default() }).await.unwrap();
        assert_eq!(wait(&client, &bundle.id, "e2").await, 0);
        assert_eq!(out.join().unwrap(), "through stdin\n");
        let topics = events.log.topics();
        assert!(topics.contains(&"/tasks/exec-added".to_string()) && topics.contains(&"/tasks/exec-started".to_string()), "{topics:?}");
        kill(&client, &bundle.id, 9, true).await;
        wait(&client, &bundle.id, "").await;
        delete(&client, &bundle.id, "").await;
    });
}

#[test]
fn exec_with_tty_and_resize() {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let client = shim.client().await;
        client.create(ctx(), &create_request(&bundle, "", "")).await.expect("create");
        start(&client, &bundle.id, "").await;
        let (stdout, out) = fifo_reader(bundle.path(), "tty-out");
        let request = ExecProcessRequest {
            id: bundle.id.clone(), exec_id: "t1".into(), terminal: true, stdout,
            spec: Some(exec_spec(&["sh", "-c", "sleep 0.5; tty; stty size"], true)).into(), ..Default::default()
        };
        client.exec(ctx(), &request).await.expect("exec");
        start(&client, &bundle.id, "t1").await;
        let resize = ResizePtyRequest { id: bundle.id.clone(), exec_id: "t1".into(), width: 100, height: 30, ..Default::default() };
        client.resize_pty(ctx(), &resize).await.expect("resize");
        assert_eq!(wait(&client, &bundle.id, "t1").await, 0);
        delete(&client, &bundle.id, "t1").await;
        kill(&client, &bundle.id, 9, true).await;
        wait(&client, &bundle.id, "").await;
        delete(&client, &bundle.id, "").await;
        drop(shim);
        let output = out.join().unwrap();
        assert!(output.contains("/dev/pts/"), "{output:?}");
        assert!(output.contains("30 100"), "{output:?}");
    });
}

#[test]
fn pause_resume_update_stats_pids() {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    block_on(async {
        let events = EventServer::start(bundle.path()).await;
        let shim = Shim::start(bundle.path(), &bundle.id, &events.path.display().to_string());
        let client = shim.client().await;
        let pid = client.create(ctx(), &create_request(&bundle, "", "")).await.expect("create").pid as i32;
        start(&client, &bundle.id, "").await;
        client.pause(ctx(), &PauseRequest { id: bundle.id.clone(), ..Default::default() }).await.expect("pause");
        assert_eq!(status(&client, &bundle.id, "").await, Status::PAUSED);
        assert_eq!(read_cgroup_file(pid, "freezer", "freezer.state", "cgroup.freeze"), if berth_integration::cgroups::is_v2() { "1" } else { "FROZEN" });
        client.resume(ctx(), &ResumeRequest { id: bundle.id.clone(), ..Default::default() }).await.expect("resume");
        assert_eq!(status(&client, &bundle.id, "").await, Status::RUNNING);
        let resources = serde_json::json!({ "memory": { "limit": 64 * 1024 * 1024 } });
        let request = UpdateTaskRequest {
            id: bundle.id.clone(),
            resources: Some(Any { value: resources.to_string().into_bytes(), ..Default::default() }).into(),
            ..Default::default()
        };
        client.update(ctx(), &request).await.expect("update");
        assert_eq!(read_cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max"), (64 * 1024 * 1024).to_string());
        let stats = client.stats(ctx(), &StatsRequest { id: bundle.id.clone(), ..Default::default() }).await.expect("stats");
        check_stats(stats.stats.as_ref().expect("stats Any"));
        let pids = client.pids(ctx(), &PidsRequest { id: bundle.id.clone(), ..Default::default() }).await.expect("pids");
        assert!(pids.processes.iter().any(|p| p.pid as i32 == pid), "{:?}", pids.processes);
        kill(&client, &bundle.id, 9, false).await;
        assert_eq!(wait(&client, &bundle.id, "").await, 137);
        delete(&client, &bundle.id, "").await;
        let topics = events.log.topics();
        assert!(topics.contains(&"/tasks/paused".to_string()) && topics.contains(&"/tasks/resumed".to_string()), "{topics:?}");
    });
}

fn check_stats(any: &Any) {
    use containerd_shim_protos::{cgroups::metrics as v1, cgroups_v2::metrics as v2};
    if any.type_url == "io.containerd.cgroups.v2.Metrics" {
        let metrics = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert!(metrics.pids.current >= 1);
        assert_eq!(metrics.memory.usage_limit, 64 * 1024 * 1024);
        assert!(metrics.memory.usage > 0);
    } else {
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let metrics = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert!(metrics.pids.current >= 1, "{metrics:?}");
        assert_eq!(metrics.memory.usage.limit, 64 * 1024 * 1024);
        assert!(metrics.memory.usage.usage > 0);
        assert!(metrics.cpu.usage.total > 0);
    }
}

#[test]
fn cri_log_format_partial_lines_and_reopen() {
    let mut bundle = ShimBundle::new(&["true"]);
    let log = bundle.path().join("logs/container.log");
    bundle.spec["annotations"] = serde_json::json!({ "io.berth.cri.log-path": log.display().to_string() });
    let script = "echo first; echo second >&2; head -c 9000 /dev/zero | tr '\\0' x; echo; read line < /tmp/go; echo after-rotate";
    bundle.spec["process"]["args"] = serde_json::json!(["sh", "-c", script]);
    bundle.write_config();
    nix::unistd::mkfifo(&bundle.path().join("rootfs/tmp/go"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let client = shim.client().await;
        client.create(ctx(), &create_request(&bundle, "", "")).await.expect("create");
        start(&client, &bundle.id, "").await;
        let written = || std::fs::read_to_string(&log).is_ok_and(|t| t.matches('x').count() >= 9000);
        assert!(berth_integration::shim::eventually(Duration::from_secs(20), written), "the long line never reached the log");
        std::fs::rename(&log, log.with_extension("log.1")).unwrap();
        let mut annotations = std::collections::HashMap::new();
        annotations.insert("io.berth.cri.reopen-log".to_string(), String::new());
        client.update(ctx(), &UpdateTaskRequest { id: bundle.id.clone(), annotations, ..Default::default() }).await.expect("reopen");
        std::fs::write(bundle.path().join("rootfs/tmp/go"), "go\n").unwrap();
        assert_eq!(wait(&client, &bundle.id, "").await, 0);
        delete(&client, &bundle.id, "").await;
    });
    let first = std::fs::read_to_string(log.with_extension("log.1")).unwrap();
    let entries: Vec<(&str, &str, &str)> = first.lines().map(parse_cri).collect();
    assert!(entries.contains(&("stdout", "F", "first")), "{first}");
    assert!(entries.contains(&("stderr", "F", "second")), "{first}");
    let long: Vec<_> = entries.iter().filter(|(s, _, c)| *s == "stdout" && c.starts_with('x')).collect();
    assert_eq!(long.first().map(|e| e.1), Some("P"), "a 9000-byte line is split: {long:?}");
    assert_eq!(long.last().map(|e| e.1), Some("F"));
    assert_eq!(long.iter().map(|e| e.2.len()).sum::<usize>(), 9000);
    let second = std::fs::read_to_string(&log).unwrap();
    assert_eq!(second.lines().map(parse_cri).collect::<Vec<_>>(), [("stdout", "F", "after-rotate")]);
}

/// Checks a CRI log line's time format and returns (stream, tag, content).
fn parse_cri(line: &str) -> (&str, &str, &str) {
    let mut parts = line.splitn(4, ' ');
    let (time, stream, tag, content) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""));
    let bytes = time.as_bytes();
    assert_eq!(bytes.len(), 30, "time {time:?}");
    assert!(bytes[4] == b'-' && bytes[10] == b'T' && bytes[19] == b'.' && bytes[29] == b'Z', "time {time:?}");
    (stream, tag, content)
}

#[test]
fn an_oom_kill_is_published_before_the_exit() {
    let mut bundle = ShimBundle::new(&["sh", "-c", "head -c 200000000 /dev/zero | tail > /dev/null"]);
    bundle.spec["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024 });
    bundle.write_config();
    block_on(async {
        let events = EventServer::start(bundle.path()).await;
        let shim = Shim::start(bundle.path(), &bundle.id, &events.path.display().to_string());
        let client = shim.client().await;
        client.create(ctx(), &create_request(&bundle, "", "")).await.expect("create");
        start(&client, &bundle.id, "").await;
        let status = wait(&client, &bundle.id, "").await;
        events.log.wait_for("/tasks/exit", Duration::from_secs(5)).await.expect("TaskExit");
        let topics = events.log.topics();
        let oom = topics.iter().position(|t| t == "/tasks/oom");
        let exit = topics.iter().position(|t| t == "/tasks/exit");
        assert!(oom.is_some() && oom < exit, "exit status {status}, events {topics:?}");
        delete(&client, &bundle.id, "").await;
    });
}
