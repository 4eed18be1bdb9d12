//! Changes to a container: new resource limits (for a running one written to its cgroup
//! by the runtime, through the shim; for a created one written into its bundle's spec,
//! which the start applies, as for a stopped one; kept in its record either way) and
//! reopening its CRI log.
use containerd_shim_protos::api::UpdateTaskRequest;
use protobuf::well_known_types::any::Any;

use super::*;
use crate::task::context;

const RESOURCES_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
const REOPEN_LOG_ANNOTATION: &str = "io.berth.cri.reopen-log";

impl Core {
    pub async fn update_container_resources(&self, namespace: &str, id: &str, resources: Resources) -> CoreResult<()> {
        let (_guard, mut record) = self.lock_pod_of(namespace, id).await?;
        if record.state == ContainerState::Running {
            let spec = ContainerSpec { resources: resources.clone(), ..record.spec.clone() };
            let mut linux = crate::spec::resources_section(&spec);
            if let Some(object) = linux.as_object_mut() {
                object.remove("devices");
            }
            let request = UpdateTaskRequest {
                id: record.id.clone(),
                resources: Some(Any { type_url: RESOURCES_TYPE_URL.into(), value: linux.to_string().into_bytes(), ..Default::default() }).into(),
                ..Default::default()
            };
            let client = self.shims.client(&record.shim_address).await?;
            client.update(context(), &request).await?;
        } else if matches!(record.state, ContainerState::Created | ContainerState::Exited) {
            // A stopped container starts again from its bundle (`rearm_container`).
            let spec = ContainerSpec { resources: resources.clone(), ..record.spec.clone() };
            rewrite_bundle_resources(std::path::Path::new(&record.bundle), &spec)?;
        } else {
            return Err(CoreError::FailedPrecondition(format!("container {} is not running", record.id)));
        }
        record.spec.resources = resources;
        self.save_container(&record)
    }

    pub async fn reopen_container_log(&self, namespace: &str, id: &str) -> CoreResult<()> {
        let record = self.container(namespace, id)?;
        if record.state != ContainerState::Running {
            return Err(CoreError::FailedPrecondition(format!("container {} is not running", record.id)));
        }
        let mut request = UpdateTaskRequest { id: record.id.clone(), ..Default::default() };
        request.annotations.insert(REOPEN_LOG_ANNOTATION.into(), "true".into());
        let client = self.shims.client(&record.shim_address).await?;
        client.update(context(), &request).await?;
        Ok(())
    }
}

/// Puts `spec`'s resources into a created container's config.json (its device rules,
/// made at creation, are kept), replacing the file atomically.
fn rewrite_bundle_resources(bundle: &std::path::Path, spec: &ContainerSpec) -> CoreResult<()> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(io_error(format!("reading {}", path.display())))?;
    let malformed = |what: &str| CoreError::Internal(format!("{} is malformed: {what}", path.display()));
    let mut config: serde_json::Value = serde_json::from_slice(&text).map_err(|e| malformed(&e.to_string()))?;
    let linux = config.get_mut("linux").and_then(serde_json::Value::as_object_mut).ok_or_else(|| malformed("no linux object"))?;
    let devices = linux.get("resources").and_then(|r| r.get("devices")).cloned();
    let mut resources = crate::spec::resources_section(spec);
    if let (Some(devices), Some(object)) = (devices, resources.as_object_mut()) {
        object.insert("devices".into(), devices);
    }
    linux.insert("resources".into(), resources);
    let process = config.get_mut("process").and_then(serde_json::Value::as_object_mut).ok_or_else(|| malformed("no process object"))?;
    match spec.resources.oom_score_adj {
        0 => process.remove("oomScoreAdj"),
        adj => process.insert("oomScoreAdj".into(), serde_json::json!(adj)),
    };
    let bytes = serde_json::to_vec_pretty(&config).map_err(|e| CoreError::Internal(e.to_string()))?;
    let temporary = bundle.join(".config.json.tmp");
    crate::private_fs::write_private_file(&temporary, &bytes).map_err(io_error("writing config.json"))?;
    std::fs::rename(&temporary, &path).map_err(io_error("replacing config.json"))
}
