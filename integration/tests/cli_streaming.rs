//! berthctl's streaming verbs, driven as a user runs them (the real binary, in the
//! daemon's network namespace, a terminal from script(1) where one is needed):
//! `exec -i`, `exec -it` with the terminal's size, an exit code, `attach -i` to a shell
//! with stdin_once, `attach -t` to a TTY container (whose size follows berthctl's
//! terminal), and `port-forward` to a web server in a pod.

use std::path::Path;
use std::time::Duration;

use berth_integration::bins::bin_path;
use berth_integration::command::{run_command, sh, CmdOutput};
use berth_integration::cri::*;
use berth_integration::streaming::{self, Command};
use berth_integration::tempdir::TempDir;
use k8s_cri::v1 as cri;

const PAGE: &str = "served to berthctl\n";

fn berthctl_command(netns: &str, socket: &Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new("nsenter");
    command.arg(format!("--net={netns}")).arg(bin_path("berthctl")).arg("-r").arg(socket).args(args);
    command
}

/// berthctl with `input` on its stdin.
fn berthctl_with_input(netns: &str, socket: &Path, args: &[&str], input: &str) -> CmdOutput {
    let dir = TempDir::new("ctlinput");
    let file = dir.path().join("input");
    std::fs::write(&file, input).expect("input file");
    let quoted: Vec<String> = args.iter().map(|arg| format!("'{}'", arg.replace('\'', "'\\''"))).collect();
    let script = format!("nsenter --net={netns} {} -r {} {} < {}", bin_path("berthctl").display(), socket.display(), quoted.join(" "), file.display());
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(script);
    run_command(command, Duration::from_secs(60))
}

/// berthctl on a terminal of `rows` x `cols` made by script(1).
fn berthctl_on_terminal(netns: &str, socket: &Path, rows: u16, cols: u16, args: &str) -> CmdOutput {
    let berthctl = bin_path("berthctl");
    sh(&format!(
        "nsenter --net={netns} script -qec 'stty rows {rows} cols {cols}; {} -r {} {args}' /dev/null </dev/null",
        berthctl.display(),
        socket.display()
    ))
}

fn web_server(port: u16) -> cri::ContainerConfig {
    let mut config = container_config("web", &[]);
    let script = format!("mkdir -p /www && printf '{}' > /www/index.html && exec httpd -f -p {port} -h /www", PAGE.replace('\n', "\\n"));
    config.command = vec!["sh".into(), "-c".into(), script];
    config
}

#[test]
fn berthctl_exec_attach_and_port_forward() {
    let world = World::new();
    let netns = world.registry.netns.path();
    let socket = world.daemon.socket();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let logs = world.daemon.dir.path().join("logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let pod_config = pod_config("ctlpod", &logs.display().to_string());
        let pod = run_pod(&mut client, &pod_config).await;
        let worker = start_container(&mut client, &pod, &pod_config, container_config("worker", &["sleep", "1000"])).await;

        // exec -i: stdin in, output out; the command's exit code is berthctl's.
        let cat = berthctl_with_input(&netns, &socket, &["exec", "-i", &worker, "cat"], "to cat and back\n").ok();
        assert_eq!(cat.stdout, "to cat and back\n");
        let failed = berthctl_with_input(&netns, &socket, &["exec", "-i", &worker, "sh", "-c", "cat >/dev/null; exit 3"], "x\n");
        assert_eq!(failed.code, 3, "{failed}");
        // exec -it: a terminal whose size the command sees (sent on the resize stream
        // once the streams are up: the command waits for it).
        let tty = berthctl_on_terminal(&netns, &socket, 33, 77, &format!("exec -it {worker} sh -c \"sleep 0.5; /bin/busybox stty size\""));
        assert!(tty.stdout.contains("33 77"), "{tty}");

        // attach -i to a shell with stdin_once: the input runs, its end ends the shell.
        let mut shell = container_config("shell", &["sh"]);
        shell.stdin = true;
        shell.stdin_once = true;
        let shell = start_container(&mut client, &pod, &pod_config, shell).await;
        let attached = berthctl_with_input(&netns, &socket, &["attach", "-i", &shell], "sleep 0.5; echo attached; echo to-stderr >&2\n").ok();
        assert!(attached.stdout.contains("attached"), "{attached}");
        assert!(attached.stderr.contains("to-stderr"), "{attached}");
        wait_state(&mut client, &shell, cri::ContainerState::ContainerExited).await;

        // attach -t to a TTY container: berthctl's terminal size reaches the pty, and
        // what another client types shows on berthctl's terminal.
        let mut terminal = container_config("terminal", &["sh"]);
        terminal.stdin = true;
        terminal.tty = true;
        let terminal = start_container(&mut client, &pod, &pod_config, terminal).await;
        let typist_url = client
            .attach(cri::AttachRequest { container_id: terminal.clone(), stdin: true, tty: true, stdout: true, stderr: false })
            .await
            .expect("attach")
            .into_inner()
            .url;
        let mut typist = Command::open(&netns, &typist_url, &["error", "stdin", "stdout", "resize"]).await;
        let watching = {
            let (netns, socket, terminal) = (netns.clone(), socket.clone(), terminal.clone());
            std::thread::spawn(move || berthctl_on_terminal(&netns, &socket, 21, 61, &format!("attach -t {terminal}")))
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        typist.send("stdin", b"/bin/busybox stty size; exit 0\r").await;
        // The typist's session runs on this thread's runtime: wait without blocking it.
        while !watching.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let watched = watching.join().expect("berthctl attach");
        assert!(watched.success() && watched.stdout.contains("21 61"), "{watched}");
        wait_state(&mut client, &terminal, cri::ContainerState::ContainerExited).await;
        drop(typist);

        // port-forward to a web server in the pod.
        let web = start_container(&mut client, &pod, &pod_config, web_server(8080)).await;
        let mut forward = berthctl_command(&netns, &socket, &["port-forward", &pod, "28090:8080"]);
        forward.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut child = forward.spawn().expect("berthctl port-forward");
        let mut answer = String::new();
        for _ in 0..100 {
            answer = streaming::http_get(&netns, 28090).await;
            if answer.ends_with(PAGE) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(answer.starts_with("HTTP/1.") && answer.ends_with(PAGE), "{answer:?}");
        let _ = web;

        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("stop pod");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove pod");
    });
}
