//! CRI streaming through berthd's streaming server: Exec, Attach and PortForward URLs
//! driven by a SPDY/3.1 client (to the Kubernetes protocols), by Python's
//! `websocket-client` (installed into a venv the test makes), and by crictl with both
//! transports when CRICTL names it. Bad input: unknown, reused and expired tokens, an
//! exited container, a port nothing listens on, a client that disconnects mid-stream.

use std::path::Path;
use std::time::Duration;

use berth_integration::command::{run_command, sh};
use berth_integration::cri::*;
use berth_integration::streaming::{self, forward_once, read_until, Command};
use berth_integration::pypi::Venv;
use berth_integration::tempdir::TempDir;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const PAGE: &str = "hello through the port\n";

async fn exec_url(client: &mut RuntimeServiceClient<Channel>, id: &str, command: &[&str], stdin: bool, tty: bool) -> String {
    let request = cri::ExecRequest {
        container_id: id.into(),
        cmd: command.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    };
    client.exec(request).await.expect("exec").into_inner().url
}

async fn attach_url(client: &mut RuntimeServiceClient<Channel>, id: &str) -> String {
    let request = cri::AttachRequest { container_id: id.into(), stdin: true, tty: false, stdout: true, stderr: true };
    client.attach(request).await.expect("attach").into_inner().url
}

async fn port_forward_url(client: &mut RuntimeServiceClient<Channel>, pod: &str) -> String {
    client.port_forward(cri::PortForwardRequest { pod_sandbox_id: pod.into(), port: vec![] }).await.expect("port forward").into_inner().url
}

fn host_network(mut config: cri::PodSandboxConfig) -> cri::PodSandboxConfig {
    let namespaces = cri::NamespaceOption { network: cri::NamespaceMode::Node as i32, ..Default::default() };
    config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(namespaces), ..Default::default() }),
        ..Default::default()
    });
    config
}

fn web_server(port: u16) -> Vec<String> {
    let script = format!("mkdir -p /www && printf '{}' > /www/index.html && exec httpd -f -p {port} -h /www", PAGE.replace('\n', "\\n"));
    vec!["sh".into(), "-c".into(), script]
}

fn shell_with_stdin(name: &str) -> cri::ContainerConfig {
    let mut config = container_config(name, &["sh"]);
    config.stdin = true;
    config.stdin_once = true;
    config
}

fn assert_exit_code(status: &serde_json::Value, code: i32) {
    if code == 0 {
        assert_eq!(status["status"], "Success", "{status}");
        return;
    }
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], code.to_string(), "{status}");
}

/// Processes anywhere on the machine whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> usize {
    let wanted: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain(std::iter::once(0))).collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| std::fs::read(entry.path().join("cmdline")).map(|c| c == wanted).unwrap_or(false))
        .count()
}

async fn wait_for_page(client: &mut RuntimeServiceClient<Channel>, id: &str, port: u16) {
    for _ in 0..100 {
        let fetched = exec(client, id, &["sh", "-c", &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 {port}")]).await;
        if String::from_utf8_lossy(&fetched.stdout).ends_with(PAGE) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the web server on port {port} never answered");
}

/// A running pod with a `sleep` container (for execs) and a web server on `port`.
struct TestPod {
    id: String,
    config: cri::PodSandboxConfig,
    worker: String,
}

async fn pod_with_web_server(client: &mut RuntimeServiceClient<Channel>, config: cri::PodSandboxConfig, port: u16) -> TestPod {
    let id = run_pod(client, &config).await;
    let worker = start_container(client, &id, &config, container_config("worker", &["sleep", "1000"])).await;
    let mut web = container_config("web", &[]);
    web.command = web_server(port);
    let web = start_container(client, &id, &config, web).await;
    wait_for_page(client, &web, port).await;
    TestPod { id, config, worker }
}

/// A log directory for pods, under the daemon's test directory.
fn log_directory(world: &World) -> String {
    let logs = world.daemon.dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    logs.display().to_string()
}

async fn remove_pods(client: &mut RuntimeServiceClient<Channel>, pods: &[&str]) {
    for pod in pods {
        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.to_string() }).await.expect("stop pod");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.to_string() }).await.expect("remove pod");
    }
}

#[test]
fn spdy_exec_tty_attach_and_bad_tokens() {
    let world = World::with_config("[streaming]\ntoken_ttl_seconds = 2\n");
    let netns = world.registry.netns.path();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let pod_config = pod_config("streams", &log_directory(&world));
        let pod = run_pod(&mut client, &pod_config).await;
        let worker = start_container(&mut client, &pod, &pod_config, container_config("worker", &["sleep", "1000"])).await;

        // echo: stdout, stderr, Success.
        let url = exec_url(&mut client, &worker, &["sh", "-c", "echo out; echo err >&2"], false, false).await;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let command = Command::open(&netns, &url, &["error", "stdout", "stderr"]).await;
        let (stdout, stderr, status) = command.finish().await;
        assert_eq!((stdout.as_str(), stderr.as_str()), ("out\n", "err\n"));
        assert_exit_code(&status, 0);

        // cat: stdin in, the client's close of stdin ends it.
        let url = exec_url(&mut client, &worker, &["cat"], true, false).await;
        let mut command = Command::open(&netns, &url, &["error", "stdin", "stdout", "stderr"]).await;
        let big = "0123456789abcdef".repeat(16 << 10);
        command.send("stdin", big.as_bytes()).await;
        command.close("stdin");
        let (stdout, _, status) = command.finish().await;
        assert_eq!(stdout.len(), big.len());
        assert!(stdout == big, "cat changed the bytes");
        assert_exit_code(&status, 0);

        // The exit code comes back as the Kubernetes Status.
        let url = exec_url(&mut client, &worker, &["sh", "-c", "exit 3"], false, false).await;
        let (_, _, status) = Command::open(&netns, &url, &["error", "stdout", "stderr"]).await.finish().await;
        assert_exit_code(&status, 3);

        // A TTY: the resize reaches the pty before the command reads its size.
        let url = exec_url(&mut client, &worker, &["sh", "-c", "read go; /bin/busybox stty size; exit 4"], true, true).await;
        let mut command = Command::open(&netns, &url, &["error", "stdin", "stdout", "resize"]).await;
        command.send("resize", br#"{"Width":123,"Height":45}"#).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        command.send("stdin", b"go\r").await;
        let (stdout, _, status) = command.finish().await;
        assert!(stdout.contains("45 123"), "{stdout:?} {status}");
        assert_exit_code(&status, 4);

        // Attach: two clients see the output; the first one's stdin reaches the shell,
        // and closing it (stdin_once) ends the container.
        let shell = start_container(&mut client, &pod, &pod_config, shell_with_stdin("shell")).await;
        let url = attach_url(&mut client, &shell).await;
        let mut first = Command::open(&netns, &url, &["error", "stdin", "stdout", "stderr"]).await;
        let watcher_url = client.attach(cri::AttachRequest { container_id: shell.clone(), stdout: true, ..Default::default() }).await.expect("attach").into_inner().url;
        let mut watcher = Command::open(&netns, &watcher_url, &["error", "stdout"]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.send("stdin", b"echo hello; echo oops >&2\n").await;
        let seen = read_until(watcher.stream("stdout"), "hello\n").await;
        assert_eq!(seen, "hello\n");
        first.close("stdin");
        let (stdout, stderr, status) = first.finish().await;
        assert_eq!((stdout.as_str(), stderr.as_str()), ("hello\n", "oops\n"));
        assert_exit_code(&status, 0);
        let (_, _, status) = watcher.finish().await;
        assert_exit_code(&status, 0);
        wait_state(&mut client, &shell, cri::ContainerState::ContainerExited).await;
        // Without a CRI log (as critest makes it), an interactive container's output
        // still reaches an attach.
        let mut quiet = shell_with_stdin("quiet");
        quiet.log_path = String::new();
        let quiet = start_container(&mut client, &pod, &pod_config, quiet).await;
        let mut attached = Command::open(&netns, &attach_url(&mut client, &quiet).await, &["error", "stdin", "stdout", "stderr"]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        attached.send("stdin", b"echo unlogged\n").await;
        assert_eq!(read_until(attached.stream("stdout"), "unlogged\n").await, "unlogged\n");
        attached.close("stdin");
        let (_, _, status) = attached.finish().await;
        assert_exit_code(&status, 0);

        // An exited container: the CRI refuses a URL.
        let refused = client.exec(cri::ExecRequest { container_id: shell.clone(), cmd: vec!["true".into()], stdout: true, ..Default::default() }).await.expect_err("exited");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
        let refused = client.attach(cri::AttachRequest { container_id: shell.clone(), stdout: true, ..Default::default() }).await.expect_err("exited");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
        let refused = client.exec(cri::ExecRequest { container_id: worker.clone(), cmd: vec![], stdout: true, ..Default::default() }).await.expect_err("no command");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

        // Tokens: a used one, an unknown one and an expired one are 404s.
        let url = exec_url(&mut client, &worker, &["true"], false, false).await;
        let (_, _, status) = Command::open(&netns, &url, &["error", "stdout", "stderr"]).await.finish().await;
        assert_exit_code(&status, 0);
        let (head, _) = streaming::upgrade(&netns, &url, "SPDY/3.1", &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")]).await;
        assert!(head.starts_with("HTTP/1.1 404"), "reused: {head}");
        let unknown = format!("{}/exec/0123456789abcdef0123456789abcdef", url.rsplitn(3, '/').last().expect("base"));
        let (head, _) = streaming::upgrade(&netns, &unknown, "SPDY/3.1", &[]).await;
        assert!(head.starts_with("HTTP/1.1 404"), "unknown: {head}");
        let url = exec_url(&mut client, &worker, &["true"], false, false).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (head, _) = streaming::upgrade(&netns, &url, "SPDY/3.1", &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")]).await;
        assert!(head.starts_with("HTTP/1.1 404"), "expired: {head}");
        // A protocol the server does not speak.
        let url = exec_url(&mut client, &worker, &["true"], false, false).await;
        let (head, _) = streaming::upgrade(&netns, &url, "SPDY/3.1", &[("X-Stream-Protocol-Version", "v9.channel.k8s.io")]).await;
        assert!(head.starts_with("HTTP/1.1 403"), "bad protocol: {head}");

        // A client that disconnects mid-stream: its process is killed.
        let url = exec_url(&mut client, &worker, &["sleep", "7771"], false, false).await;
        let command = Command::open(&netns, &url, &["error", "stdout", "stderr"]).await;
        for _ in 0..100 {
            if processes_running(&["sleep", "7771"]) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(processes_running(&["sleep", "7771"]), 1, "the exec never ran");
        drop(command);
        for _ in 0..100 {
            if processes_running(&["sleep", "7771"]) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(processes_running(&["sleep", "7771"]), 0, "the exec outlived its client");
        let leftovers: Vec<_> = std::fs::read_dir(world.daemon.state().join("exec")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(leftovers.is_empty(), "exec FIFOs left: {leftovers:?}");

        remove_pods(&mut client, &[&pod]).await;
    });
}

fn tty_shell(name: &str, stdin_once: bool) -> cri::ContainerConfig {
    let mut config = container_config(name, &["sh"]);
    config.stdin = true;
    config.stdin_once = stdin_once;
    config.tty = true;
    config
}

async fn tty_attach_url(client: &mut RuntimeServiceClient<Channel>, id: &str, stdin: bool) -> String {
    let request = cri::AttachRequest { container_id: id.into(), stdin, tty: true, stdout: true, stderr: false };
    client.attach(request).await.expect("attach").into_inner().url
}

#[test]
fn spdy_attach_to_a_tty_container() {
    let world = World::new();
    let netns = world.registry.netns.path();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let logs = log_directory(&world);
        let pod_config = pod_config("ttypod", &logs);
        let pod = run_pod(&mut client, &pod_config).await;

        // Two clients on one terminal: the first types, both see the shell's answers,
        // and the first one's resize reaches the pty.
        let shell = start_container(&mut client, &pod, &pod_config, tty_shell("ttyshell", true)).await;
        let url = tty_attach_url(&mut client, &shell, true).await;
        let mut typist = Command::open(&netns, &url, &["error", "stdin", "stdout", "resize"]).await;
        let url = tty_attach_url(&mut client, &shell, false).await;
        let mut watcher = Command::open(&netns, &url, &["error", "stdout", "resize"]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        typist.send("resize", br#"{"Width":111,"Height":37}"#).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        typist.send("stdin", b"/bin/busybox stty size; echo tty-$((6*7))\r").await;
        let seen = read_until(watcher.stream("stdout"), "tty-42\r\n").await;
        assert!(seen.contains("37 111\r\n") && seen.contains("tty-42\r\n"), "the watcher saw {seen:?}");
        let typed = read_until(typist.stream("stdout"), "tty-42\r\n").await;
        assert!(typed.contains("37 111\r\n"), "the typist saw {typed:?}");
        // The output went to the CRI log too, as stdout.
        let log = std::fs::read_to_string(Path::new(&logs).join("ttyshell.log")).expect("the container's log");
        assert!(log.lines().any(|l| l.contains(" stdout ") && l.contains("tty-42")), "{log}");
        // stdin_once: the typist's end of input closes the terminal's input; the shell
        // reads its end and exits, which ends both attachments.
        typist.close("stdin");
        let (_, _, ended) = typist.finish().await;
        assert_exit_code(&ended, 0);
        let (_, _, ended) = watcher.finish().await;
        assert_exit_code(&ended, 0);
        let exited = wait_state(&mut client, &shell, cri::ContainerState::ContainerExited).await;
        assert_eq!(exited.exit_code, 0, "{exited:?}");

        // Without stdin_once a client's end of input leaves the shell running for the
        // next one.
        let shell = start_container(&mut client, &pod, &pod_config, tty_shell("ttykept", false)).await;
        let url = tty_attach_url(&mut client, &shell, true).await;
        let mut first = Command::open(&netns, &url, &["error", "stdin", "stdout", "resize"]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.send("stdin", b"echo first-$((1+1))\r").await;
        assert!(read_until(first.stream("stdout"), "first-2\r\n").await.contains("first-2\r\n"));
        first.close("stdin");
        drop(first);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(status(&mut client, &shell).await.state, cri::ContainerState::ContainerRunning as i32);
        let url = tty_attach_url(&mut client, &shell, true).await;
        let mut second = Command::open(&netns, &url, &["error", "stdin", "stdout", "resize"]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        second.send("stdin", b"echo second-$((1+2)); exit 5\r").await;
        let (stdout, _, ended) = second.finish().await;
        assert!(stdout.contains("second-3\r\n"), "{stdout:?}");
        assert_exit_code(&ended, 0);
        let exited = wait_state(&mut client, &shell, cri::ContainerState::ContainerExited).await;
        assert_eq!(exited.exit_code, 5, "{exited:?}");
        remove_pods(&mut client, &[&pod]).await;
    });
}

#[test]
fn the_private_attach_log_is_bounded() {
    let world = World::new();
    let netns = world.registry.netns.path();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let pod_config = pod_config("boundpod", "");
        let pod = run_pod(&mut client, &pod_config).await;
        // An interactive container without a CRI log: its output goes to attach.log.
        let mut quiet = shell_with_stdin("chatty");
        quiet.log_path = String::new();
        let quiet = start_container(&mut client, &pod, &pod_config, quiet).await;
        let mut attached = Command::open(&netns, &attach_url(&mut client, &quiet).await, &["error", "stdin", "stdout", "stderr"]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // About 5 MiB of log: several rotations while the client follows.
        let lines = 50_000;
        let script = format!("i=0; while [ $i -lt {lines} ]; do echo line-$i-of-a-chatty-shell-padding-padding; i=$((i+1)); done; echo all-written\n");
        attached.send("stdin", script.as_bytes()).await;
        let seen = read_until_within(attached.stream("stdout"), "all-written\n", Duration::from_secs(120)).await;
        let numbers: Vec<usize> = seen.lines().filter_map(|l| l.strip_prefix("line-")?.split('-').next()?.parse().ok()).collect();
        assert_eq!(numbers.len(), lines, "lines lost across rotations (last seen {:?})", numbers.last());
        assert!(numbers.iter().enumerate().all(|(i, n)| i == *n), "lines out of order");
        let bundle = world.daemon.root().join("containers").join(&quiet);
        let size = |name: &str| std::fs::metadata(bundle.join(name)).map(|m| m.len()).unwrap_or(0);
        let limit = berth::core::task_io::ATTACH_LOG_ROTATE_BYTES + 4096;
        assert!(size("attach.log.1") > 0, "the log was never rotated");
        assert!(size("attach.log") <= limit && size("attach.log.1") <= limit, "attach.log {} and .1 {}", size("attach.log"), size("attach.log.1"));
        let logs: Vec<_> = std::fs::read_dir(&bundle).expect("bundle").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("attach.log")).collect();
        assert_eq!(logs.len(), 2, "{logs:?}");
        // Still attached after the rotations: input and output go on.
        attached.send("stdin", b"echo after-rotation\n").await;
        assert!(read_until(attached.stream("stdout"), "after-rotation\n").await.ends_with("after-rotation\n"));
        attached.close("stdin");
        let (_, _, ended) = attached.finish().await;
        assert_exit_code(&ended, 0);
        remove_pods(&mut client, &[&pod]).await;
    });
}

/// Reads a stream until `wanted` appears, for at most `limit`.
async fn read_until_within(stream: &mut berth::streaming::spdy::session::Stream, wanted: &str, limit: Duration) -> String {
    let mut bytes = Vec::new();
    let reading = async {
        while !bytes.ends_with(wanted.as_bytes()) {
            match stream.data.recv().await {
                Some(chunk) => bytes.extend_from_slice(&chunk),
                None => break,
            }
        }
    };
    let _ = tokio::time::timeout(limit, reading).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A certificate authority and a certificate for 127.0.0.1 that it signed, made with
/// openssl in `dir`: `ca.pem`, `cert.pem`, `key.pem`.
fn make_certificates(dir: &Path) {
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh(&format!(
        "cd {} && openssl req -x509 {key} -keyout ca.key -out ca.pem -days 1 -subj /CN=berth-test-ca 2>&1 \
         && openssl req {key} -keyout key.pem -out server.csr -subj /CN=127.0.0.1 2>&1 \
         && printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > server.ext \
         && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 1 -extfile server.ext 2>&1",
        dir.display()
    ))
    .ok();
}

#[test]
fn streams_over_tls_with_the_configured_certificate() {
    let certificates = TempDir::new("streamtls");
    make_certificates(certificates.path());
    streaming::trust_ca(&certificates.path().join("ca.pem"));
    let config = format!(
        "[streaming]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        certificates.path().join("cert.pem").display(),
        certificates.path().join("key.pem").display()
    );
    let world = World::with_config(&config);
    let netns = world.registry.netns.path();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let pod_config = pod_config("tlspod", "");
        let pod = run_pod(&mut client, &pod_config).await;
        let worker = start_container(&mut client, &pod, &pod_config, container_config("worker", &["sleep", "1000"])).await;

        let url = exec_url(&mut client, &worker, &["cat"], true, false).await;
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        // Plain HTTP to the TLS port gets no upgrade (and does not spend the token).
        let (head, _) = streaming::upgrade(&netns, &url.replacen("https", "http", 1), "SPDY/3.1", &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")]).await;
        assert!(!head.starts_with("HTTP/1.1 101"), "plain HTTP upgraded on the TLS port: {head}");
        // Over TLS (the client checks the certificate against the CA): stdin in,
        // output and the Status back.
        let mut command = Command::open(&netns, &url, &["error", "stdin", "stdout", "stderr"]).await;
        command.send("stdin", b"through TLS\n").await;
        command.close("stdin");
        let (stdout, _, ended) = command.finish().await;
        assert_eq!(stdout, "through TLS\n");
        assert_exit_code(&ended, 0);
        let url = exec_url(&mut client, &worker, &["sh", "-c", "exit 3"], false, false).await;
        let (_, _, ended) = Command::open(&netns, &url, &["error", "stdout", "stderr"]).await.finish().await;
        assert_exit_code(&ended, 3);

        // crictl over TLS (it checks no certificate unless given a client certificate
        // as well, which this server does not ask for).
        if let Some(crictl) = crictl() {
            let socket = world.daemon.socket();
            for transport in ["spdy", "websocket"] {
                let args = ["exec", "--transport", transport, &worker, "echo", "hello"];
                let echo = run_command(crictl_command(&crictl, &netns, &socket, &args), Duration::from_secs(60)).ok();
                assert_eq!(echo.stdout, "hello\n", "{transport}");
            }
        }
        remove_pods(&mut client, &[&pod]).await;
    });
}

#[test]
fn spdy_port_forward_on_pod_and_host_network() {
    let world = World::new();
    let netns = world.registry.netns.path();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let pod = pod_with_web_server(&mut client, pod_config("web", ""), 8080).await.id;
        let host_pod = pod_with_web_server(&mut client, host_network(pod_config("hostweb", "")), 18080).await.id;

        for (pod, port) in [(&pod, 8080u16), (&host_pod, 18080)] {
            let url = port_forward_url(&mut client, pod).await;
            let mut session = streaming::spdy(&netns, &url, "portforward.k8s.io").await;
            for request_id in 0..2 {
                let (answer, message) = forward_once(&mut session, request_id, port, b"GET / HTTP/1.0\r\n\r\n").await;
                assert!(answer.starts_with("HTTP/1.") && answer.ends_with(PAGE), "{answer:?}");
                assert_eq!(message, "");
            }
            // Nothing listens on port 9: the error stream says so.
            let (answer, message) = forward_once(&mut session, 5, 9, b"hello").await;
            assert_eq!(answer, "");
            assert!(message.contains("error forwarding port 9") && message.contains("refused"), "{message}");
            session.close();
        }
        // The pod's port is not the host's: the host-network pod's port is not in the pod.
        let url = port_forward_url(&mut client, &pod).await;
        let mut session = streaming::spdy(&netns, &url, "portforward.k8s.io").await;
        let (_, message) = forward_once(&mut session, 0, 18080, b"GET / HTTP/1.0\r\n\r\n").await;
        assert!(message.contains("error forwarding port 18080"), "{message}");
        session.close();

        let missing = client.port_forward(cri::PortForwardRequest { pod_sandbox_id: "nope".into(), port: vec![] }).await.expect_err("unknown pod");
        assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
        remove_pods(&mut client, &[&pod, &host_pod]).await;
    });
}

const WEBSOCKET_CLIENT: &str = include_str!("streaming_ws_client.py");

#[test]
fn websocket_client_from_python() {
    let scratch = TempDir::new("wsclient");
    let python = Venv::with("websocket-client", &["websocket-client"]).python();
    let script = scratch.path().join("client.py");
    std::fs::write(&script, WEBSOCKET_CLIENT).expect("write the client");
    let world = World::new();
    let netns = world.registry.netns.path();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let TestPod { id: pod, config: pod_config, worker } = pod_with_web_server(&mut client, pod_config("wspod", &log_directory(&world)), 8080).await;
        let shell = start_container(&mut client, &pod, &pod_config, shell_with_stdin("shell")).await;
        let urls = serde_json::json!({
            "echo": exec_url(&mut client, &worker, &["sh", "-c", "echo out; echo err >&2"], false, false).await,
            "cat": exec_url(&mut client, &worker, &["cat"], true, false).await,
            "exit3": exec_url(&mut client, &worker, &["sh", "-c", "exit 3"], false, false).await,
            "tty": exec_url(&mut client, &worker, &["sh", "-c", "read go; /bin/busybox stty size"], true, true).await,
            "attach": attach_url(&mut client, &shell).await,
            "forward": port_forward_url(&mut client, &pod).await,
            "noport": port_forward_url(&mut client, &pod).await,
            "page": PAGE,
        });
        let mut python_run = std::process::Command::new("nsenter");
        python_run.arg(format!("--net={netns}")).arg(&python).arg(&script).arg(urls.to_string());
        let output = run_command(python_run, Duration::from_secs(120));
        println!("{output}");
        assert!(output.success(), "the websocket client failed:\n{output}");
        assert!(output.stdout.contains("all websocket cases passed"), "{output}");
        wait_state(&mut client, &shell, cri::ContainerState::ContainerExited).await;
        remove_pods(&mut client, &[&pod]).await;
    });
}

/// crictl's path when the CRICTL variable names it (CI machines have no crictl).
fn crictl() -> Option<String> {
    match std::env::var("CRICTL") {
        Ok(path) => {
            assert!(Path::new(&path).exists(), "CRICTL={path} does not exist");
            Some(path)
        }
        Err(_) => {
            eprintln!("\n!!!!!!!! CRICTL is not set: the crictl streaming test is NOT RUN (set CRICTL=/opt/suites/bin/crictl) !!!!!!!!\n");
            None
        }
    }
}

fn crictl_command(crictl: &str, netns: &str, socket: &Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new("nsenter");
    command.arg(format!("--net={netns}")).arg(crictl).arg(format!("--runtime-endpoint=unix://{}", socket.display())).arg("--timeout=20s").args(args);
    command
}

#[test]
fn crictl_exec_attach_and_port_forward_with_both_transports() {
    let Some(crictl) = crictl() else { return };
    let world = World::new();
    let netns = world.registry.netns.path();
    let socket = world.daemon.socket();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let TestPod { id: pod, config: pod_config, worker } = pod_with_web_server(&mut client, pod_config("crictlpod", &log_directory(&world)), 8080).await;
        let host_pod = pod_with_web_server(&mut client, host_network(berth_integration::cri::pod_config("crictlhost", "")), 18080).await.id;

        for transport in ["spdy", "websocket"] {
            let run = |args: &[&str]| run_command(crictl_command(&crictl, &netns, &socket, args), Duration::from_secs(60));
            let echo = run(&["exec", "--transport", transport, &worker, "echo", "hello"]).ok();
            assert_eq!(echo.stdout, "hello\n", "{transport}");
            let exit = run(&["exec", "--transport", transport, &worker, "sh", "-c", "exit 3"]);
            // crictl reads the code from the Status and reports it (exiting 1 itself).
            assert!(!exit.success() && exit.stderr.contains("command terminated with exit code 3"), "{transport}: {exit}");
            let mut cat = crictl_command(&crictl, &netns, &socket, &["exec", "-i", "--transport", transport, &worker, "cat"]);
            let input = scratch_file("crictl stdin\n");
            cat.stdin(std::fs::File::open(input.path().join("input")).expect("input"));
            let output = cat.output().expect("crictl exec -i");
            assert_eq!(String::from_utf8_lossy(&output.stdout), "crictl stdin\n", "{transport}: {output:?}");
            // A TTY through script(1), which gives crictl a terminal of known size (sent
            // on the resize stream once the stream is up: the command waits for it).
            let tty = sh(&format!(
                "nsenter --net={netns} script -qec 'stty rows 33 cols 77; {crictl} --runtime-endpoint=unix://{} exec -it --transport {transport} {worker} sh -c \"sleep 0.5; /bin/busybox stty size\"' /dev/null </dev/null",
                socket.display()
            ));
            assert!(tty.stdout.contains("33 77"), "{transport}: {tty}");

            // Attach to a shell with stdin_once: the input runs, the end of input ends it.
            let shell = start_container(&mut client, &pod, &pod_config, shell_with_stdin(&format!("shell-{transport}"))).await;
            let mut attach = crictl_command(&crictl, &netns, &socket, &["attach", "-i", "--transport", transport, &shell]);
            let input = scratch_file("sleep 1; echo attached\n");
            attach.stdin(std::fs::File::open(input.path().join("input")).expect("input"));
            let output = attach.output().expect("crictl attach");
            assert!(String::from_utf8_lossy(&output.stdout).contains("attached"), "{transport}: {output:?}");
            wait_state(&mut client, &shell, cri::ContainerState::ContainerExited).await;

            // Port forwarding, pod network and host network.
            for (pod, port, local) in [(&pod, 8080u16, 28080u16), (&host_pod, 18080, 28081)] {
                let mut forward = crictl_command(&crictl, &netns, &socket, &["port-forward", "--transport", transport, pod, &format!("{local}:{port}")]);
                forward.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
                let mut child = forward.spawn().expect("crictl port-forward");
                let mut answer = String::new();
                for _ in 0..100 {
                    answer = streaming::http_get(&netns, local).await;
                    if answer.ends_with(PAGE) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = child.kill();
                let _ = child.wait();
                assert!(answer.ends_with(PAGE), "{transport} port-forward to {port}: {answer:?}");
            }
        }
        remove_pods(&mut client, &[&pod, &host_pod]).await;
    });
}

fn scratch_file(text: &str) -> TempDir {
    let dir = TempDir::new("input");
    std::fs::write(dir.path().join("input"), text).expect("input file");
    dir
}
