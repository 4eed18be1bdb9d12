//! Gaps a sweep with the real docker CLI found, each checked from the kernel's side:
//! `docker export` (the merged layers as a tar, running or stopped, none of berth's
//! mounts), `docker update` (cgroup files and inspect's HostConfig), `--mount
//! type=tmpfs` (/proc/mounts), a refused start's `State.ExitCode` and `State.Error`,
//! and `docker top`'s STIME as `ps` prints it.
use std::time::Duration;

use berth_integration::docker::DockerWorld;

fn view_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().filter(|l| l.contains("/docker/") && l.contains("/view-")).count()
}

fn tar_listing(file: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("tar").arg("-tf").arg(file).output().expect("tar -t");
    assert!(out.status.success(), "tar -t: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_start_matches("./").to_string()).collect()
}

fn extracted(file: &std::path::Path, member: &str) -> String {
    let out = std::process::Command::new("tar").arg("-xOf").arg(file).arg(member).output().expect("tar -x");
    assert!(out.status.success(), "tar -x {member}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn export_streams_the_merged_layers_running_or_stopped() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["run", "-d", "--name", "box", "--hostname", "exported-host", "busybox", "sh", "-c", "echo written inside > /made.txt; busybox rm /bin/wc; sleep 300"]).ok();
    assert_eq!(docker.wait_for_inspect("box", "{{.State.Running}}", "true", Duration::from_secs(10)), "true");
    std::thread::sleep(Duration::from_millis(500));
    let running = docker.config_dir.path().join("running.tar");
    docker.docker(&["export", "-o", &running.display().to_string(), "box"]).ok();
    let names = tar_listing(&running);
    assert!(names.iter().any(|n| n == "made.txt"), "{names:?}");
    assert!(names.iter().any(|n| n == "bin/busybox") && names.iter().any(|n| n == "bin/sh"), "the image's files are missing: {names:?}");
    assert!(!names.iter().any(|n| n == "bin/wc"), "a file deleted in the container is exported");
    assert!(!names.iter().any(|n| n.starts_with("proc/") && n.len() > "proc/".len()), "/proc has content: {:?}", names.iter().filter(|n| n.starts_with("proc/")).collect::<Vec<_>>());
    assert!(!names.iter().any(|n| n.starts_with("sys/") && n.len() > "sys/".len()), "/sys has content");
    assert_eq!(extracted(&running, "made.txt"), "written inside\n");
    if names.iter().any(|n| n == "etc/hosts") {
        assert!(!extracted(&running, "etc/hosts").contains("exported-host"), "berth's /etc/hosts was exported");
    }
    assert_eq!(view_mounts(), 0, "the export's view stayed mounted");

    docker.docker(&["stop", "-t", "0", "box"]).ok();
    let stopped = docker.config_dir.path().join("stopped.tar");
    docker.docker(&["export", "-o", &stopped.display().to_string(), "box"]).ok();
    assert_eq!(extracted(&stopped, "made.txt"), "written inside\n");
    assert_eq!(view_mounts(), 0, "the export's view stayed mounted");
    let missing = docker.docker(&["export", "-o", &stopped.display().to_string(), "nosuch"]).failed();
    assert!(missing.stderr.contains("No such container: nosuch"), "{missing}");
    docker.docker(&["rm", "box"]).ok();
}

/// The v1 cgroup file of `controller` for process `pid`.
fn cgroup_file(pid: &str, controller: &str, file: &str) -> String {
    let table = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup table");
    let path = table
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            names.split(',').any(|n| n == controller).then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup for {pid}: {table}"));
    // The hierarchy is mounted by its controller's name, or by the joined names.
    let mount = ["", ",cpuacct"].iter().map(|suffix| format!("/sys/fs/cgroup/{controller}{suffix}")).find(|m| std::path::Path::new(m).exists()).expect("hierarchy mount");
    let full = format!("{mount}{path}/{file}");
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}")).trim().to_string()
}

#[test]
fn update_changes_the_cgroup_and_what_inspect_shows() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["run", "-d", "--name", "lim", "--pids-limit", "30", "busybox", "sleep", "300"]).ok();
    let pid = docker.inspect("lim", "{{.State.Pid}}");
    assert_eq!(cgroup_file(&pid, "pids", "pids.max"), "30", "--pids-limit at create on cgroup v1");
    let out = docker.docker(&["update", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "50", "--restart", "on-failure:3", "lim"]).ok();
    assert_eq!(out.stdout.trim(), "lim", "{out}");
    assert_eq!(cgroup_file(&pid, "memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(cgroup_file(&pid, "memory", "memory.memsw.limit_in_bytes"), "134217728");
    assert_eq!(cgroup_file(&pid, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file(&pid, "cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(cgroup_file(&pid, "cpu", "cpu.shares"), "512");
    assert_eq!(cgroup_file(&pid, "pids", "pids.max"), "50");
    let format = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}";
    assert_eq!(docker.inspect("lim", format), "67108864 134217728 500000000 512 50 on-failure:3");

    // A second update changes what it names and leaves the rest.
    docker.docker(&["update", "--cpu-shares", "256", "--cpuset-cpus", "0", "lim"]).ok();
    assert_eq!(cgroup_file(&pid, "cpu", "cpu.shares"), "256");
    assert_eq!(cgroup_file(&pid, "cpuset", "cpuset.cpus"), "0");
    assert_eq!(cgroup_file(&pid, "memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(docker.inspect("lim", "{{.HostConfig.Memory}} {{.HostConfig.CpuShares}} {{.HostConfig.CpusetCpus}} {{.HostConfig.RestartPolicy.Name}}"), "67108864 256 0 on-failure");
    docker.docker(&["update", "--pids-limit", "-1", "lim"]).ok();
    assert_eq!(cgroup_file(&pid, "pids", "pids.max"), "max");

    // A stopped container: the update applies at its next start, as with dockerd.
    docker.docker(&["stop", "-t", "0", "lim"]).ok();
    docker.docker(&["update", "--memory", "96m", "--memory-swap", "192m", "lim"]).ok();
    docker.docker(&["start", "lim"]).ok();
    let pid = docker.inspect("lim", "{{.State.Pid}}");
    assert_eq!(cgroup_file(&pid, "memory", "memory.limit_in_bytes"), "100663296");
    assert_eq!(docker.inspect("lim", "{{.HostConfig.Memory}} {{.HostConfig.CpuShares}}"), "100663296 256");

    let bad = docker.docker(&["update", "--restart", "sometimes", "lim"]).failed();
    assert!(bad.stderr.contains("invalid restart policy") || bad.stderr.contains("sometimes"), "{bad}");
    assert_eq!(docker.inspect("lim", "{{.HostConfig.RestartPolicy.Name}}"), "on-failure");
    docker.docker(&["rm", "-f", "lim"]).ok();
}

#[test]
fn mount_type_tmpfs_is_a_tmpfs_with_its_options() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let script = "busybox grep -E ' /(data|ro) ' /proc/mounts; ls -ld /data";
    let out = docker.docker(&["run", "--rm", "--mount", "type=tmpfs,destination=/data,tmpfs-size=4m,tmpfs-mode=1770", "--mount", "type=tmpfs,dst=/ro,readonly", "busybox", "sh", "-c", script]).ok();
    let data = out.stdout.lines().find(|l| l.starts_with("tmpfs /data tmpfs ")).unwrap_or_else(|| panic!("no tmpfs at /data: {out}"));
    assert!(data.contains("rw,") && data.contains("size=4096k") && data.contains("mode=1770"), "{out}");
    assert!(out.stdout.contains("drwxrwx--T"), "{out}");
    let ro = out.stdout.lines().find(|l| l.starts_with("tmpfs /ro tmpfs ")).unwrap_or_else(|| panic!("no tmpfs at /ro: {out}"));
    assert!(ro.contains(" ro,"), "{out}");

    docker.docker(&["run", "-d", "--name", "tm", "--mount", "type=tmpfs,destination=/data", "busybox", "sleep", "300"]).ok();
    assert_eq!(docker.inspect("tm", "{{range .Mounts}}{{.Type}}:{{.Destination}}:{{.RW}}{{end}}"), "tmpfs:/data:true");
    docker.docker(&["rm", "-f", "tm"]).ok();
    let duplicate = docker.docker(&["run", "--rm", "--tmpfs", "/data", "--mount", "type=tmpfs,dst=/data", "busybox", "true"]).failed();
    assert!(duplicate.stderr.contains("Duplicate mount point: /data"), "{duplicate}");
    assert_eq!(docker.docker(&["ps", "-aq"]).ok().stdout.trim(), "", "a refused create left a container");
}

#[test]
fn a_refused_start_shows_exit_code_128_and_the_error_until_a_start_succeeds() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let publish = "18193:80";
    docker.docker(&["run", "-d", "--name", "holder", "-p", publish, "busybox", "sleep", "300"]).ok();
    docker.docker(&["create", "--name", "late", "-p", publish, "busybox", "sleep", "300"]).ok();
    assert_eq!(docker.inspect("late", "{{.State.ExitCode}}|{{.State.Error}}"), "0|");
    let refused = docker.docker(&["start", "late"]).failed();
    assert!(refused.stderr.contains("port is already allocated"), "{refused}");
    assert_eq!(docker.inspect("late", "{{.State.Status}} {{.State.ExitCode}}"), "created 128");
    let error = docker.inspect("late", "{{.State.Error}}");
    assert!(error.contains("Bind for 0.0.0.0:18193 failed: port is already allocated"), "{error}");

    docker.docker(&["stop", "-t", "0", "holder"]).ok();
    docker.docker(&["start", "late"]).ok();
    assert_eq!(docker.inspect("late", "{{.State.Status}} {{.State.ExitCode}}|{{.State.Error}}"), "running 0|");
    docker.docker(&["rm", "-f", "holder", "late"]).ok();
}

#[test]
fn top_prints_the_start_time_as_ps_does() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["run", "-d", "--name", "topped", "busybox", "sleep", "300"]).ok();
    let pid = docker.inspect("topped", "{{.State.Pid}}");
    let top = docker.docker(&["top", "topped"]).ok();
    let row = top.stdout.lines().find(|l| l.split_whitespace().nth(1) == Some(pid.as_str())).unwrap_or_else(|| panic!("no row for {pid}: {top}"));
    let ps = std::process::Command::new("ps").args(["-o", "stime=", "-p", &pid]).output().expect("ps");
    let expected = String::from_utf8_lossy(&ps.stdout).trim().to_string();
    assert!(!expected.is_empty(), "ps printed no STIME for {pid}");
    assert_eq!(row.split_whitespace().nth(4), Some(expected.as_str()), "{top}");
    docker.docker(&["rm", "-f", "topped"]).ok();
}
