//! Files through the Docker façade with the real docker CLI: `docker cp` both ways
//! (files, directories, tar on stdout, running and stopped containers, symlinks kept
//! inside the container), `docker diff` (A, C, D from the writable layer), `--tmpfs`,
//! `--ulimit`, `--init`, logs that survive a restart of berthd, and archives larger than
//! any request buffer streamed through `docker import`, `load` and `cp`.
use std::time::Duration;

use berth_integration::docker::DockerWorld;

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

fn view_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().filter(|l| l.contains("/docker/") && l.contains("/view-")).count()
}

#[test]
fn cp_in_and_out_of_running_and_stopped_containers() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]).ok();
    let local = docker.config_dir.path();
    std::fs::write(local.join("in.txt"), "copied in\n").expect("write");
    std::fs::create_dir_all(local.join("tree/sub")).expect("mkdir");
    std::fs::write(local.join("tree/sub/leaf.txt"), "leaf\n").expect("write");
    let path = |name: &str| local.join(name).display().to_string();

    docker.docker(&["cp", &path("in.txt"), "box:/tmp/"]).ok();
    docker.docker(&["cp", &path("in.txt"), "box:/tmp/renamed.txt"]).ok();
    docker.docker(&["cp", &path("tree"), "box:/tmp/"]).ok();
    let inside = docker.docker(&["exec", "box", "cat", "/tmp/in.txt", "/tmp/renamed.txt", "/tmp/tree/sub/leaf.txt"]).ok();
    assert_eq!(inside.stdout, "copied in\ncopied in\nleaf\n", "{inside}");

    docker.docker(&["exec", "box", "sh", "-c", "echo from inside > /tmp/made.txt; busybox ln -s /tmp/made.txt /tmp/link; busybox ln -s / /tmp/escape"]).ok();
    docker.docker(&["cp", "box:/tmp/made.txt", &path("out.txt")]).ok();
    assert_eq!(std::fs::read_to_string(local.join("out.txt")).expect("out.txt"), "from inside\n");
    docker.docker(&["cp", "box:/tmp/tree", &path("tree-out")]).ok();
    assert_eq!(std::fs::read_to_string(local.join("tree-out/sub/leaf.txt")).expect("leaf"), "leaf\n");
    docker.docker(&["cp", "-L", "box:/tmp/link", &path("followed.txt")]).ok();
    assert_eq!(std::fs::read_to_string(local.join("followed.txt")).expect("followed"), "from inside\n");
    // An absolute symlink resolves inside the container, not on the host.
    docker.docker(&["cp", "box:/tmp/escape/tmp/made.txt", &path("through-root.txt")]).ok();
    assert_eq!(std::fs::read_to_string(local.join("through-root.txt")).expect("through"), "from inside\n");
    let mut to_stdout = std::process::Command::new("sh");
    to_stdout.arg("-c").arg(format!("{} cp box:/tmp/made.txt - | tar -tv", berth_integration::docker::DOCKER));
    to_stdout.env("DOCKER_HOST", format!("unix://{}", docker.socket().display())).env("DOCKER_CONFIG", local);
    let listed = berth_integration::command::run_command(to_stdout, Duration::from_secs(30)).ok();
    assert!(listed.stdout.contains(" made.txt") && listed.stdout.contains(" 12 "), "{listed}");

    let missing = docker.docker(&["cp", "box:/nosuch", &path("x")]).failed();
    assert!(missing.stderr.contains("Could not find the file /nosuch in container box"), "{missing}");
    let into_missing = docker.docker(&["cp", &path("in.txt"), "box:/nosuch/dir/x.txt"]).failed();
    assert!(into_missing.stderr.contains("Could not find the file /nosuch/dir in container box"), "{into_missing}");
    // A missing directory named with a trailing slash: the CLI refuses it itself, as with dockerd.
    let into_missing_dir = docker.docker(&["cp", &path("in.txt"), "box:/nosuch/dir/"]).failed();
    assert!(into_missing_dir.stderr.contains("no such directory"), "{into_missing_dir}");
    let unknown = docker.docker(&["cp", &path("in.txt"), "nosuch:/tmp/x.txt"]).failed();
    assert!(unknown.stderr.contains("No such container: nosuch"), "{unknown}");

    // A stopped container: through a mount of its layers, gone afterwards.
    docker.docker(&["stop", "-t", "0", "box"]).ok();
    docker.docker(&["cp", "box:/tmp/made.txt", &path("stopped.txt")]).ok();
    assert_eq!(std::fs::read_to_string(local.join("stopped.txt")).expect("stopped"), "from inside\n");
    docker.docker(&["cp", &path("in.txt"), "box:/tmp/while-stopped.txt"]).ok();
    assert_eq!(view_mounts(), 0, "a view of the stopped container stayed mounted");
    docker.docker(&["start", "box"]).ok();
    assert_eq!(docker.docker(&["exec", "box", "cat", "/tmp/while-stopped.txt"]).ok().stdout, "copied in\n");
    let readonly = docker.docker(&["run", "-d", "--read-only", "--name", "ro", "busybox", "sleep", "300"]).ok();
    assert!(!readonly.stdout.is_empty());
    let refused = docker.docker(&["cp", &path("in.txt"), "ro:/tmp/"]).failed();
    assert!(refused.stderr.contains("marked read-only"), "{refused}");
    docker.docker(&["rm", "-f", "box", "ro"]).ok();
}

#[test]
fn diff_shows_added_changed_and_deleted() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let script = "mkdir -p /tmp/new && echo x > /tmp/new/file && echo changed >> /etc/group && busybox rm /bin/wc";
    docker.docker(&["run", "--name", "changer", "busybox", "sh", "-c", script]).ok();
    let diff = docker.docker(&["diff", "changer"]).ok();
    // /work is the image's working directory, which no layer has: the runtime makes it.
    assert_eq!(lines(&diff.stdout), ["C /bin", "D /bin/wc", "C /etc", "C /etc/group", "C /tmp", "A /tmp/new", "A /tmp/new/file", "A /work"], "{diff}");
    docker.docker(&["run", "--name", "quiet", "busybox", "true"]).ok();
    assert_eq!(docker.docker(&["diff", "quiet"]).ok().stdout, "A /work\n", "an unchanged container has only its working directory");
    let unknown = docker.docker(&["diff", "nosuch"]).failed();
    assert!(unknown.stderr.contains("No such container: nosuch"), "{unknown}");
    docker.docker(&["rm", "changer", "quiet"]).ok();
}

#[test]
fn tmpfs_ulimit_and_init() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let tmpfs = docker.docker(&["run", "--rm", "--tmpfs", "/scratch:size=2m,mode=1770", "busybox", "sh", "-c", "busybox grep ' /scratch ' /proc/mounts; ls -ld /scratch"]).ok();
    assert!(tmpfs.stdout.contains("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec") && tmpfs.stdout.contains("size=2048k"), "{tmpfs}");
    assert!(tmpfs.stdout.contains("drwxrwx--T"), "{tmpfs}");
    let ulimit = docker.docker(&["run", "--rm", "--ulimit", "nofile=123:456", "--ulimit", "nproc=77", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u"]).ok();
    assert_eq!(lines(&ulimit.stdout), ["123", "456", "77"], "{ulimit}");
    let bad = docker.docker(&["run", "--rm", "--ulimit", "nofile=9:1", "busybox", "true"]).failed();
    assert!(bad.stderr.contains("soft limit") || bad.stderr.contains("ulimit"), "{bad}");

    let init = docker.docker(&["run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$"]).ok();
    let seen = lines(&init.stdout);
    assert!(seen.first().is_some_and(|l| l.starts_with("/sbin/docker-init -- sh -c")), "{init}");
    assert_ne!(seen.get(1).copied(), Some("1"), "the command is not PID 1 under --init: {init}");
    let code = docker.docker(&["run", "--rm", "--init", "busybox", "sh", "-c", "exit 9"]);
    assert_eq!(code.code, 9, "{code}");
    let inspect = docker.docker(&["run", "-d", "--init", "--name", "inited", "busybox", "sleep", "300"]).ok();
    assert_eq!(inspect.stdout.trim().len(), 64);
    assert_eq!(docker.docker(&["inspect", "-f", "{{.HostConfig.Init}}", "inited"]).ok().stdout.trim(), "true");
    let stopped = std::time::Instant::now();
    docker.docker(&["stop", "-t", "5", "inited"]).ok();
    assert!(stopped.elapsed() < Duration::from_secs(4), "the init did not pass SIGTERM on: {:?}", stopped.elapsed());
    docker.docker(&["rm", "inited"]).ok();
}

#[test]
fn logs_survive_a_restart_of_berthd() {
    let mut docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["run", "-d", "--name", "talker", "busybox", "sh", "-c", "echo before; echo err >&2; sleep 2; echo after; sleep 300"]).ok();
    std::thread::sleep(Duration::from_millis(500));
    docker.world.daemon.stop();
    docker.world.daemon.spawn();
    std::thread::sleep(Duration::from_secs(2));
    let logs = docker.docker(&["logs", "talker"]).ok();
    assert_eq!((logs.stdout.as_str(), logs.stderr.as_str()), ("before\nafter\n", "err\n"), "{logs}");
    assert!(docker.docker(&["inspect", "-f", "{{.State.Running}}", "talker"]).ok().stdout.starts_with("true"));
    docker.docker(&["rm", "-f", "talker"]).ok();
    docker.docker(&["run", "--name", "done", "busybox", "echo", "finished"]).ok();
    docker.world.daemon.stop();
    docker.world.daemon.spawn();
    assert_eq!(docker.docker(&["logs", "done"]).ok().stdout, "finished\n");
    assert!(docker.docker(&["ps", "-a", "--format", "{{.Status}}"]).ok().stdout.starts_with("Exited (0)"));
    docker.docker(&["rm", "done"]).ok();
}

/// What a failed request must not leave: containers, pinned network namespaces, veths,
/// and NAT rules for published ports.
fn footprint(docker: &DockerWorld) -> (String, usize, String, String) {
    let containers = docker.docker(&["ps", "-a", "--format", "{{.Names}}"]).ok().stdout;
    let pinned = std::fs::read_dir(docker.world.daemon.state().join("netns")).map(|d| d.count()).unwrap_or(0);
    let veths = docker.in_netns("ip -o link show type veth | wc -l").ok().stdout;
    let rules = docker.in_netns("nft list ruleset | grep -c 'dport' || true").ok().stdout;
    (containers, pinned, veths, rules)
}

#[test]
fn bad_input_gets_dockers_status_and_leaves_nothing() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["run", "-d", "--name", "web", "-p", "7070:80", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "--name", "exited", "busybox", "true"]).ok();
    let before = footprint(&docker);
    assert_eq!(before.1, 2, "{before:?}");

    let socket = docker.socket().display().to_string();
    let api = |method: &str, path: &str, body: &str| {
        let script = format!("curl -s -X {method} -w '\\n%{{http_code}}' --unix-socket {socket} -H 'Content-Type: application/json' --data-binary '{body}' 'http://x/v1.50{path}'");
        docker.in_netns(&script).ok().stdout
    };
    let create = |body: &str| api("POST", "/containers/create?name=bad", body);
    for (body, status, words) in [
        ("{\"Image\": \"busybox\",", "400", "invalid JSON"),
        ("[1, 2]", "400", "invalid container config"),
        ("{\"Image\": \"busybox\", \"Cmd\": 5}", "400", "invalid container config"),
        ("{\"Image\": \"busybox\", \"Env\": \"A=1\"}", "400", "invalid container config"),
        ("{\"Image\": \"busybox\", \"HostConfig\": {\"PortBindings\": {\"80/tcp\": [{\"HostPort\": \"http\"}]}}}", "400", "invalid port specification"),
        ("{\"Image\": \"busybox\", \"HostConfig\": {\"NetworkMode\": \"nosuchnet\"}}", "404", "network nosuchnet not found"),
        ("{\"Image\": \"nosuch/image\"}", "404", "No such image: nosuch/image:latest"),
        ("{\"Image\": \"busybox\", \"HostConfig\": {\"Binds\": [\"./relative:/x\"]}}", "400", "includes invalid characters for a local volume name"),
        ("{\"Image\": \"busybox\", \"HostConfig\": {\"Binds\": [\"/a:/b:/c:/d\"]}}", "400", "invalid volume specification"),
        ("{\"Image\": \"busybox\", \"HostConfig\": {\"Tmpfs\": {\"run\": \"\"}}}", "400", "mount path must be absolute"),
        ("{\"Image\": \"busybox\", \"HostConfig\": {\"Ulimits\": [{\"Name\": \"nofile\", \"Soft\": 10, \"Hard\": 5}]}}", "400", "soft limit"),
        ("{\"Image\": \"busybox\", \"HostConfig\": {\"Ulimits\": [{\"Name\": \"bogus\", \"Soft\": 1, \"Hard\": 1}]}}", "400", "invalid ulimit type"),
        ("{\"Image\": \"busybox\", \"HostConfig\": {\"SecurityOpt\": [\"bogus\"]}}", "400", "Invalid --security-opt"),
    ] {
        let answer = create(body);
        assert!(answer.ends_with(&format!("\n{status}")) && answer.contains(words) && answer.contains("\"message\""), "{body} -> {answer}");
    }
    let duplicate = api("POST", "/containers/create?name=web", "{\"Image\": \"busybox\"}");
    assert!(duplicate.ends_with("\n409") && duplicate.contains("is already in use"), "{duplicate}");
    assert_eq!(footprint(&docker), before, "a failed create left something");
    // As dockerd: a taken host port is refused at start, and leaves the container created.
    let taken = create("{\"Image\": \"busybox\", \"HostConfig\": {\"PortBindings\": {\"80/tcp\": [{\"HostPort\": \"7070\"}]}}}");
    assert!(taken.ends_with("\n201"), "{taken}");
    let start = api("POST", "/containers/bad/start", "");
    assert!(start.ends_with("\n500") && start.contains("Bind for 0.0.0.0:7070 failed: port is already allocated"), "{start}");
    assert_eq!(docker.inspect("bad", "{{.State.Status}}"), "created");
    docker.docker(&["rm", "bad"]).ok();
    assert_eq!(footprint(&docker), before, "a refused start left something");

    let running = api("DELETE", "/containers/web", "");
    assert!(running.ends_with("\n409") && running.contains("container is running"), "{running}");
    let exec_exited = api("POST", "/containers/exited/exec", "{\"Cmd\": [\"true\"]}");
    assert!(exec_exited.ends_with("\n409") && exec_exited.contains("is not running"), "{exec_exited}");
    let exec_string = api("POST", "/containers/web/exec", "{\"Cmd\": \"true\"}");
    assert!(exec_string.ends_with("\n400") && exec_string.contains("invalid exec config"), "{exec_string}");
    let exec_empty = api("POST", "/containers/web/exec", "{\"Cmd\": []}");
    assert!(exec_empty.ends_with("\n400") && exec_empty.contains("No exec command specified"), "{exec_empty}");
    let no_exec = api("POST", "/exec/nosuch/start", "{}");
    assert!(no_exec.ends_with("\n404") && no_exec.contains("No such exec instance: nosuch"), "{no_exec}");
    let bad_signal = api("POST", "/containers/web/kill?signal=SIGNOPE", "");
    assert!(bad_signal.ends_with("\n400") && bad_signal.contains("Invalid signal: SIGNOPE"), "{bad_signal}");
    let bad_tar = api("PUT", "/containers/web/archive?path=/tmp", "this is not a tar archive, it is only some text that goes on for a while");
    assert!(bad_tar.ends_with("\n400") && bad_tar.contains("error extracting the archive"), "{bad_tar}");
    let no_path = api("GET", "/containers/web/archive", "");
    assert!(no_path.ends_with("\n400") && no_path.contains("path is required"), "{no_path}");
    let unknown = api("GET", "/containers/nosuch/changes", "");
    assert!(unknown.ends_with("\n404") && unknown.contains("No such container: nosuch"), "{unknown}");
    let login = api("POST", "/auth", "{\"username\": 5}");
    assert!(login.ends_with("\n400") && login.contains("invalid JSON"), "{login}");
    assert_eq!(footprint(&docker), before, "a refused request changed something");
    assert!(docker.docker(&["inspect", "-f", "{{.State.Running}}", "web"]).ok().stdout.starts_with("true"));
    docker.docker(&["rm", "-f", "web", "exited"]).ok();
    assert_eq!(footprint(&docker).1, 0);
}

/// 24 MiB that do not compress, from a xorshift generator.
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn large_archives_stream_through_import_load_and_cp() {
    let docker = DockerWorld::new();
    let local = docker.config_dir.path();
    let payload = incompressible(24 << 20);
    let digest = sha256_hex(&payload);
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static");
    let rootfs = berth_integration::images::LayerBuilder::new()
        .dir("bin", 0o755)
        .file("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .symlink("bin/sha256sum", "busybox")
        .symlink("bin/sleep", "busybox")
        .dir("tmp", 0o1777)
        .file("big.bin", &payload, 0o644)
        .tar();
    let path = |name: &str| local.join(name).display().to_string();
    std::fs::write(local.join("rootfs.tar"), rootfs).expect("write the rootfs tar");
    let sum_inside = |file: &str| docker.docker(&["run", "--rm", "example/big:1", "sha256sum", file]).ok().stdout;

    docker.docker(&["import", &path("rootfs.tar"), "example/big:1"]).ok();
    assert!(sum_inside("/big.bin").starts_with(&digest), "the imported image's file");

    docker.docker(&["save", "-o", &path("saved.tar"), "example/big:1"]).ok();
    docker.docker(&["rmi", "example/big:1"]).ok();
    let saved = std::fs::read(local.join("saved.tar")).expect("saved.tar");
    assert!(saved.len() > 24 << 20, "the saved archive holds the layer: {} bytes", saved.len());
    std::fs::write(local.join("cut.tar"), &saved[..saved.len() / 2]).expect("write the cut archive");
    let cut = docker.docker(&["load", "-i", &path("cut.tar")]).failed();
    assert!(!cut.stderr.trim().is_empty(), "a cut archive is refused with a message: {cut}");
    let none = docker.docker(&["images", "-q", "example/big"]).ok();
    assert!(none.stdout.trim().is_empty(), "a refused load left an image: {none}");

    let loaded = docker.docker(&["load", "-i", &path("saved.tar")]).ok();
    assert!(loaded.stdout.contains("Loaded image: example/big:1"), "{loaded}");
    assert!(sum_inside("/big.bin").starts_with(&digest), "the loaded image's file");

    docker.docker(&["run", "-d", "--name", "sink", "example/big:1", "sleep", "300"]).ok();
    std::fs::write(local.join("copy.bin"), &payload).expect("write copy.bin");
    docker.docker(&["cp", &path("copy.bin"), "sink:/tmp/"]).ok();
    let copied = docker.docker(&["exec", "sink", "sha256sum", "/tmp/copy.bin"]).ok();
    assert!(copied.stdout.starts_with(&digest), "{copied}");
    docker.docker(&["rm", "-f", "sink"]).ok();
}
