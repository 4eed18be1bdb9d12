//! berthctl's container verbs: ps, create, start, stop, rm, inspect, logs, exec, stats.
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::client::{rpc_error, Clients};
use super::output::{self, Format};
use super::pods::read_config;

fn state_name(state: i32) -> &'static str {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => "Created",
        Ok(cri::ContainerState::ContainerRunning) => "Running",
        Ok(cri::ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

pub async fn list(clients: &mut Clients, all: bool, pod: Option<String>, format: Format) -> Result<(), String> {
    let filter = cri::ContainerFilter {
        pod_sandbox_id: pod.unwrap_or_default(),
        state: (!all).then_some(cri::ContainerStateValue { state: cri::ContainerState::ContainerRunning as i32 }),
        ..Default::default()
    };
    let containers = clients.runtime.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await.map_err(rpc_error)?.into_inner().containers;
    if format == Format::Json {
        return output::json(&containers);
    }
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            let metadata = c.metadata.clone().unwrap_or_default();
            let image = c.image.clone().unwrap_or_default().image;
            vec![output::short_id(&c.id), image, output::age(c.created_at), state_name(c.state).into(), metadata.name, metadata.attempt.to_string(), output::short_id(&c.pod_sandbox_id)]
        })
        .collect();
    output::table(&["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID"], &rows);
    Ok(())
}

pub async fn create(clients: &mut Clients, pod: &str, container_config: &str, pod_config: &str) -> Result<(), String> {
    let config: cri::ContainerConfig = read_config(container_config)?;
    let sandbox_config: cri::PodSandboxConfig = read_config(pod_config)?;
    let request = cri::CreateContainerRequest { pod_sandbox_id: pod.to_string(), config: Some(config), sandbox_config: Some(sandbox_config) };
    let id = clients.runtime.create_container(request).await.map_err(rpc_error)?.into_inner().container_id;
    println!("{id}");
    Ok(())
}

pub async fn start(clients: &mut Clients, ids: &[String]) -> Result<(), String> {
    for id in ids {
        clients.runtime.start_container(cri::StartContainerRequest { container_id: id.clone() }).await.map_err(rpc_error)?;
        println!("{id}");
    }
    Ok(())
}

pub async fn stop(clients: &mut Clients, ids: &[String], timeout: i64) -> Result<(), String> {
    for id in ids {
        clients.runtime.stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout }).await.map_err(rpc_error)?;
        println!("{id}");
    }
    Ok(())
}

pub async fn remove(clients: &mut Clients, ids: &[String]) -> Result<(), String> {
    for id in ids {
        clients.runtime.remove_container(cri::RemoveContainerRequest { container_id: id.clone() }).await.map_err(rpc_error)?;
        println!("{id}");
    }
    Ok(())
}

pub async fn inspect(clients: &mut Clients, id: &str) -> Result<(), String> {
    let request = cri::ContainerStatusRequest { container_id: id.to_string(), verbose: true };
    let response = clients.runtime.container_status(request).await.map_err(rpc_error)?.into_inner();
    output::json(&response)
}

/// Prints the container's CRI log (only the messages, as crictl does); with `follow`,
/// keeps printing what is appended until the container exits.
pub async fn logs(clients: &mut Clients, id: &str, follow: bool) -> Result<(), String> {
    let request = cri::ContainerStatusRequest { container_id: id.to_string(), verbose: false };
    let status = clients.runtime.container_status(request.clone()).await.map_err(rpc_error)?.into_inner().status.unwrap_or_default();
    if status.log_path.is_empty() {
        return Err(format!("container {id} has no log file"));
    }
    let mut file = std::fs::File::open(&status.log_path).map_err(|e| format!("{}: {e}", status.log_path))?;
    let mut pending = String::new();
    loop {
        let mut chunk = String::new();
        file.read_to_string(&mut chunk).map_err(|e| e.to_string())?;
        pending.push_str(&chunk);
        print_complete_lines(&mut pending);
        if !follow {
            return Ok(());
        }
        let status = clients.runtime.container_status(request.clone()).await.map_err(rpc_error)?.into_inner().status.unwrap_or_default();
        if status.state != cri::ContainerState::ContainerRunning as i32 {
            let mut rest = String::new();
            let _ = file.read_to_string(&mut rest);
            pending.push_str(&rest);
            print_complete_lines(&mut pending);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = file.seek(SeekFrom::Current(0));
    }
}

/// `2016-10-06T00:17:09.669794202Z stdout F message`: prints the messages of the
/// complete lines, joining partial (`P`) ones.
fn print_complete_lines(pending: &mut String) {
    let mut stdout = std::io::stdout();
    while let Some(end) = pending.find('\n') {
        let line: String = pending.drain(..=end).collect();
        let mut fields = line.trim_end_matches('\n').splitn(4, ' ');
        let (_time, _stream, tag, message) = (fields.next(), fields.next(), fields.next(), fields.next().unwrap_or(""));
        let _ = match tag {
            Some("P") => write!(stdout, "{message}"),
            _ => writeln!(stdout, "{message}"),
        };
    }
    let _ = stdout.flush();
}

pub async fn exec(clients: &mut Clients, id: &str, command: Vec<String>, timeout: i64) -> Result<i32, String> {
    let request = cri::ExecSyncRequest { container_id: id.to_string(), cmd: command, timeout };
    let response = clients.runtime.exec_sync(request).await.map_err(rpc_error)?.into_inner();
    std::io::stdout().write_all(&response.stdout).map_err(|e| e.to_string())?;
    std::io::stderr().write_all(&response.stderr).map_err(|e| e.to_string())?;
    Ok(response.exit_code)
}

pub async fn stats(clients: &mut Clients, format: Format) -> Result<(), String> {
    let stats = clients.runtime.list_container_stats(cri::ListContainerStatsRequest::default()).await.map_err(rpc_error)?.into_inner().stats;
    if format == Format::Json {
        return output::json(&stats);
    }
    let value = |v: &Option<cri::UInt64Value>| v.as_ref().map(|v| v.value).unwrap_or(0);
    let rows: Vec<Vec<String>> = stats
        .iter()
        .map(|s| {
            let attributes = s.attributes.clone().unwrap_or_default();
            let cpu = s.cpu.as_ref().map(|c| value(&c.usage_core_nano_seconds)).unwrap_or(0);
            let memory = s.memory.as_ref().map(|m| value(&m.working_set_bytes)).unwrap_or(0);
            let disk = s.writable_layer.as_ref().map(|w| value(&w.used_bytes)).unwrap_or(0);
            let name = attributes.metadata.unwrap_or_default().name;
            vec![output::short_id(&attributes.id), name, format!("{:.2}s", cpu as f64 / 1e9), output::size(memory), output::size(disk)]
        })
        .collect();
    output::table(&["CONTAINER", "NAME", "CPU TIME", "MEM", "DISK"], &rows);
    Ok(())
}
