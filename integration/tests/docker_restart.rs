//! Restart policies through the real docker CLI: `on-failure:N` stops after N restarts,
//! `always` restarts until `docker stop`, RestartCount counts, `--restart` with `--rm`
//! is refused, and after a simulated power loss (berthd, its shims and every container
//! process SIGKILLed) berthd starts `always` and running `unless-stopped` containers
//! again, and an `on-failure:N` one with retries left (its RestartCount kept), and leaves
//! stopped the ones without a policy, the `unless-stopped` one its user stopped and the
//! `on-failure:N` one whose N restarts were spent before the loss.
use std::time::{Duration, Instant};

use berth_integration::docker::DockerWorld;

fn inspect(docker: &DockerWorld, name: &str, format: &str) -> String {
    docker.docker(&["inspect", "-f", format, name]).ok().stdout.trim().to_string()
}

fn wait_for(docker: &DockerWorld, name: &str, format: &str, wanted: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let seen = inspect(docker, name, format);
        if seen == wanted || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn policies_restart_with_back_off_and_count() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3"]).ok();
    let settled = wait_for(&docker, "flaky", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}", "2 exited 3", Duration::from_secs(15));
    assert_eq!(settled, "2 exited 3");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(inspect(&docker, "flaky", "{{.RestartCount}} {{.State.Status}}"), "2 exited", "on-failure:2 went on");
    assert_eq!(inspect(&docker, "flaky", "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"), "on-failure 2");

    // A clean exit is no failure.
    docker.docker(&["run", "-d", "--name", "clean", "--restart", "on-failure", "busybox", "true"]).ok();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(inspect(&docker, "clean", "{{.RestartCount}} {{.State.Status}}"), "0 exited");

    docker.docker(&["run", "-d", "--name", "looper", "--restart", "always", "busybox", "true"]).ok();
    let deadline = Instant::now() + Duration::from_secs(15);
    while inspect(&docker, "looper", "{{.RestartCount}}").parse::<i64>().unwrap_or(0) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(inspect(&docker, "looper", "{{.RestartCount}}").parse::<i64>().unwrap_or(0) >= 3, "always did not restart");
    docker.docker(&["stop", "-t", "1", "looper"]).ok();
    let count = inspect(&docker, "looper", "{{.RestartCount}}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(inspect(&docker, "looper", "{{.RestartCount}} {{.State.Status}}"), format!("{count} exited"), "a stopped container came back: {}", docker.world.daemon.log());

    let both = docker.docker(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert!(both.code != 0 && both.stderr.contains("--restart"), "{both}");
    let body = r#"{"Image":"busybox","HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"always"}}}"#;
    let api = docker.in_netns(&format!(
        "curl -s -X POST -H 'Content-Type: application/json' -d '{body}' --unix-socket {} http://x/v1.50/containers/create",
        docker.socket().display()
    ));
    assert!(api.stdout.contains("can't create 'AutoRemove' container with restart policy"), "{api}");
    let unknown = r#"{"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#;
    let api = docker.in_netns(&format!(
        "curl -s -X POST -H 'Content-Type: application/json' -d '{unknown}' --unix-socket {} http://x/v1.50/containers/create",
        docker.socket().display()
    ));
    assert!(api.stdout.contains("invalid restart policy"), "{api}");
    let names = docker.docker(&["ps", "-a", "--format", "{{.Names}}"]).ok();
    assert_eq!(names.stdout.lines().count(), 3, "a refused create left a container: {names}");
}

#[test]
fn always_containers_come_back_after_a_power_loss() {
    let mut docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["run", "-d", "--name", "keeper", "--restart", "always", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "plain", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "parked", "--restart", "unless-stopped", "busybox", "sleep", "300"]).ok();
    docker.docker(&["stop", "-t", "1", "parked"]).ok();
    docker.docker(&["run", "-d", "--name", "steady", "--restart", "unless-stopped", "busybox", "sleep", "300"]).ok();
    // Fails once, then runs: one restart counted before the power loss.
    let fail_once = "test -e /again || { : > /again; exit 1; }; sleep 300";
    docker.docker(&["run", "-d", "--name", "spent", "--restart", "on-failure:1", "busybox", "sh", "-c", fail_once]).ok();
    docker.docker(&["run", "-d", "--name", "spare", "--restart", "on-failure:3", "busybox", "sh", "-c", fail_once]).ok();
    for name in ["spent", "spare"] {
        let settled = wait_for(&docker, name, "{{.RestartCount}} {{.State.Status}}", "1 running", Duration::from_secs(15));
        assert_eq!(settled, "1 running", "{name} did not fail once and run");
    }
    let old_pid = inspect(&docker, "keeper", "{{.State.Pid}}");

    docker.world.daemon.kill_everything();
    let stat = std::fs::read_to_string(format!("/proc/{old_pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z"), "the container survived the power loss: {stat}");
    docker.world.daemon.spawn();

    let state = wait_for(&docker, "keeper", "{{.State.Status}}", "running", Duration::from_secs(20));
    assert_eq!(state, "running", "the always container did not come back");
    let new_pid = inspect(&docker, "keeper", "{{.State.Pid}}");
    assert_ne!(new_pid, old_pid);
    let alive = docker.docker(&["exec", "keeper", "echo", "alive"]).ok();
    assert_eq!(alive.stdout, "alive\n");
    assert_eq!(wait_for(&docker, "steady", "{{.State.Status}}", "running", Duration::from_secs(20)), "running", "unless-stopped did not come back");
    let spare = wait_for(&docker, "spare", "{{.State.Status}}", "running", Duration::from_secs(20));
    assert_eq!(spare, "running", "on-failure:3 with retries left did not come back");
    let count = inspect(&docker, "spare", "{{.RestartCount}}").parse::<i64>().unwrap_or(0);
    assert!((1..=2).contains(&count), "the RestartCount was not kept across the loss: {count}");
    assert_eq!(inspect(&docker, "plain", "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&docker, "parked", "{{.State.Status}}"), "exited");
    std::thread::sleep(Duration::from_secs(2));
    let spent = inspect(&docker, "spent", "{{.State.Status}} {{.RestartCount}}");
    assert_eq!(spent, "exited 1", "on-failure:1 restarted again after its one restart");
    docker.docker(&["rm", "-f", "keeper", "plain", "parked", "steady", "spent", "spare"]).ok();
}
