//! berthctl's pod verbs: pods, runp, stopp, rmp, inspectp.
use k8s_cri::v1 as cri;

use super::client::{rpc_error, Clients};
use super::output::{self, Format};

fn state_name(state: i32) -> &'static str {
    match cri::PodSandboxState::try_from(state) {
        Ok(cri::PodSandboxState::SandboxReady) => "Ready",
        _ => "NotReady",
    }
}

pub async fn list(clients: &mut Clients, format: Format) -> Result<(), String> {
    let items = clients.runtime.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.map_err(rpc_error)?.into_inner().items;
    if format == Format::Json {
        return output::json(&items);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|pod| {
            let metadata = pod.metadata.clone().unwrap_or_default();
            vec![output::short_id(&pod.id), output::age(pod.created_at), state_name(pod.state).into(), metadata.name, metadata.namespace, metadata.attempt.to_string(), pod.runtime_handler.clone()]
        })
        .collect();
    output::table(&["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"], &rows);
    Ok(())
}

/// Reads a JSON config file (crictl's format: the CRI message with snake_case fields).
pub fn read_config<T: serde::de::DeserializeOwned>(path: &str) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

pub async fn run(clients: &mut Clients, config: &str, handler: String) -> Result<(), String> {
    let config: cri::PodSandboxConfig = read_config(config)?;
    let request = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: handler };
    let id = clients.runtime.run_pod_sandbox(request).await.map_err(rpc_error)?.into_inner().pod_sandbox_id;
    println!("{id}");
    Ok(())
}

pub async fn stop(clients: &mut Clients, ids: &[String]) -> Result<(), String> {
    for id in ids {
        clients.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await.map_err(rpc_error)?;
        println!("Stopped sandbox {id}");
    }
    Ok(())
}

pub async fn remove(clients: &mut Clients, ids: &[String]) -> Result<(), String> {
    for id in ids {
        clients.runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.clone() }).await.map_err(rpc_error)?;
        println!("Removed sandbox {id}");
    }
    Ok(())
}

pub async fn inspect(clients: &mut Clients, id: &str) -> Result<(), String> {
    let request = cri::PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose: true };
    let response = clients.runtime.pod_sandbox_status(request).await.map_err(rpc_error)?.into_inner();
    output::json(&response)
}
