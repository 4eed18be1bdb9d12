//! The Docker Engine API façade through the real docker CLI (28.2, API 1.50): version,
//! info, pull, run (attached, detached, with stdin, with a TTY), ps, logs, inspect,
//! exec, top, stats, pause, stop, start, restart, kill, wait, rename, rm; published
//! ports reached from berthd's namespace; Docker's objects apart from the CRI's.
use std::time::Duration;

use berth_integration::cri::runtime;
use berth_integration::docker::DockerWorld;
use k8s_cri::v1 as cri;

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn version_info_pull_and_run_with_exit_codes() {
    let docker = DockerWorld::new();
    let version = docker.docker(&["version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{range .Server.Components}}{{.Name}}/{{.Details.Program}} {{end}}"]).ok();
    assert_eq!(version.stdout.trim(), "1.50 1.24 Engine/berthd berth-shim/berth-shim berth-runc/berth-runc", "{version}");
    let ping = docker.in_netns(&format!("curl -si --unix-socket {} http://x/v1.50/_ping", docker.socket().display()));
    let headers = ping.stdout.to_ascii_lowercase();
    assert!(headers.contains("api-version: 1.50") && headers.contains("ostype: linux") && headers.contains("docker-experimental: false"), "{ping}");
    let info = docker.docker(&["info", "--format", "{{.Driver}} {{.CgroupDriver}} {{.OSType}} {{.Containers}}"]).ok();
    assert_eq!(info.stdout.trim(), "overlayfs cgroupfs linux 0", "{info}");

    let pulled = docker.docker(&["pull", "busybox"]).ok();
    assert!(pulled.stdout.contains("Status: Downloaded newer image for busybox:latest"), "{pulled}");
    let images = docker.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).ok();
    assert_eq!(lines(&images.stdout), ["busybox:latest"], "{images}");

    let hello = docker.docker(&["run", "--rm", "busybox", "echo", "hi"]).ok();
    assert_eq!(hello.stdout, "hi\n", "{hello}");
    let failing = docker.docker(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((failing.code, failing.stdout.as_str(), failing.stderr.as_str()), (3, "out\n", "err\n"), "{failing}");
    let piped = docker.docker_with_input(&["run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z"], "piped input\n").ok();
    assert_eq!(piped.stdout, "PIPED INPUT\n", "{piped}");
    let left = docker.docker(&["ps", "-a", "-q"]).ok();
    assert_eq!(left.stdout, "", "--rm left containers: {left}");

    // Docker's containers are not the CRI's, and the other way round.
    docker.docker(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "300"]).ok();
    runtime().block_on(async {
        let mut client = docker.world.daemon.runtime().await;
        let containers = client.list_containers(cri::ListContainersRequest::default()).await.expect("list").into_inner().containers;
        assert!(containers.is_empty(), "the CRI sees Docker's containers: {containers:?}");
        let pods = client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.expect("list pods").into_inner().items;
        assert!(pods.is_empty(), "the CRI sees Docker's sandboxes: {pods:?}");
    });
    docker.docker(&["rm", "-f", "sleeper"]).ok();
    assert_eq!(docker.docker(&["ps", "-a", "-q"]).ok().stdout, "");
}

#[test]
fn detached_container_ports_ps_inspect_exec_logs_and_lifecycle() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let script = "mkdir -p /www && echo hello from berth > /www/index.html && echo started && echo warn >&2 && exec httpd -f -p 80 -h /www";
    let id = docker.docker(&["run", "-d", "--name", "web", "-p", "8080:80", "--label", "role=web", "busybox", "sh", "-c", script]).ok().stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");

    let ps = docker.docker(&["ps", "--format", "{{.Names}}|{{.Status}}|{{.Ports}}|{{.Image}}"]).ok();
    let row = lines(&ps.stdout).into_iter().next().unwrap_or_default().to_string();
    assert!(row.starts_with("web|Up ") && row.contains("0.0.0.0:8080->80/tcp") && row.ends_with("|busybox"), "{ps}");
    let filtered = docker.docker(&["ps", "-q", "--no-trunc", "--filter", "label=role=web", "--filter", "status=running"]).ok();
    assert_eq!(filtered.stdout.trim(), id);
    assert_eq!(docker.docker(&["ps", "-q", "--filter", "label=role=db"]).ok().stdout, "");

    let inspect = docker.docker(&["inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.Name}} {{.Config.Hostname}} {{.NetworkSettings.IPAddress}}", "web"]).ok();
    let fields: Vec<&str> = inspect.stdout.split_whitespace().collect();
    assert_eq!(&fields[..4], ["running", "true", "/web", &id[..12]], "{inspect}");
    let ip = fields[4].to_string();
    assert!(ip.starts_with("172.17."), "{inspect}");

    // The published port, from berthd's side of the namespace; and the container's address.
    let mut page = String::new();
    for _ in 0..50 {
        page = docker.in_netns("curl -s -m 2 http://127.0.0.1:8080/").stdout;
        if !page.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(page, "hello from berth\n");
    let direct = docker.in_netns(&format!("curl -s -m 2 http://{ip}:80/")).ok();
    assert_eq!(direct.stdout, "hello from berth\n");

    let exec = docker.docker(&["exec", "web", "sh", "-c", "echo from exec; echo to err >&2; hostname"]).ok();
    assert_eq!(exec.stdout, format!("from exec\n{}\n", &id[..12]), "{exec}");
    assert_eq!(exec.stderr, "to err\n");
    assert_eq!(docker.docker(&["exec", "web", "sh", "-c", "exit 7"]).code, 7);
    let stdin_exec = docker.docker_with_input(&["exec", "-i", "web", "tr", "a-z", "A-Z"], "shout\n").ok();
    assert_eq!(stdin_exec.stdout, "SHOUT\n");

    let logs = docker.docker(&["logs", "web"]).ok();
    assert_eq!((logs.stdout.as_str(), logs.stderr.as_str()), ("started\n", "warn\n"), "{logs}");
    let stamped = docker.docker(&["logs", "--timestamps", "web"]).ok();
    assert!(stamped.stdout.contains("Z started\n") && stamped.stdout.starts_with("20"), "{stamped}");

    let top = docker.docker(&["top", "web"]).ok();
    assert!(top.stdout.contains("PID") && top.stdout.contains("httpd -f -p 80"), "{top}");
    let stats = docker.docker(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "web"]).ok();
    assert_eq!(stats.stdout.trim(), "web 1", "{stats}");

    docker.docker(&["pause", "web"]).ok();
    assert!(docker.docker(&["ps", "--format", "{{.Status}}"]).ok().stdout.contains("(Paused)"));
    let paused_exec = docker.docker(&["exec", "web", "true"]).failed();
    assert!(paused_exec.stderr.contains("is paused"), "{paused_exec}");
    docker.docker(&["unpause", "web"]).ok();

    let refused = docker.docker(&["rm", "web"]).failed();
    assert!(refused.stderr.contains("container is running: stop the container before removing or force remove"), "{refused}");
    assert_eq!(docker.docker(&["stop", "-t", "1", "web"]).ok().stdout.trim(), "web");
    let exited = docker.docker(&["ps", "-a", "--format", "{{.Status}}"]).ok();
    assert!(exited.stdout.starts_with("Exited ("), "{exited}");
    let exec_exited = docker.docker(&["exec", "web", "true"]).failed();
    assert!(exec_exited.stderr.contains("is not running"), "{exec_exited}");

    docker.docker(&["start", "web"]).ok();
    docker.docker(&["restart", "-t", "1", "web"]).ok();
    assert!(docker.docker(&["inspect", "-f", "{{.State.Running}}", "web"]).ok().stdout.starts_with("true"));
    docker.docker(&["kill", "web"]).ok();
    assert_eq!(docker.docker(&["wait", "web"]).ok().stdout.trim(), "137");
    docker.docker(&["rename", "web", "site"]).ok();
    assert_eq!(docker.docker(&["ps", "-a", "--format", "{{.Names}}"]).ok().stdout.trim(), "site");
    docker.docker(&["rm", "site"]).ok();
    let gone = docker.docker(&["inspect", "site"]).failed();
    assert!(gone.stderr.contains("No such object: site") || gone.stderr.contains("No such container: site"), "{gone}");
}

#[test]
fn logs_follow_tail_and_wait() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["run", "-d", "--name", "talker", "busybox", "sh", "-c", "echo one; echo two >&2; echo three; sleep 1; echo four"]).ok();
    let followed = docker.docker(&["logs", "-f", "talker"]).ok();
    assert_eq!((followed.stdout.as_str(), followed.stderr.as_str()), ("one\nthree\nfour\n", "two\n"), "{followed}");
    assert_eq!(docker.docker(&["wait", "talker"]).ok().stdout.trim(), "0");
    let tail = docker.docker(&["logs", "--tail", "1", "talker"]).ok();
    assert_eq!(tail.stdout, "four\n", "{tail}");
    let exited = docker.docker(&["ps", "-a", "--filter", "exited=0", "--format", "{{.Names}}"]).ok();
    assert_eq!(exited.stdout.trim(), "talker");
    docker.docker(&["container", "prune", "-f"]).ok();
    assert_eq!(docker.docker(&["ps", "-a", "-q"]).ok().stdout, "");
}

#[test]
fn terminal_run_and_exec() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let run = docker.docker_in_terminal(&["run", "-it", "--rm", "busybox", "sh"], "echo tty-$((40+2)); [ -t 0 ] && echo on-a-terminal; exit 5\n");
    assert_eq!(run.code, 5, "{run}");
    assert!(run.stdout.contains("tty-42") && run.stdout.contains("on-a-terminal"), "{run}");
    docker.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]).ok();
    let exec = docker.docker_in_terminal(&["exec", "-it", "box", "sh"], "echo in-$((1+1)); [ -t 1 ] && echo on-a-terminal; exit 4\n");
    assert_eq!(exec.code, 4, "{exec}");
    assert!(exec.stdout.contains("in-2") && exec.stdout.contains("on-a-terminal"), "{exec}");
    docker.docker(&["rm", "-f", "box"]).ok();
}

#[test]
fn bad_input_gets_dockers_errors_and_leaves_nothing() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let missing = docker.docker(&["run", "--rm", "nosuch/image"]).failed();
    assert_eq!(missing.code, 125, "{missing}");
    assert!(missing.stderr.contains("Unable to find image 'nosuch/image:latest' locally"), "{missing}");
    let missing_create = docker.docker(&["create", "--pull", "never", "nosuch/image"]).failed();
    assert!(missing_create.stderr.contains("No such image: nosuch/image:latest"), "{missing_create}");

    docker.docker(&["run", "-d", "--name", "dup", "-p", "9090:80", "busybox", "sleep", "300"]).ok();
    let duplicate = docker.docker(&["create", "--name", "dup", "busybox", "true"]).failed();
    assert!(duplicate.stderr.contains("Conflict. The container name \"/dup\" is already in use by container"), "{duplicate}");
    // As dockerd: the port is taken at start; the refused container stays created.
    let port = docker.docker(&["run", "--name", "other", "-p", "9090:80", "busybox", "true"]).failed();
    assert!(port.code == 125 && port.stderr.contains("Bind for 0.0.0.0:9090 failed: port is already allocated"), "{port}");
    assert_eq!(docker.inspect("other", "{{.State.Status}}"), "created");
    docker.docker(&["rm", "other"]).ok();
    let network = docker.docker(&["create", "--network", "nosuchnet", "busybox", "true"]).failed();
    assert!(network.stderr.contains("network nosuchnet not found"), "{network}");
    let name = docker.docker(&["create", "--name", "bad name!", "busybox", "true"]).failed();
    assert!(name.stderr.contains("Invalid container name (bad name!)"), "{name}");
    let unknown = docker.docker(&["start", "nosuch"]).failed();
    assert!(unknown.stderr.contains("No such container: nosuch"), "{unknown}");

    let socket = docker.socket().display().to_string();
    let curl = |body: &str| docker.in_netns(&format!("curl -s -w '\\n%{{http_code}}' --unix-socket {socket} -H 'Content-Type: application/json' -d '{body}' http://x/v1.50/containers/create")).ok().stdout;
    let malformed = curl("{\"Image\": ");
    assert!(malformed.ends_with("\n400") && malformed.contains("\"message\""), "{malformed}");
    let wrong_type = curl("{\"Image\": \"busybox\", \"HostConfig\": {\"Memory\": \"lots\"}}");
    assert!(wrong_type.ends_with("\n400") && wrong_type.contains("Memory") || wrong_type.contains("invalid type"), "{wrong_type}");
    let old = docker.in_netns(&format!("curl -s -w '\\n%{{http_code}}' --unix-socket {socket} http://x/v1.12/containers/json")).ok().stdout;
    assert!(old.ends_with("\n400") && old.contains("is too old"), "{old}");

    // Only `dup` was made: one container, one sandbox (one netns pinned), one address.
    assert_eq!(lines(&docker.docker(&["ps", "-a", "--format", "{{.Names}}"]).ok().stdout), ["dup"]);
    let pinned = std::fs::read_dir(docker.world.daemon.state().join("netns")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(pinned, 1);
    docker.docker(&["rm", "-f", "dup"]).ok();
    let pinned = std::fs::read_dir(docker.world.daemon.state().join("netns")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(pinned, 0);
}

#[test]
fn images_tag_history_inspect_rmi_save_load_commit_and_events() {
    let docker = DockerWorld::new();
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["tag", "busybox", "example/mine:v1"]).ok();
    let tags = docker.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=example/*"]).ok();
    assert_eq!(lines(&tags.stdout), ["example/mine:v1"]);
    let layers = docker.docker(&["image", "inspect", "-f", "{{len .RootFS.Layers}} {{.Os}} {{index .Config.Cmd 0}}", "example/mine:v1"]).ok();
    assert_eq!(layers.stdout.trim(), "1 linux /bin/sh");
    let history = docker.docker(&["history", "--format", "{{.CreatedBy}}", "busybox"]).ok();
    assert_eq!(lines(&history.stdout), ["layer 0"]);

    docker.docker(&["run", "--name", "maker", "busybox", "sh", "-c", "echo made > /marker"]).ok();
    docker.docker(&["commit", "-c", "CMD [\"cat\", \"/marker\"]", "maker", "example/made:1"]).ok();
    assert_eq!(docker.docker(&["run", "--rm", "example/made:1"]).ok().stdout, "made\n");
    let in_use = docker.docker(&["rmi", "busybox"]);
    assert!(in_use.success() && in_use.stdout.contains("Untagged: busybox:latest"), "{in_use}");

    let archive = docker.config_dir.path().join("saved.tar");
    docker.docker(&["save", "-o", archive.to_str().unwrap(), "example/mine:v1"]).ok();
    docker.docker(&["rm", "maker"]).ok();
    docker.docker(&["rmi", "example/made:1"]).ok();
    let removed = docker.docker(&["rmi", "example/mine:v1"]).ok();
    assert!(removed.stdout.contains("Deleted: sha256:"), "{removed}");
    let loaded = docker.docker(&["load", "-i", archive.to_str().unwrap()]).ok();
    assert!(loaded.stdout.contains("Loaded image: example/mine:v1"), "{loaded}");
    let nope = docker.docker(&["rmi", "nosuch:tag"]).failed();
    assert!(nope.stderr.contains("No such image: nosuch:tag"), "{nope}");

    let until = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1).to_string();
    std::thread::sleep(Duration::from_millis(1100));
    let events = docker.docker(&["events", "--since", &since, "--until", &until, "--filter", "type=container", "--format", "{{.Action}} {{.Actor.Attributes.name}}"]).ok();
    let seen = lines(&events.stdout);
    for wanted in ["create maker", "start maker", "die maker", "destroy maker"] {
        assert!(seen.contains(&wanted), "{wanted} missing from {events}");
    }
}
